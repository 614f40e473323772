"""A run's held-out PSNR over the pixels that some training photo saw, beside the PSNR over every pixel: how much
of the held-out score is lost where no training photo could teach the model (masked PSNR with a covisibility
mask, as DyCheck (Gao et al., 2022) scores sparse captures).

    python scripts/covisible_psnr.py RUN [--tolerance 0.05] [--json OUT.json]

For each held-out photo the run is rendered with its median depth (the builtin rasterizer). A pixel is covisible
when the surface point at that depth along its ray lies in front of a training camera, inside its image, and no
nearer surface hides it there: its depth from that camera is at most ``1 + tolerance`` times the training
render's median depth at the pixel it lands on. Pixels where the held-out render is not opaque (alpha < 0.5) count
as not covisible. Prints per view the PSNR over all pixels, over the covisible ones and their share.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.data.images import ImageLoader  # noqa: E402
from momentum_gs.data.scene import load_scene  # noqa: E402
from momentum_gs.trained import load_run  # noqa: E402


def render(model, camera, cfg):
    """(image [H, W, 3] in [0, 1], median depth [H, W], alpha [H, W]) of ``camera``, builtin rasterizer."""
    cfg.render.backend = "builtin"
    out = model.render(camera, cfg.render, appearance_index=None, extras=("median_depth",)).output
    return out.image.clamp(0, 1), out.median_depth[..., 0], out.alpha[..., 0]


def surface_points(camera, depth: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] world points at camera z ``depth`` [H, W] along each pixel centre's ray."""
    h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                          indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(camera.K.double()).T
    local = rays * depth.double()[..., None]
    to_world = camera.cam_to_world.double()
    return local @ to_world[:3, :3].T + to_world[:3, 3]


def seen_by(points: torch.Tensor, camera, depth: torch.Tensor, tolerance: float) -> torch.Tensor:
    """[H, W] bool: ``points`` [H, W, 3] that ``camera`` sees unhidden (its median ``depth`` [h, w])."""
    w2c = camera.world_to_cam.double()
    local = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = local[..., 2]
    pixel = local @ camera.K.double().T
    u, v = pixel[..., 0] / z.clamp_min(1e-9), pixel[..., 1] / z.clamp_min(1e-9)
    inside = (z > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    col, row = u.clamp(0, camera.width - 1).long(), v.clamp(0, camera.height - 1).long()
    front = depth.double()[row, col]
    return inside & (z <= (1 + tolerance) * front)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg, model, _ = load_run(args.run, torch.device("cpu"))
    model.eval()
    scene = load_scene(cfg.data)
    rows = []
    with torch.no_grad():
        train_depths = [render(model, camera, cfg)[1] for camera in scene.train]
        loader = ImageLoader(scene.test)
        for i, camera in enumerate(scene.test):
            truth = loader[i]
            truth = truth if truth.dtype == torch.float32 else truth.float() / 255
            image, depth, alpha = render(model, camera, cfg)
            points = surface_points(camera, depth)
            mask = torch.zeros(depth.shape, dtype=torch.bool)
            for other, other_depth in zip(scene.train, train_depths):
                mask |= seen_by(points, other, other_depth, args.tolerance)
            mask &= alpha >= 0.5
            error = ((image - truth) ** 2).mean(-1)
            row = {"name": camera.name, "psnr": float(-10 * torch.log10(error.mean())),
                   "covisible_share": float(mask.double().mean()),
                   "psnr_covisible": float(-10 * torch.log10(error[mask].mean())) if mask.any() else None,
                   "psnr_not_covisible": float(-10 * torch.log10(error[~mask].mean())) if (~mask).any() else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    covisible = [r["psnr_covisible"] for r in rows if r["psnr_covisible"] is not None]
    summary = {"run": str(args.run), "tolerance": args.tolerance, "views": rows,
               "psnr": float(np.mean([r["psnr"] for r in rows])),
               "psnr_covisible": float(np.mean(covisible)) if covisible else None,
               "covisible_share": float(np.mean([r["covisible_share"] for r in rows]))}
    print(f"held-out PSNR {summary['psnr']:.2f} dB over every pixel, {summary['psnr_covisible']:.2f} dB over the "
          f"{100 * summary['covisible_share']:.0f} % that a training photo saw")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
