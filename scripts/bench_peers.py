"""Peer table on the CPU: our rasterizer (fused C++ and pure-PyTorch paths) against gsplat's pure-PyTorch reference.

    python scripts/bench_peers.py [--threads 1] [--repeats 5] [--isect-max 10000]

Forward + backward seconds (median, after a warm-up, the contestants alternating run by run) on the scenes
of ``bench_rasterizer.py``. gsplat 1.5.3 (``pip install --no-deps gsplat==1.5.3``) ships a PyTorch
reference of its CUDA kernels in ``gsplat/cuda/_torch_impl.py``, loaded here by path (importing the
package would build its CUDA extension). Of it, on a CPU:

- the projection (``_quat_scale_to_covar_preci`` + ``_fully_fused_projection``) runs, forward and backward,
  and is timed against ours: the fused C++ ``ops.project`` and the PyTorch ``project_gaussians``;
- the tile intersection ``_isect_tiles`` runs but loops over Gaussians in Python: timed up to
  ``--isect-max`` Gaussians (no gradient; ours are ``ops.intersect`` and ``intersect_tiles``);
- the compositing ``_rasterize_to_pixels`` cannot run: it calls the CUDA kernel
  ``rasterize_to_indices_in_range``, and its ``accumulate`` needs nerfacc's CUDA scans.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from momentum_gs.render import render
from momentum_gs.render.gsplat_backend import gsplat_reference
from momentum_gs.render.kernels.build import KERNELS_VARIABLE, OLD_MODES, kernels_in_use
from momentum_gs.render.kernels.ops import intersect, project
from momentum_gs.render.projection import project_gaussians
from momentum_gs.render.tiles import intersect_tiles, reach

sys.path.insert(0, str(Path(__file__).parent))
from bench_rasterizer import PARAMS, SIZES, random_scene  # noqa: E402


def _render(scene: dict, compositor: str) -> None:
    os.environ[KERNELS_VARIABLE] = OLD_MODES[compositor]
    params = {k: scene[k].clone().requires_grad_() for k in PARAMS}
    render(**(scene | params)).image.sum().backward()


def _ours_projection(scene: dict, fn=project) -> None:
    os.environ[KERNELS_VARIABLE] = "cpp"  # for ops.project; project_gaussians is the PyTorch one whatever it says
    params = {k: scene[k].clone().requires_grad_() for k in ("means", "quats", "scales")}
    proj = fn(params["means"], params["quats"], params["scales"], scene["world_to_cam"], scene["K"],
                             scene["width"], scene["height"], 0.01, 1e10, 0.3)
    (proj.means2d.sum() + proj.conics.sum() + proj.depths.sum()).backward()


def _gsplat_projection(ref, scene: dict) -> None:
    params = {k: scene[k].clone().requires_grad_() for k in ("means", "quats", "scales")}
    covars, _ = ref._quat_scale_to_covar_preci(params["quats"], params["scales"], True, False, triu=False)
    _, means2d, depths, conics, _ = ref._fully_fused_projection(
        params["means"], covars, scene["world_to_cam"][None], scene["K"][None], scene["width"], scene["height"],
        eps2d=0.3, near_plane=0.01, far_plane=1e10)
    (means2d.sum() + conics.sum() + depths.sum()).backward()


def _ours_isect(scene: dict, tile: int = 16, fn=intersect) -> None:
    os.environ[KERNELS_VARIABLE] = "cpp"
    proj = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["world_to_cam"], scene["K"],
                             scene["width"], scene["height"], 0.01, 1e10, 0.3)
    extents = reach(proj.covars2d, scene["opacities"], proj.radii)
    fn(proj.means2d, extents, proj.depths, -(-scene["width"] // tile), -(-scene["height"] // tile), tile)


def _gsplat_isect(ref, scene: dict, tile: int = 16) -> None:
    covars, _ = ref._quat_scale_to_covar_preci(scene["quats"], scene["scales"], True, False, triu=False)
    radii, means2d, depths, _, _ = ref._fully_fused_projection(
        scene["means"], covars, scene["world_to_cam"][None], scene["K"][None], scene["width"], scene["height"])
    ref._isect_tiles(means2d, radii, depths, tile, -(-scene["width"] // tile), -(-scene["height"] // tile))


def median_seconds(contestants: dict, repeats: int) -> dict:
    """{name: median seconds} of zero-argument callables, alternating run by run after one warm-up each."""
    times = {name: [] for name in contestants}
    for i in range(repeats + 1):
        for name, fn in contestants.items():
            start = time.perf_counter()
            with torch.enable_grad():
                fn()
            if i > 0:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--isect-max", type=int, default=10_000, help="largest scene for gsplat's Python-loop isect")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ref = gsplat_reference()
    os.environ[KERNELS_VARIABLE] = "cpp"
    print(f"threads={args.threads} torch={torch.__version__} gsplat reference: {'yes' if ref else 'not installed'}; "
          f"{kernels_in_use()}\n")
    print("| image | Gaussians | render fused s | render torch s | projection ours fused / torch s "
          "| projection gsplat-ref s | isect ours fused / torch s | isect gsplat-ref s | composite gsplat-ref |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for width, height, num in SIZES:
        scene = random_scene(num, width, height, torch.device("cpu"))
        contestants = {"fused": lambda: _render(scene, "fused"), "torch": lambda: _render(scene, "torch"),
                       "proj": lambda: _ours_projection(scene), "isect": lambda: _ours_isect(scene),
                       "proj_t": lambda: _ours_projection(scene, project_gaussians),
                       "isect_t": lambda: _ours_isect(scene, fn=intersect_tiles)}
        if ref is not None:
            contestants["gproj"] = lambda: _gsplat_projection(ref, scene)
        t = median_seconds(contestants, args.repeats)
        if ref is not None and num <= args.isect_max:
            t |= median_seconds({"gisect": lambda: _gsplat_isect(ref, scene)}, 1)
        cell = lambda key: f"{t[key]:.4f}" if key in t else "—"  # noqa: E731
        print(f"| {width}×{height} | {num} | {cell('fused')} | {cell('torch')} | {cell('proj')} / {cell('proj_t')} "
              f"| {cell('gproj')} | {cell('isect')} / {cell('isect_t')} | {cell('gisect')} | CUDA only |")


if __name__ == "__main__":
    main()
