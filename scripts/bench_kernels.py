"""Every C++ kernel against the PyTorch path it replaces, forward and backward, at two image sizes.

    python scripts/bench_kernels.py [--repeats 15] [--threads 1] [--sizes 128x96 256x192]

The kernels and what each is timed on (seeded, as ``bench_rasterizer``'s scenes: 10k Gaussians at 128×96,
30k at 256×192, in front of the camera):
  projection   ``ops.project`` / ``projection.project_gaussians``: the scene's Gaussians to the image;
  tile lists   ``ops.intersect`` / ``tiles.intersect_tiles`` (forward only: no gradient);
  compositor   ``FusedGaussianTiles`` / ``pair_coefficients`` + gathers + ``CompositeTiles``;
  ssim         ``FusedMeanSSIM`` / ``losses._MeanSSIM`` on two RGB images of the size;
  children     ``FusedChildren`` / ``neural.kept_children``: 1 visible anchor per 10 Gaussians, 10 children
               each, about half kept;
  anchor filter ``ops.reference_visible`` / ``neural.reference_visible_anchors`` (forward only) over one
               anchor per Gaussian.
Each repeat times both paths back to back, in alternating order (the machine's load hits both alike); the
table gives the medians and the median of the repeats' fused / torch ratios (below 1: the C++ is faster; the
goal is 0.5 or less). The first line names the CPU, its ISA and the kernels' build target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from momentum_gs import losses
from momentum_gs.model import neural
from momentum_gs.model.decoder import DecodedAnchors
from momentum_gs.render.kernels import build, ops
from momentum_gs.render.composite import CompositeTiles, pair_coefficients
from momentum_gs.render.projection import project_gaussians
from momentum_gs.render.tiles import TilePlan, intersect_tiles, reach

sys.path.insert(0, str(Path(__file__).parent))
from bench_rasterizer import random_scene  # noqa: E402

GAUSSIANS_PER_PIXEL = {(128, 96): 10_000, (256, 192): 30_000}
TILE = 8
# A kernel: make(size, path) -> (forward, backward or None); forward() returns what backward(out) needs.
Kernel = Callable[[tuple[int, int], str], tuple[Callable, Callable | None]]


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


def _backward_of(weights: list[torch.Tensor]) -> Callable:
    """backward(outputs): one weighted sum of ``outputs`` (fixed random weights), differentiated."""
    def backward(outputs):
        sum(((o * w).sum() for o, w in zip(outputs, weights))).backward()
    return backward


def _scene(size: tuple[int, int]) -> dict:
    width, height = size
    return random_scene(GAUSSIANS_PER_PIXEL.get(size, width * height), width, height, torch.device("cpu"))


def projection(size, path):
    scene = _scene(size)
    fn = ops.project if path == "fused" else project_gaussians
    weights = [torch.rand(len(scene["means"]), n) for n in (2, 3)] + [torch.rand(len(scene["means"]))]

    def forward():
        means, quats, scales = _leaves(scene["means"], scene["quats"], scene["scales"])
        proj = fn(means, quats, scales, scene["world_to_cam"], scene["K"], *size)
        return [proj.means2d, proj.conics, proj.depths]
    return forward, _backward_of(weights)


def _projected(size):
    scene = _scene(size)
    with torch.no_grad():
        proj = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["world_to_cam"],
                                 scene["K"], *size)
    return scene, proj


def tile_lists(size, path):
    scene, proj = _projected(size)
    extents = reach(proj.covars2d, scene["opacities"], proj.radii)
    tiles = -(-size[0] // TILE), -(-size[1] // TILE)
    fn = ops.intersect if path == "fused" else intersect_tiles

    def forward():
        return fn(proj.means2d, extents, proj.depths, *tiles, TILE)
    return forward, None


def compositor(size, path):
    scene, proj = _projected(size)
    extents = reach(proj.covars2d, scene["opacities"], proj.radii)
    tiles_x, tiles_y = -(-size[0] // TILE), -(-size[1] // TILE)
    gauss_ids, tile_ids, offsets = ops.intersect(proj.means2d, extents, proj.depths, tiles_x, tiles_y, TILE)
    plan = TilePlan(TILE, tiles_x, tiles_y, gauss_ids, tile_ids, 1 << 18, offsets)
    weight = torch.rand(plan.num_tiles, 4, TILE * TILE)

    def forward():
        means2d, conics, opacities, colors = _leaves(proj.means2d, proj.conics, scene["opacities"], scene["colors"])
        if path == "fused":
            return [ops.FusedGaussianTiles.apply(means2d, conics, opacities, colors, plan)]
        coefs = pair_coefficients(means2d, conics, plan)
        return [CompositeTiles.apply(coefs, opacities[plan.gauss_ids], colors[plan.gauss_ids], plan, True)]
    return forward, _backward_of([weight])


def ssim(size, path):
    width, height = size
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, height, width, 3, generator=gen)
    y = (0.7 * x + 0.3 * y).contiguous()
    window = losses._cached_window(11, 1.5, torch.float32, torch.device("cpu"))

    def forward():
        (a,) = _leaves(x)
        if path == "fused":
            return [ops.FusedMeanSSIM.apply(a[None], y[None], window, losses.SSIM_C1, losses.SSIM_C2)]
        return [losses._MeanSSIM.apply(losses._to_nchw(a), losses._to_nchw(y), window)]
    return forward, _backward_of([torch.ones(())])


def children(size, path):
    num = GAUSSIANS_PER_PIXEL.get(size, size[0] * size[1]) // 10
    k, gen = 10, torch.Generator().manual_seed(0)
    positions, offsets = torch.randn(num, 3, generator=gen), torch.randn(num, k, 3, generator=gen)
    scalings = torch.randn(num, 6, generator=gen) - 2
    anchor_index = torch.arange(num)
    opacity, cov = torch.randn(num, k, generator=gen), torch.randn(num, k, 7, generator=gen)
    color = torch.rand(num, k, 3, generator=gen)
    kept = (opacity > 0).reshape(-1).nonzero()[:, 0]
    sizes = [(len(kept), 3), (len(kept), 4), (len(kept), 3), (len(kept),), (len(kept), 3)]
    weights = [torch.rand(s, generator=gen) for s in sizes]

    def forward():
        leaves = _leaves(positions, offsets, scalings, opacity, cov, color)
        p, o, s, op, cv, col = leaves
        if path == "fused":
            return list(ops.FusedChildren.apply(p, o, s, anchor_index, op, cv, col, kept))
        decoded = DecodedAnchors(opacity=op, cov=cv, color=col)
        view = _AnchorRows(p, o)
        return list(neural.kept_children(view, anchor_index, s.index_select(0, anchor_index), decoded, kept))
    return forward, _backward_of(weights)


class _AnchorRows:
    """The two fields of an ``AnchorSet`` that ``kept_children`` reads."""

    def __init__(self, positions, offsets):
        self.positions, self.offsets = positions, offsets


def anchor_filter(size, path):
    scene = _scene(size)
    scales = scene["scales"].mean(dim=1, keepdim=True).expand(-1, 3) * 4

    def forward():
        args = (scene["means"], scales, scene["world_to_cam"], scene["K"], *size)
        if path == "fused":
            return neural.fused_reference_visible_anchors(*args)
        return neural.reference_visible_anchors(*args)
    return forward, None


KERNELS: dict[str, Kernel] = {"projection": projection, "tile lists": tile_lists, "compositor": compositor,
                              "ssim": ssim, "children": children, "anchor filter": anchor_filter}


def time_kernel(make: Kernel, size: tuple[int, int], repeats: int) -> dict:
    """Median forward and backward seconds per path, and the medians of the per-repeat fused / torch ratios."""
    runs = {path: make(size, path) for path in ("torch", "fused")}
    times = {(path, phase): [] for path in runs for phase in ("forward", "backward")}
    for repeat in range(repeats + 1):  # the first is a warm-up
        for path in (("torch", "fused") if repeat % 2 else ("fused", "torch")):
            os.environ[build.KERNELS_VARIABLE] = build.OLD_MODES[path]
            forward, backward = runs[path]
            start = time.perf_counter()
            out = forward()
            middle = time.perf_counter()
            if backward is not None:
                backward(out)
            end = time.perf_counter()
            if repeat:
                times[path, "forward"].append(middle - start)
                times[path, "backward"].append(end - middle)
    result = {}
    for phase in ("forward", "backward"):
        if runs["torch"][1] is None and phase == "backward":
            continue
        torch_s, fused_s = times["torch", phase], times["fused", phase]
        result[phase] = (statistics.median(torch_s), statistics.median(fused_s),
                         statistics.median(f / t for f, t in zip(fused_s, torch_s)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", default=["128x96", "256x192"])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    built = build.build()
    if built.ops is None:
        sys.exit(f"the C++ kernels did not build: {built.note}")
    print(f"cpu: {build.describe_cpu()}")
    print(f"kernels: {built.target} for -march={built.march}; torch {torch.__version__}, {args.threads} thread(s), "
          f"medians of {args.repeats}\n")
    print("| kernel | image | forward s torch / C++ (ratio) | backward s torch / C++ (ratio) |")
    print("|---|---|---:|---:|")
    for name in args.kernels:
        for text in args.sizes:
            size = tuple(int(v) for v in text.split("x"))
            result = time_kernel(KERNELS[name], size, args.repeats)
            cells = []
            for phase in ("forward", "backward"):
                if phase in result:
                    t, f, ratio = result[phase]
                    cells.append(f"{t * 1e3:.3f} / {f * 1e3:.3f} ms ({ratio:.2f})")
                else:
                    cells.append("—")
            print(f"| {name} | {size[0]}×{size[1]} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
