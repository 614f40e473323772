"""Resident memory of the training image cache against the number of images.

Writes N small PNG views (random pixels, so PNG cannot shrink them), then reads every one once through the
training loader (prefetching, cache on) and reports the process's resident memory (VmRSS) before and after,
per image and against the cache's byte budget.

    python scripts/bench_image_cache.py --counts 100 1000 5000 [--size 160 120] [--budget-mb 0]

``--budget-mb 0`` keeps the default budget (``data.cache_bytes=0``: a quarter of the machine's memory).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.images import ImageLoader


def rss_mb() -> float:
    """This process's resident memory in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_views(folder: Path, count: int, width: int, height: int) -> list[Camera]:
    rng = np.random.default_rng(0)
    cameras = []
    for i in range(count):
        path = folder / f"view_{i:05d}.png"
        if not path.is_file():
            cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        cameras.append(Camera(path.name, width, height, torch.eye(3), torch.eye(4), path, i))
    return cameras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--size", type=int, nargs=2, default=[160, 120], metavar=("W", "H"))
    parser.add_argument("--budget-mb", type=float, default=0, help="cache budget (0: the default)")
    parser.add_argument("--folder", type=Path, default=None, help="where the views go (default: a temporary one)")
    args = parser.parse_args()
    width, height = args.size
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mgs_cache_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    cameras = write_views(folder, max(args.counts), width, height)
    raw = width * height * 3 / 2**20
    print(f"{width}x{height} views, {raw * 1024:.1f} KB each as uint8; budget "
          f"{'default' if not args.budget_mb else f'{args.budget_mb:g} MB'}")
    print("| images | uint8 total (MB) | cache capacity (MB) | RSS before (MB) | RSS after (MB) | growth (MB) | "
          "growth / min(total, capacity) | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for count in args.counts:
        gc.collect()
        before = rss_mb()
        kwargs = {"cache_bytes": int(args.budget_mb * 2**20)} if args.budget_mb else {}
        loader = ImageLoader(cameras[:count], cache=True, prefetch=4, **kwargs)
        started = time.perf_counter()
        for _ in loader.iterate(range(count)):
            pass
        seconds = time.perf_counter() - started
        after = rss_mb()
        cache = getattr(loader, "cache", None)
        capacity = cache.capacity_bytes / 2**20 if hasattr(cache, "capacity_bytes") else float("inf")
        held = min(count * raw, capacity)
        print(f"| {count} | {count * raw:.1f} | {capacity:.1f} | {before:.0f} | {after:.0f} | {after - before:.1f} | "
              f"{(after - before) / held:.2f} | {count / seconds:.0f} |", flush=True)
        loader.close()
        del loader
        gc.collect()


if __name__ == "__main__":
    main()
