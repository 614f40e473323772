"""Frame time of the live viewer against the number of Gaussians, with and without levels of detail.

    nice python scripts/bench_view_lod.py [--gaussians 100000 400000 1600000] [--rounds 3] [--threads 1]

A generated city (tests/helpers/generated_city.py: a flat ground of 4 × 4 blocks of anchors, an untrained
decoder) of each size is drawn as ``mgs view`` draws it (``momentum_gs.view.drawer.FrameDrawer``, no image
encoding, no browser) from two poses: "above", the whole city from high above one edge, and "street", at
head height in a corner block looking across the city. For each pose and frame (the moving camera's small
frame, the resting camera's full one) it prints the mean frame time and the Gaussians drawn with every block
whole and with levels (``--lod``, the default budgets; a few frames first let the measured rate settle), the
PSNR of the frame with levels against the whole one, and the time to build the levels (all blocks, once).
The last column, seconds per Gaussian of the whole moving frame, is what the viewer's first guess is read from.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.render.kernels import describe_cpu, kernels_in_use  # noqa: E402
from momentum_gs.view.drawer import FrameDrawer  # noqa: E402
from momentum_gs.view.frames import frame_size  # noqa: E402
from momentum_gs.view.server import PREVIEW_PIXELS  # noqa: E402
from tests.helpers.generated_city import GeneratedCity, look_at  # noqa: E402

FULL = (640, 480)
WARM_UP = 4  # frames before timing: the budget follows the rate measured on them


def poses(city: GeneratedCity, width: int, height: int) -> dict:
    """The "above" and "street" cameras at ``width`` × ``height`` (60 degrees of vertical field of view)."""
    span, focal = city.side * city.block_size, height / 2 / np.tan(np.radians(30))
    return {"above": look_at((span / 2, -0.6 * span, 0.8 * span), (span / 2, span / 2, 0), width, height, focal),
            "street": look_at((1.0, 1.0, 1.7), (span, span, 0), width, height, focal)}


def timed(drawer: FrameDrawer, camera, full: bool, rounds: int) -> tuple[float, int, np.ndarray]:
    """(mean seconds a frame, Gaussians drawn, the last image) over ``rounds`` frames after the warm-up."""
    blocks = range(drawer.source.num_blocks)
    for _ in range(WARM_UP if drawer.cache is not None else 1):
        drawer.render(blocks, camera, "rgb", False, full)
    started = time.perf_counter()
    for _ in range(rounds):
        image, drawn, _ = drawer.render(blocks, camera, "rgb", False, full)
    return (time.perf_counter() - started) / rounds, drawn, image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def bench(gaussians: int, rounds: int) -> None:
    """Print the rows of one city size."""
    city = GeneratedCity(gaussians)
    whole, levels = FrameDrawer(city), FrameDrawer(city, lod=True, background=False)
    started = time.perf_counter()
    levels.cache.wait(range(city.num_blocks))
    built = time.perf_counter() - started
    small = frame_size(*FULL, PREVIEW_PIXELS)
    for pose in ("above", "street"):
        for full, size in ((False, small), (True, FULL)):
            camera = poses(city, *size)[pose]
            t_whole, n_whole, image_whole = timed(whole, camera, full, rounds)
            t_lod, n_lod, image_lod = timed(levels, camera, full, rounds)
            chosen = sorted(level for level in levels.chosen.values() if level is not None)
            print(f"| {gaussians:,} | {pose} | {size[0]}x{size[1]} | {t_whole * 1000:.0f} | {n_whole:,} | "
                  f"{t_lod * 1000:.0f} | {n_lod:,} | {psnr(image_whole, image_lod):.1f} | "
                  f"{' '.join(map(str, chosen))} | {built:.1f} | {t_whole / max(n_whole, 1):.2e} |", flush=True)
    levels.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 400_000, 1_600_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch's threads (0: its default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"{describe_cpu()}; {kernels_in_use(device)}; {torch.get_num_threads()} thread(s); "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| Gaussians (anchors × 10) | pose | frame | whole, ms | drawn | levels, ms | drawn | PSNR vs whole, dB | "
          "levels drawn | levels built, s | s per Gaussian, whole |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for gaussians in args.gaussians:
        bench(gaussians, args.rounds)


if __name__ == "__main__":
    main()
