"""Time the rasterizer (forward, backward, total) on random scenes and print a markdown table.

    python scripts/bench_rasterizer.py [--device cpu] [--threads 2] [--backend builtin] [--repeats 5]
                                       [--compositor torch|fused|both|auto] [--sizes 256x192x30000 ...]

Scene: Gaussians spread uniformly over the view frustum at depths 2..10, with per-axis screen-space
standard deviations log-uniform in 0.5..3.5 pixels (3σ footprints of about 3 to 20 pixels across),
random rotations, opacities U(0.1, 0.9), random colours. Seeded, so runs are comparable.

``--compositor`` picks the CPU kernels of the "builtin" backend (``MOMENTUM_GS_KERNELS``, fused meaning cpp):
``both`` alternates the two run by run in one process (the machine's load hits both alike) and adds the medians of
the fused/torch ratios of each pair of runs, forward, backward and total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from momentum_gs.render import render
from momentum_gs.render.kernels.build import KERNELS_VARIABLE, OLD_MODES, describe_cpu, kernels_in_use, kernels_mode

SIZES = [(64, 48, 2_000), (128, 96, 10_000), (256, 192, 30_000)]
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def random_scene(num: int, width: int, height: int, device: torch.device, seed: int = 0) -> dict:
    """Keyword arguments for ``render``: a seeded random scene in front of a camera at the origin."""
    gen = torch.Generator().manual_seed(seed)
    focal = 1.2 * width
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    depth = 2 + 8 * torch.rand(num, generator=gen)
    pix = torch.rand(num, 2, generator=gen) * torch.tensor([width, height])
    means = torch.cat([(pix - K[:2, 2]) / focal * depth[:, None], depth[:, None]], dim=-1)
    sigma_px = 0.5 * 7.0 ** torch.rand(num, 3, generator=gen)  # log-uniform in [0.5, 3.5] pixels
    scene = dict(
        means=means, quats=torch.randn(num, 4, generator=gen), scales=sigma_px * depth[:, None] / focal,
        opacities=0.1 + 0.8 * torch.rand(num, generator=gen), colors=torch.rand(num, 3, generator=gen),
        world_to_cam=torch.eye(4), K=K,
    )
    return {k: v.to(device) for k, v in scene.items()} | dict(width=width, height=height)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(scene: dict, backend: str) -> tuple[float, float, int]:
    """Forward and backward seconds of one render of ``scene`` (loss: the image's sum), and the drawn count."""
    device = scene["means"].device
    params = {k: scene[k].clone().requires_grad_() for k in PARAMS}
    _sync(device)
    start = time.perf_counter()
    out = render(**(scene | params), backend=backend)
    _sync(device)
    mid = time.perf_counter()
    out.image.sum().backward()
    _sync(device)
    return mid - start, time.perf_counter() - mid, int((out.radii > 0).sum())


def time_render(scene: dict, backend: str, repeats: int, compositors: tuple[str, ...] = ("auto",)) -> dict:
    """{compositor: (forward, backward) seconds per timed run}, the compositors alternating run by run after
    one warm-up each, and the number of drawn Gaussians under "drawn"."""
    times = {mode: [] for mode in compositors}
    for i in range(repeats + 1):
        for mode in compositors:
            os.environ[KERNELS_VARIABLE] = OLD_MODES[mode]
            fwd, bwd, drawn = time_once(scene, backend)
            if i > 0:
                times[mode].append((fwd, bwd))
    return times | {"drawn": drawn}


def _median(runs: list[tuple[float, float]], part: int | None) -> float:
    return statistics.median(r[part] if part is not None else r[0] + r[1] for r in runs)


def _ratio(fast: list, slow: list, part: int | None) -> float:
    """Median over paired runs of fast/slow seconds."""
    pick = (lambda r: r[part]) if part is not None else (lambda r: r[0] + r[1])
    return statistics.median(pick(f) / pick(s) for f, s in zip(fast, slow))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--backend", default="builtin")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (median reported)")
    parser.add_argument("--compositor", default={"cpp": "fused"}.get(kernels_mode(), kernels_mode()),
                        choices=("auto", "torch", "fused", "both"), help="CPU compositor; both: interleaved")
    parser.add_argument("--sizes", nargs="*", help="WIDTHxHEIGHTxGAUSSIANS (default: the three standard sizes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes] if args.sizes else SIZES
    modes = ("torch", "fused") if args.compositor == "both" else (args.compositor,)

    print(f"backend={args.backend} device={device} threads={args.threads} torch={torch.__version__}")
    if device.type == "cpu":
        print(f"cpu: {describe_cpu()}")  # the kernels' build target is in the compositor line below
    for mode in modes:
        os.environ[KERNELS_VARIABLE] = OLD_MODES[mode]
        print(f"{mode}: {kernels_in_use(device)}")
    if len(modes) == 1:
        print("\n| image | Gaussians | drawn | forward s | backward s | total s |\n|---|---:|---:|---:|---:|---:|")
    else:
        print("\n| image | Gaussians | drawn | forward s torch / fused (ratio) | backward s torch / fused (ratio) "
              "| total s torch / fused (ratio) |\n|---|---:|---:|---:|---:|---:|")
    for width, height, num in sizes:
        times = time_render(random_scene(num, width, height, device), args.backend, args.repeats, modes)
        head = f"| {width}×{height} | {num} | {times['drawn']} |"
        if len(modes) == 1:
            runs = times[modes[0]]
            print(f"{head} {' | '.join(f'{_median(runs, p):.4f}' for p in (0, 1, None))} |")
        else:
            slow, fast = times["torch"], times["fused"]
            cells = (f"{_median(slow, p):.4f} / {_median(fast, p):.4f} ({_ratio(fast, slow, p):.2f})"
                     for p in (0, 1, None))
            print(f"{head} {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
