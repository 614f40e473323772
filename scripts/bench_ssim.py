"""Time the mean SSIM and its backward as training calls them (``losses.ssim`` on [1, H, W, 3] float32 images,
1 thread): the first quartile of the timed calls, after a warm-up. Run it on two checkouts alternately
(``PYTHONPATH=<checkout> python scripts/bench_ssim.py``) to compare two versions of the C++ kernel; with
``MOMENTUM_GS_MARCH=x86-64-v3`` for the AVX2 build."""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--sizes", nargs="+", default=["128x96", "256x192"], help="WxH")
    args = parser.parse_args()
    from momentum_gs.losses import ssim
    from momentum_gs.render.kernels import describe_cpu

    torch.set_num_threads(1)
    print(describe_cpu())
    for size in args.sizes:
        width, height = (int(n) for n in size.split("x"))
        generator = torch.Generator().manual_seed(0)
        a = torch.rand(1, height, width, 3, generator=generator, requires_grad=True)
        b = torch.rand(1, height, width, 3, generator=generator)
        forward, backward = [], []
        for call in range(5 + args.calls):
            start = time.perf_counter()
            value = ssim(a, b)
            middle = time.perf_counter()
            value.backward()
            end = time.perf_counter()
            if call >= 5:
                forward.append(middle - start), backward.append(end - middle)
        forward.sort(), backward.sort()
        quartile = len(forward) // 4
        print(f"{width}x{height}: forward {forward[quartile] * 1e3:.3f} ms, backward {backward[quartile] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
