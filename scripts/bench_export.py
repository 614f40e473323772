"""Held-out PSNR of the baked standard 3DGS export against the model it came from, for each SH degree.

    python scripts/bench_export.py RUN [--degrees 0 1 2 3] [--out DIR] [--refine STEPS] [--device cuda]

Bakes RUN's merged model from its training views (``momentum_gs.model.standard.bake``), writes each PLY and ``.spz``
file (and, at degree 0, the ``.splat`` file), reads it back, renders the held-out views with SH evaluation and
prints a markdown table beside the model's own held-out PSNR (what ``mgs eval`` reports).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import load_scene
from momentum_gs.export.refine import refine
from momentum_gs.export.run import held_out_scores
from momentum_gs.export.splat import load_splat, save_splat
from momentum_gs.export.spz import load_spz, save_spz
from momentum_gs.export.standard_ply import load_standard_ply, save_standard_ply
from momentum_gs.model.standard import bake
from momentum_gs.trained import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--degrees", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=None, help="where the PLY files go (default: a temporary folder)")
    parser.add_argument("--refine", type=int, default=0, help="refine each bake this many steps (mgs export --refine)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mgs_export_bench_"))
    device = torch.device(args.device)
    cfg, model, _ = load_run(args.run, device)
    scene = load_scene(cfg.data)
    loader = ImageLoader(scene.test, cache=False)
    truths = [loader[i] for i in range(len(scene.test))]
    photos = ImageLoader(scene.train) if args.refine else None

    def held_out(render) -> float:
        return held_out_scores(render, scene.test, truths)["psnr"]

    base = held_out(lambda c: model.render(c, cfg.render).output.image)
    print(f"{args.run}: model {base:.2f} dB on {len(truths)} held-out views, {model.num_anchors} anchors")
    what = f"bake + refine {args.refine} steps" if args.refine else "bake"
    print(f"| SH degree | held-out PSNR (dB) | vs model (dB) | Gaussians | file (MB) | {what} (s) |")
    print("|---|---|---|---|---|---|")
    for degree in args.degrees:
        started = time.perf_counter()
        gaussians = bake(model, scene.train, cfg.render, degree=degree, show_progress=False)
        if args.refine:
            gaussians, _ = refine(model, gaussians, scene.train, photos, cfg.render, args.refine, show_progress=False)
        path = save_standard_ply(gaussians, out / f"point_cloud_sh{degree}.ply")
        seconds = time.perf_counter() - started
        baked = load_standard_ply(path, device)
        value = held_out(lambda c: baked.render(c, cfg.render))
        print(f"| {degree} | {value:.2f} | {value - base:+.2f} | {len(baked)} | {path.stat().st_size / 2**20:.1f} | "
              f"{seconds:.1f} |", flush=True)
        spz = load_spz(save_spz(baked, out / f"scene_sh{degree}.spz"), device)  # the same Gaussians, quantised
        value = held_out(lambda c: spz.render(c, cfg.render))
        size = (out / f"scene_sh{degree}.spz").stat().st_size / 2**20
        print(f"| {degree}, .spz | {value:.2f} | {value - base:+.2f} | {len(spz)} | {size:.1f} | |", flush=True)
        if degree == 0:  # the .splat file holds the degree-0 colour in 8 bits
            splat = load_splat(save_splat(baked, out / "scene.splat"), device)
            value = held_out(lambda c: splat.render(c, cfg.render))
            size = (out / "scene.splat").stat().st_size / 2**20
            print(f"| 0, .splat | {value:.2f} | {value - base:+.2f} | {len(splat)} | {size:.1f} | |", flush=True)


if __name__ == "__main__":
    main()
