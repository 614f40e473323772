"""A trained run out of the program: ``mgs export`` (in a format of :data:`~momentum_gs.export.formats.FORMATS`:
the standard 3DGS PLY, .splat, .spz, SOG, a web page, levels of detail in tiles, or the Scaffold-GS layout) and
``mgs distill`` (a compact student PLY with its scores)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.data.georef import read_georef, write_sidecar
from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.evaluate import scores, write_strip
from momentum_gs.export.distill import DistillConfig, distill
from momentum_gs.export.floaters import capped, drop_floaters, dropped_line, views_of
from momentum_gs.export.formats import FORMATS, Context, Request, merged_model
from momentum_gs.export.refine import default_budget, refine
from momentum_gs.export.standard_ply import save_standard_ply, standard_ply_bytes
from momentum_gs.export.tiles.lod import TILE_SIZE
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.safe_path import inside
from momentum_gs.io.splat_transform import splat_transform_command
from momentum_gs.losses import psnr
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.standard import StandardGaussians, bake
from momentum_gs.trained import load_run


def export_run(run_dir: str | Path, *, format: str = "ply", out: str | Path | None = None,
               sh_degree: int | None = None, refine_steps: int | None = None, refine_budget: float | None = None,
               tile_size: int = TILE_SIZE, tile_compression: str = "spz", keep_floaters: bool = False) -> list[str]:
    """Write a run's merged model in ``format`` (a key of :data:`~momentum_gs.export.formats.FORMATS`) to
    ``out``; returns the lines to print. Nothing is written through a link: below ``RUN`` none may lead out of
    it, and a file to write that is a link is refused (:mod:`momentum_gs.io.safe_path`).

    ``out``: the folder the format's file goes into (default ``RUN/export``), or the folder a format of its own
    folder writes (default ``RUN/export/<format>``). ``sh_degree``: the baked Gaussians' SH degree;
    ``refine_steps``: steps of training them further; each None: the format's default. ``refine_budget``:
    seconds the refinement may take (default :func:`~momentum_gs.export.refine.default_budget`; 0: no limit).
    ``tile_size``: Gaussians per tile of the formats with levels of detail (:mod:`momentum_gs.export.tiles`);
    ``tile_compression``: the 3D Tiles' tiles as SPZ streams ("spz") or float32 attributes ("none").
    ``keep_floaters``: keep the Gaussians far outside what the photos saw (:mod:`momentum_gs.export.floaters`)."""
    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {format}")
    spec, run = FORMATS[format], RunFolder(run_dir)
    if refine_steps and spec.refine_steps is None:
        raise UserError(f"--refine is not available with --format {format}: its levels are baked from the training "
                        "views block by block; give --refine 0")
    default_out = run.path("export", spec.output.rstrip("/")) if spec.folder else run.export
    request = Request(run=run, format=format, out=Path(out or default_out),
                      sh_degree=sh_degree if sh_degree is not None and spec.sh_choice else spec.sh_degree,
                      refine_steps=(spec.refine_steps or 0) if refine_steps is None else refine_steps,
                      refine_budget=refine_budget, tile_size=tile_size, tile_compression=tile_compression,
                      keep_floaters=keep_floaters)
    return spec.write(request) if spec.folder else _export_baked(request)


def _export_baked(request: Request) -> list[str]:
    """A one-file format: the merged model baked from the training views (and refined) and written into the
    folder ``request.out``, with the georeference side-car when the scene has one; returns the lines to print."""
    spec = FORMATS[request.format]
    cfg, model = merged_model(request.run)
    if request.out.exists() and not request.out.is_dir():
        raise UserError(f"{request.out} is a file; the export needs a folder (--out)")
    # before baking: a missing tool is said at once
    command = splat_transform_command(f"--format {request.format}") if spec.splat_transform else None
    georef = read_georef(Path(cfg.data.path))  # a scene from `mgs sfm` with GPS: the export says where it is
    scene = load_scene(cfg.data)
    cameras = scene.train
    box = views_of(scene, georef, request.keep_floaters)
    gaussians, how, dropped = baked_for_export(model, cameras, cfg.render, request.sh_degree, request.refine_steps,
                                     request.refine_budget, box)
    path = spec.write(gaussians, request.out / spec.output, Context(cameras[0], cfg.render.background, georef,
                                                                    command))
    lines = [dropped] if dropped else []
    lines += [f"exported {len(gaussians)} standard 3D Gaussians (SH degree {request.sh_degree}, {how}) to {path} "
             f"({path.stat().st_size / 2**20:.1f} MB), {spec.what}"]
    # opacities (in (0, 1) on StandardGaussians): faint stray Gaussians do not stretch the side-car's box
    sidecar = write_sidecar(path, georef, gaussians.means.detach().cpu().numpy(),
                            gaussians.opacities.detach().cpu().numpy())
    if sidecar:
        lines.append(f"georeference (WGS84 origin of the ENU frame, the scene's centre and corners): {sidecar}")
    return lines


def baked_for_export(model: GaussianScene, cameras, render_cfg, degree: int, refine_steps: int,
           refine_budget: float | None, box=None) -> tuple[StandardGaussians, str, str]:
    """The model baked from the training views, without the Gaussians no view of ``box`` saw (None: all kept;
    :mod:`momentum_gs.export.floaters`), and refined; how, in words; the line saying what was dropped ("": none)."""
    gaussians = bake(model, cameras, render_cfg, degree=degree)
    baked = len(gaussians)
    gaussians, dropped = drop_floaters(gaussians, box)
    how = "baked from the training views"
    if refine_steps:
        budget = refine_budget if refine_budget is not None else default_budget(model.device)
        gaussians, steps = refine(model, gaussians, cameras, ImageLoader(cameras), render_cfg, refine_steps,
                                  budget_s=budget or None)
        gaussians = capped(gaussians, box)  # the refinement may have grown them again
        how += f", refined {steps} steps" + (f" (of {refine_steps}, in {budget:.0f} s)" if steps < refine_steps else "")
    return gaussians, how, dropped_line(dropped, baked)


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
