"""A trained run out of the program: ``mgs export`` (standard 3DGS PLY, .splat, .spz, SOG, a web page, or the
Scaffold-GS layout) and ``mgs distill`` (a compact student PLY with its scores)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.data.georef import ply_comment, read_georef, write_sidecar
from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.evaluate import scores, write_strip
from momentum_gs.export.distill import DistillConfig, distill
from momentum_gs.export.refine import default_budget, refine
from momentum_gs.export.scaffold import export_scene
from momentum_gs.export.splat import save_splat
from momentum_gs.export.spz import save_spz
from momentum_gs.export.standard_ply import save_standard_ply, standard_ply_bytes
from momentum_gs.export.tiles.blocks import TILE_SIZE, export_tiles
from momentum_gs.export.tiles.sog_lod import export_sog_lod
from momentum_gs.export.web import save_viewer, save_with_splat_transform
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.safe_path import inside
from momentum_gs.io.splat_transform import splat_transform_command
from momentum_gs.losses import psnr
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.standard import StandardGaussians, bake
from momentum_gs.trained import load_run

FORMATS = ("ply", "splat", "spz", "html", "sog", "sog-lod", "3dtiles", "scaffold")
WHAT = {"ply": "the layout 3DGS viewers read", "splat": "the .splat file web viewers read",
        "spz": "the .spz file web viewers read", "html": "a page that shows the scene in a web browser",
        "sog": "PlayCanvas's compressed format"}


def export_run(run_dir: str | Path, fmt: str = "ply", out: str | Path | None = None, sh_degree: int | None = None,
               refine_steps: int = 0, refine_budget: float | None = None, tile_size: int = TILE_SIZE,
               tile_compression: str = "spz") -> list[str]:
    """Write a run's merged model in ``fmt`` to ``out`` (default ``RUN/export``); returns the lines to print.
    Nothing is written through a link: below ``RUN`` none may lead out of it, and a file to write that is a link
    is refused (:mod:`momentum_gs.io.safe_path`).

    ``sh_degree``: the baked Gaussians' SH degree (default 3; 0 for sog; splat and html keep none).
    ``refine_steps``: steps of training the baked Gaussians further; ``refine_budget``: seconds they may take
    (default :func:`~momentum_gs.export.refine.default_budget`; 0: no limit). ``tile_size``: Gaussians per tile
    of ``3dtiles`` (:mod:`momentum_gs.export.tiles.blocks`, written to ``RUN/export/3dtiles`` by default) and per leaf
    of ``sog-lod`` (:mod:`momentum_gs.export.tiles.sog_lod`, ``RUN/export/sog-lod``); ``tile_compression``: the
    tiles as SPZ streams ("spz") or float32 attributes ("none")."""
    folder = RunFolder(run_dir)
    if fmt in ("3dtiles", "sog-lod"):
        if refine_steps:
            raise UserError(f"--refine is not available with --format {fmt}: its levels are baked from the training "
                            "views block by block; give --refine 0")
        if fmt == "sog-lod":  # degree 0 by default, as sog: splat-transform compresses higher degrees slowly
            return export_sog_lod(folder.root, out or folder.path("export", "sog-lod"), sh_degree or 0, tile_size)
        return export_tiles(folder.root, out or folder.path("export", "3dtiles"), 3 if sh_degree is None else sh_degree,
                            tile_size, tile_compression)
    cfg, model, _ = load_run(folder.root)
    if not isinstance(model, GaussianScene):
        raise UserError("this run trained independent decoders per block; both export layouts need one decoder")
    if fmt == "scaffold":
        path = export_scene(model, cfg.model, out or folder.path("export", "scaffold"))
        return [f"exported the merged model, {model.anchors.num_anchors} anchors, in the Scaffold-GS layout: "
                f"{path / 'point_cloud.ply'} and {path / 'decoder.pt'}"]
    out = Path(out or folder.export)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the export needs a folder (--out)")
    command = splat_transform_command() if fmt == "sog" else None  # before baking: a missing tool is said at once
    degree = 0 if fmt in ("splat", "html") else sh_degree  # those two keep no view dependence
    if degree is None:
        degree = 0 if fmt == "sog" else 3
    georef = read_georef(Path(cfg.data.path))  # a scene from `mgs sfm` with GPS: the export says where it is
    cameras = load_scene(cfg.data).train
    gaussians, how = _baked(model, cameras, cfg.render, degree, refine_steps, refine_budget)
    path = _write(fmt, gaussians, out, cameras[0], cfg.render.background, command, georef)
    lines = [f"exported {len(gaussians)} standard 3D Gaussians (SH degree {degree}, {how}) to {path} "
             f"({path.stat().st_size / 2**20:.1f} MB), {WHAT[fmt]}"]
    # opacities (in (0, 1) on StandardGaussians): faint stray Gaussians do not stretch the side-car's box
    sidecar = write_sidecar(path, georef, gaussians.means.detach().cpu().numpy(),
                            gaussians.opacities.detach().cpu().numpy())
    if sidecar:
        lines.append(f"georeference (WGS84 origin of the ENU frame, the scene's centre and corners): {sidecar}")
    return lines


def _baked(model: GaussianScene, cameras, render_cfg, degree: int, refine_steps: int,
           refine_budget: float | None) -> tuple[StandardGaussians, str]:
    """The model baked from the training views (and refined), and how, in words."""
    gaussians = bake(model, cameras, render_cfg, degree=degree)
    how = "baked from the training views"
    if refine_steps:
        budget = refine_budget if refine_budget is not None else default_budget(model.device)
        gaussians, steps = refine(model, gaussians, cameras, ImageLoader(cameras), render_cfg, refine_steps,
                                  budget_s=budget or None)
        how += f", refined {steps} steps" + (f" (of {refine_steps}, in {budget:.0f} s)" if steps < refine_steps else "")
    return gaussians, how


def _write(fmt: str, gaussians: StandardGaussians, out: Path, camera, background, command, georef) -> Path:
    """Write ``gaussians`` in ``fmt`` into the folder ``out``; returns the file."""
    if fmt == "splat":
        return save_splat(gaussians, out / "scene.splat")
    if fmt == "spz":
        return save_spz(gaussians, out / "scene.spz")
    if fmt == "html":
        return save_viewer(gaussians, camera, background, out / "scene.html")
    if fmt == "sog":
        return save_with_splat_transform(command, gaussians, out / "scene.sog")
    return save_standard_ply(gaussians, out / "point_cloud.ply", [ply_comment(georef)] if georef else [])


def ply_megabytes(gaussians: StandardGaussians) -> float:
    """Size of ``gaussians`` as a standard PLY, in MB (2²⁰ bytes)."""
    return len(standard_ply_bytes(gaussians)) / 2**20


def held_out_scores(render, cameras, truths: list[torch.Tensor]) -> dict:
    """Mean held-out PSNR and SSIM of ``render(camera)`` ([H, W, 3]) against ``truths``, and the renders."""
    images, per_view = [], []
    with torch.no_grad():
        for camera, gt in zip(cameras, truths):
            image = render(camera).clamp(0, 1).cpu()
            images.append(image)
            per_view.append(scores(image, gt, None))
    return {"psnr": float(np.mean([v["psnr"] for v in per_view])),
            "ssim": float(np.mean([v["ssim"] for v in per_view])), "images": images}


def distill_run(run_dir: str | Path, out: str | Path, cfg: DistillConfig, device: torch.device | None = None,
                show_progress: bool = True) -> dict:
    """``mgs distill``: the student of a run's merged model as ``OUT/point_cloud.ply``, with ``OUT/summary.json``
    (sizes, counts, held-out PSNR/SSIM of the model, the baked export and the student, times) and
    ``OUT/strip.png`` (model, baked, student and the photo of a few held-out views)."""
    cfg.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --out names the folder the student goes to")
    run_cfg, model, step = load_run(Path(run_dir), device)  # bake() refuses a run of independent decoders
    model.eval()
    scene = load_scene(run_cfg.data)
    photos = ImageLoader(scene.train, cache=True)
    started = time.perf_counter()
    baked = bake(model, scene.train, run_cfg.render, degree=cfg.sh_degree, show_progress=show_progress)
    bake_s = time.perf_counter() - started
    student, record = distill(model, scene.train, photos, run_cfg.render, cfg, teacher_gaussians=baked,
                              show_progress=show_progress)
    record["bake_s"] = bake_s
    record["total_s"] = time.perf_counter() - started
    path = save_standard_ply(student, out / "point_cloud.ply")
    anchor_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    summary = {"run": str(run_dir), "step": step, "student_ply": str(path),
               "sizes_mb": {"model": anchor_mb, "baked_ply": ply_megabytes(baked), "student_ply": ply_megabytes(student)},
               "gaussians": {"model_anchors": model.num_anchors, "baked": len(baked), "student": len(student)},
               **record}
    summary["smaller_than_baked"] = 1 - summary["sizes_mb"]["student_ply"] / summary["sizes_mb"]["baked_ply"]
    if scene.test:
        summary["held_out"] = _held_out(model, baked, student, scene.test, run_cfg.render, out / "strip.png")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _held_out(model: GaussianScene, baked: StandardGaussians, student: StandardGaussians, cameras, render_cfg,
              strip: Path) -> dict:
    """The held-out PSNR/SSIM of the model, the baked export and the student; the strip of a few views."""
    loader = ImageLoader(cameras, cache=False)
    truths = [loader[i] for i in range(len(cameras))]
    rendered = {"model": held_out_scores(lambda c: model.render(c.to(model.device), render_cfg).output.image,
                                         cameras, truths),
                "baked": held_out_scores(lambda c: baked.render(c, render_cfg), cameras, truths),
                "student": held_out_scores(lambda c: student.render(c, render_cfg), cameras, truths)}
    columns = []
    for v in range(min(3, len(cameras))):
        for name in ("model", "baked", "student"):
            image = rendered[name]["images"][v]
            columns.append((torch.cat([image, truths[v]], 0), f"{name} {cameras[v].name}",
                            float(psnr(image, truths[v]))))
    write_strip(columns, inside(strip, strip.parent))  # written in place: not through a link leading elsewhere
    return {name: {k: v for k, v in r.items() if k != "images"} for name, r in rendered.items()}


def distill_summary_lines(summary: dict, out: str | Path) -> list[str]:
    """What ``mgs distill`` prints at the end."""
    sizes, counts = summary["sizes_mb"], summary["gaussians"]
    lines = [f"student: {counts['student']} standard Gaussians ({counts['student'] / counts['baked']:.0%} of the "
             f"baked export's {counts['baked']}), {sizes['student_ply']:.2f} MB against {sizes['baked_ply']:.2f} MB "
             f"baked ({summary['smaller_than_baked']:.0%} smaller) and {sizes['model']:.2f} MB of anchors; "
             f"{summary['total_s']:.0f} s"]
    if "held_out" in summary:
        h = summary["held_out"]
        lines.append("held-out PSNR / SSIM: " + ", ".join(f"{name} {h[name]['psnr']:.2f} dB / {h[name]['ssim']:.3f}"
                                                          for name in ("model", "baked", "student")))
    lines += [f"student PLY: {summary['student_ply']}", f"pictures: {Path(out) / 'strip.png'}",
              f"next: open {summary['student_ply']} in a 3DGS viewer"]
    return lines
