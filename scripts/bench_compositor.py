"""The compositor alone: achieved GFLOP/s against one core's peak, and how time scales with the scene.

    python scripts/bench_compositor.py roofline [--repeats 7]      # 256×192, 30k Gaussians, 1 thread
    python scripts/bench_compositor.py scaling [--repeats 3]       # fused render vs Gaussians and vs pixels

Flops are counted per evaluated slot (one pixel × one pair: every pixel of a tile, padded to whole vectors,
for every pair of the tile up to the one after which all its pixels are done), as the fused kernel executes
them (kernels/csrc/composite.cpp; an FMA is 2, exp is its 21-flop polynomial, compares and selects are not counted):
forward 34 + 2D + 1 (log α 10, exp 21, T and w 3, colour and alpha 2D + 1), backward 51 + 4D (the forward
step 34, g·ĉ 2D, colour gradients 2D, the running sum 2, ∂L/∂log α 4, the six feature sums 11). The peak
is torch's float32 matmul (2048², MKL) on one thread.

The kernel training uses (``FusedGaussianTiles``: the pairs' coefficients made inside, and each pair visiting
only the vectors of pixels its α >= 1/255 band reaches) is timed on the same scene; its rate is given as
"effective": the slot count above over its time, although it evaluates fewer slots.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from momentum_gs.render import composite, render
from momentum_gs.render.builtin import CHUNK_ELEMS_CPU
from momentum_gs.render.composite import CompositeTiles, pair_coefficients
from momentum_gs.render.kernels.build import build
from momentum_gs.render.kernels.ops import FusedCompositeTiles, FusedGaussianTiles, intersect, project
from momentum_gs.render.projection import project_gaussians
from momentum_gs.render.tiles import TilePlan, intersect_tiles, reach

sys.path.insert(0, str(Path(__file__).parent))
from bench_rasterizer import PARAMS, random_scene  # noqa: E402

CPU = torch.device("cpu")


def flops_per_slot(channels: int) -> tuple[int, int]:
    """(forward, backward) flops the fused kernel executes per evaluated slot with ``channels`` colours."""
    return 34 + 2 * channels + 1, 51 + 4 * channels


def compositor_inputs(scene: dict, tile_size: int = 8) -> tuple:
    """(coefs, opacities, colors, plan) of ``scene`` as the builtin backend hands them to the compositor."""
    w, h = scene["width"], scene["height"]
    proj = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["world_to_cam"], scene["K"],
                             w, h, 0.01, 1e10, 0.3)
    tiles_x, tiles_y = -(-w // tile_size), -(-h // tile_size)
    extents = reach(proj.covars2d, scene["opacities"], proj.radii)
    gauss_ids, tile_ids = intersect_tiles(proj.means2d, extents, proj.depths, tiles_x, tiles_y, tile_size)
    plan = TilePlan(tile_size, tiles_x, tiles_y, gauss_ids, tile_ids, CHUNK_ELEMS_CPU)
    coefs = pair_coefficients(proj.means2d, proj.conics, plan)
    return coefs, scene["opacities"][gauss_ids], scene["colors"][gauss_ids], plan


@torch.no_grad()
def evaluated_slots(coefs, opacities, plan: TilePlan, lanes: int = 16) -> int:
    """Pixel × pair slots the fused kernel evaluates: per tile, the padded pixel count times the pairs up to
    the one after which every pixel is done (from the torch compositor's transmittances)."""
    pixels = -(-plan.tile_size**2 // lanes) * lanes
    counts = torch.bincount(plan.tile_ids, minlength=plan.num_tiles)
    feats = composite.pixel_features(plan.tile_size, coefs.dtype, coefs.device)
    table = composite._pair_table(coefs, opacities, coefs.new_zeros(len(coefs), 0))
    total = 0
    for tiles, pairs in plan.chunks:
        _, trans_after, _ = composite._weights(feats, table[pairs][..., :6])
        done = trans_after <= composite.TRANS_MIN  # [B, P, L], the clamp makes it equality
        first = torch.where(done.any(-1), done.to(torch.uint8).argmax(-1), pairs.shape[1])  # [B, P]
        all_done = first.amax(-1) + 1  # the pair after which the last pixel is done (beyond L: never)
        total += int(torch.minimum(all_done, counts[tiles]).sum()) * pixels
    return total


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(repeats: int, n: int = 2048) -> float:
    """GFLOP/s of a float32 n×n matmul (2n³ flops) on the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _median_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def roofline(repeats: int) -> None:
    scene = random_scene(30_000, 256, 192, CPU)
    coefs, opacities, colors, plan = (t.detach() if torch.is_tensor(t) else t for t in compositor_inputs(scene))
    slots = evaluated_slots(coefs, opacities, plan)
    fwd_flops, bwd_flops = (slots * f for f in flops_per_slot(colors.shape[1]))
    args = [t.clone().requires_grad_() for t in (coefs, opacities, colors)]
    out = FusedCompositeTiles.apply(*args, plan)
    grad = torch.randn_like(out)
    rows = {}
    for name, fn in (("fused", lambda: FusedCompositeTiles.apply(*args, plan)),
                     ("torch", lambda: CompositeTiles.apply(*args, plan, True))):
        fwd = _median_seconds(lambda: fn(), repeats)
        total = _median_seconds(lambda: torch.autograd.backward(fn(), grad), repeats)
        rows[name] = (fwd, total - fwd)
    rows["fused, Gaussian rows (effective)"] = _gaussian_rows_seconds(scene, repeats)
    params = {k: scene[k].clone().requires_grad_() for k in PARAMS}
    whole = _median_seconds(lambda: render(**(scene | params)).image.sum().backward(), repeats)
    peak = matmul_peak(repeats)
    print(f"256×192, 30000 Gaussians, {len(coefs)} pairs, {slots} evaluated slots; flops per slot forward "
          f"{flops_per_slot(3)[0]}, backward {flops_per_slot(3)[1]}; one-core peak (float32 matmul 2048²) "
          f"{peak:.1f} GFLOP/s\n")
    print("| compositor | forward s | GFLOP/s | backward s | GFLOP/s | fwd+bwd GFLOP/s | % of peak |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for name, (fwd, bwd) in rows.items():
        rate = (fwd_flops + bwd_flops) / (fwd + bwd) / 1e9
        print(f"| {name} | {fwd:.4f} | {fwd_flops / fwd / 1e9:.1f} | {bwd:.4f} | {bwd_flops / bwd / 1e9:.1f} | "
              f"{rate:.1f} | {100 * rate / peak:.0f} % |")
    rate = (fwd_flops + bwd_flops) / whole / 1e9
    print(f"| whole render, fused (fwd+bwd {whole:.4f} s) | | | | | {rate:.1f} | {100 * rate / peak:.0f} % |")


def _gaussian_rows_seconds(scene: dict, repeats: int, tile_size: int = 8) -> tuple[float, float]:
    """(forward, backward) seconds of ``FusedGaussianTiles`` on ``scene``'s projected Gaussians."""
    w, h = scene["width"], scene["height"]
    proj = project(scene["means"], scene["quats"], scene["scales"], scene["world_to_cam"], scene["K"], w, h)
    tiles_x, tiles_y = -(-w // tile_size), -(-h // tile_size)
    extents = reach(proj.covars2d, scene["opacities"], proj.radii)
    plan = TilePlan(tile_size, tiles_x, tiles_y, *intersect(proj.means2d, extents, proj.depths, tiles_x, tiles_y,
                                                            tile_size)[:2], CHUNK_ELEMS_CPU)
    args = [t.detach().clone().requires_grad_() for t in (proj.means2d, proj.conics, scene["opacities"],
                                                          scene["colors"])]
    grad = torch.randn_like(FusedGaussianTiles.apply(*args, plan))
    fwd = _median_seconds(lambda: FusedGaussianTiles.apply(*args, plan), repeats)
    total = _median_seconds(lambda: torch.autograd.backward(FusedGaussianTiles.apply(*args, plan), grad), repeats)
    return fwd, total - fwd


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares exponent b of y = a·x^b."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sum((x - mx) ** 2 for x in lx)


def _zoomed(scene: dict, factor: int) -> dict:
    """The same world seen ``factor`` times sharper: intrinsics and image size scaled, footprints with them."""
    K = scene["K"].clone()
    K[:2] *= factor
    return scene | dict(K=K, width=scene["width"] * factor, height=scene["height"] * factor)


def scaling(repeats: int) -> None:
    """Fused render and compositor seconds (forward + backward) against the number of Gaussians at 256×192,
    and against the pixel count for one 100k-Gaussian scene (``_zoomed``), with least-squares exponents."""
    series = {"Gaussians (256×192)": [(256, 192, n) for n in (30_000, 100_000, 300_000, 1_000_000)],
              "pixels (100k Gaussians)": [(w, h, 100_000) for w, h in ((256, 192), (512, 384), (1024, 768))]}
    print("| series | image | Gaussians | pairs | render fwd+bwd s | compositor fwd+bwd s |\n"
          "|---|---|---:|---:|---:|---:|")
    fits = []
    for name, sizes in series.items():
        xs, renders, kernels = [], [], []
        for w, h, n in sizes:
            scene = _zoomed(random_scene(n, 256, 192, CPU), w // 256) if name.startswith("pixels") else \
                random_scene(n, w, h, CPU)
            params = {k: scene[k].clone().requires_grad_() for k in PARAMS}
            whole = _median_seconds(lambda: render(**(scene | params)).image.sum().backward(), repeats)
            *inputs, plan = compositor_inputs(scene)
            args = [t.detach().clone().requires_grad_() for t in inputs]
            kernel = _median_seconds(lambda: FusedCompositeTiles.apply(*args, plan).sum().backward(), repeats)
            print(f"| {name} | {w}×{h} | {n} | {len(plan.gauss_ids)} | {whole:.4f} | {kernel:.4f} |")
            xs.append(n if name.startswith("Gaussians") else w * h)
            renders.append(whole)
            kernels.append(kernel)
        fits.append(f"{name}: render ∝ x^{_slope(xs, renders):.2f}, compositor ∝ x^{_slope(xs, kernels):.2f}")
    print("\n" + "\n".join(fits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("roofline", "scaling"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if build().ops is None:
        raise SystemExit(f"the C++ kernels did not build: {build().note}")
    roofline(args.repeats) if args.what == "roofline" else scaling(args.repeats)


if __name__ == "__main__":
    main()
