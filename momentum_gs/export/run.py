"""``mgs distill``: a compact student PLY of a trained run, with its scores (``mgs export`` is
:mod:`momentum_gs.export.shared`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.evaluate import scores, write_strip
from momentum_gs.export.distill import DistillConfig, distill
from momentum_gs.export.standard_ply import save_standard_ply, standard_ply_bytes
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.safe_path import inside
from momentum_gs.losses import psnr
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.standard import StandardGaussians, bake
from momentum_gs.trained import load_run


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
