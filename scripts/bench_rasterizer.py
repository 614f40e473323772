"""Time the rasterizer (forward, backward, total) on random scenes and print a markdown table.

    python scripts/bench_rasterizer.py [--device cpu] [--threads 2] [--backend torch] [--repeats 5]

Scene: Gaussians spread uniformly over the view frustum at depths 2..10, with per-axis screen-space
standard deviations log-uniform in 0.5..3.5 pixels (3σ footprints of about 3 to 20 pixels across),
random rotations, opacities U(0.1, 0.9), random colours. Seeded, so runs are comparable.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from momentum_gs.render import render

SIZES = [(64, 48, 2_000), (128, 96, 10_000), (256, 192, 30_000)]


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


def time_render(scene: dict, backend: str, repeats: int) -> tuple[float, float, int]:
    """Median forward and backward seconds (after one warm-up) and the number of drawn Gaussians."""
    device = scene["means"].device
    names = ("means", "quats", "scales", "opacities", "colors")
    params = {k: scene[k].clone().requires_grad_() for k in names}
    fwd, bwd = [], []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        out = render(**(scene | params), backend=backend)
        _sync(device)
        mid = time.perf_counter()
        out.image.sum().backward()
        _sync(device)
        end = time.perf_counter()
        if i > 0:
            fwd.append(mid - start)
            bwd.append(end - mid)
    return statistics.median(fwd), statistics.median(bwd), int((out.radii > 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"backend={args.backend} device={device} threads={args.threads} torch={torch.__version__}\n")
    print("| image | Gaussians | drawn | forward s | backward s | total s |")
    print("|---|---:|---:|---:|---:|---:|")
    for width, height, num in SIZES:
        fwd, bwd, drawn = time_render(random_scene(num, width, height, device), args.backend, args.repeats)
        print(f"| {width}×{height} | {num} | {drawn} | {fwd:.4f} | {bwd:.4f} | {fwd + bwd:.4f} |")


if __name__ == "__main__":
    main()
