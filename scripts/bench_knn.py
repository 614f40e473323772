"""Time the anchors' initial-scale kNN (mean squared distance to k nearest points), scipy vs torch, as a table.

    python scripts/bench_knn.py [--sizes 10000 100000 1000000] [--device cuda] [--repeats 3] [--json PATH]

Methods, both starting from a float32 [N, 3] tensor on ``--device`` and ending with a [N] tensor there:

- "scipy": ``momentum_gs.model.anchors.knn_mean_squared_distance`` (cKDTree on the host), timed with its
  round trip ``.cpu().numpy()`` -> kNN -> ``torch.as_tensor(...).to(device)``.
- "torch": exact brute force on the device (:func:`knn_mean_squared_distance_torch`): chunks of query rows,
  each chunk's distances to all points with ``torch.cdist`` and ``topk(k + 1, largest=False)``, the point
  itself dropped. Chunks are as large as ``--chunk-mb`` allows for their [rows, N] float32 distance matrix.

Point clouds look like an aerial capture: 70 % uniform over a 1000 × 1000 ground area with a few units of
terrain height, 30 % in dense clusters (buildings, trees) of 1..10 units across; float32, seeded.
Each timing is the median of ``--repeats`` runs (torch after one warm-up). A (method, size) whose one run
is predicted to take more than ``--max-seconds``, scaling the last smaller size's time by N² (torch) or
N log N (scipy), is skipped. The two methods' results are compared by their largest relative difference
(denominator floored at 1e-10 units²); the exit status is 1 when it reaches 1e-3 at any size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.model.anchors import knn_mean_squared_distance

SIZES = [10_000, 100_000, 1_000_000]
GROUND = 1000.0  # world units, side of the square ground area
ZERO_MSD = 1e-10  # world units²; below this a mean squared distance counts as 0 in the relative difference
MAX_REL_DIFF = 1e-3  # the two methods disagree above this


def aerial_points(num: int, seed: int = 0) -> np.ndarray:
    """[num, 3] float32 points: uniform ground with gentle terrain plus dense clusters (seeded)."""
    rng = np.random.default_rng(seed)
    n_cluster = int(0.3 * num)
    n_ground = num - n_cluster
    xy = rng.uniform(0.0, GROUND, size=(n_ground, 2))
    terrain = 3.0 * np.sin(xy[:, 0] / 97.0) * np.cos(xy[:, 1] / 131.0)  # a few units of relief
    ground = np.column_stack([xy, terrain + rng.normal(0.0, 0.2, n_ground)])
    n_centres = max(1, num // 2000)
    centres = np.column_stack([rng.uniform(0.0, GROUND, (n_centres, 2)), rng.uniform(0.0, 20.0, n_centres)])
    spread = rng.uniform(0.5, 5.0, n_centres)  # cluster σ, world units
    which = rng.integers(0, n_centres, n_cluster)
    clusters = centres[which] + rng.normal(size=(n_cluster, 3)) * spread[which, None]
    points = np.concatenate([ground, clusters])
    return points[rng.permutation(num)].astype(np.float32)


def knn_mean_squared_distance_torch(points: torch.Tensor, k: int = 3, chunk_mb: float = 1024.0) -> torch.Tensor:
    """[P] float32 mean squared distance of each point to its ``k`` nearest other points, on its device.

    Exact brute force, the contract of ``knn_mean_squared_distance``: fewer than ``k`` other points: the
    ones there are; a lone point gets 0. Query rows go in chunks whose [rows, P] float32 distance matrix
    fits in ``chunk_mb`` MB. Distances are differences squared and summed (``cdist`` without the matrix
    product form ‖a‖² − 2ab + ‖b‖², whose cancellation at coordinates of hundreds of units loses the small
    distances of dense clusters in float32).
    """
    points = points.detach().to(torch.float32).reshape(-1, 3).contiguous()
    num = points.shape[0]
    kk = min(k, num - 1)
    if kk < 1:
        return torch.zeros(num, dtype=torch.float32, device=points.device)
    rows = max(1, min(num, int(chunk_mb * 2**20 // (4 * num))))
    out = torch.empty(num, dtype=torch.float32, device=points.device)
    for start in range(0, num, rows):
        query = points[start:start + rows]
        dist = torch.cdist(query, points, compute_mode="donot_use_mm_for_euclid_dist")
        nearest = dist.topk(kk + 1, dim=1, largest=False, sorted=True).values
        out[start:start + rows] = nearest[:, 1:].square().mean(dim=1)  # column 0: the point itself (or a twin)
        del dist, nearest
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_scipy(points: torch.Tensor, k: int) -> torch.Tensor:
    """The library's host kNN with its round trip from and back to ``points.device``."""
    msd = knn_mean_squared_distance(points.cpu().numpy(), k=k)
    return torch.as_tensor(msd).to(points.device)


def time_method(fn, points: torch.Tensor, repeats: int, warmup: bool) -> tuple[float, torch.Tensor]:
    """Median seconds of ``repeats`` calls ``fn(points)`` (after one untimed call if ``warmup``) and the result."""
    device = points.device
    if warmup:
        fn(points)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn(points)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def max_rel_diff(result: torch.Tensor, reference: torch.Tensor) -> float:
    """max |result − reference| / reference, the denominator floored at ``ZERO_MSD`` (distances ~0)."""
    a = result.detach().cpu().double().numpy()
    b = reference.detach().cpu().double().numpy()
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), ZERO_MSD))) if len(b) else 0.0


def predicted(last: tuple[int, float] | None, num: int, method: str) -> float | None:
    """One run's seconds at ``num`` points from ``last`` = (size, seconds): N² for torch, N log N for scipy."""
    if last is None:
        return None
    n0, t0 = last
    if method == "torch":
        return t0 * (num / n0) ** 2
    return t0 * (num * math.log(num)) / (n0 * math.log(n0))


def machine(device: torch.device) -> dict:
    """CPU model, cores, torch version and threads, and the GPU name when ``device`` is CUDA."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cell(seconds: float | None, estimate: float | None) -> str:
    return f"{seconds:.3f}" if seconds is not None else f"skipped (est. {estimate:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="point counts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--k", type=int, default=3, help="neighbours per point")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per (method, size); median reported")
    parser.add_argument("--chunk-mb", type=float, default=1024.0, help="budget of one chunk's distance matrix")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="skip a (method, size) whose one run is predicted to take longer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if min(args.sizes) < 2 or args.k < 1 or args.repeats < 1 or args.chunk_mb <= 0:
        parser.error("--sizes must be at least 2 points, --k and --repeats at least 1, --chunk-mb positive")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a device (cpu, cuda, cuda:1, ...)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False (CPU-only torch, or no GPU)")
    info = machine(device)
    torch_name = info.get("gpu", str(device))

    def torch_fn(p: torch.Tensor) -> torch.Tensor:
        return knn_mean_squared_distance_torch(p, args.k, args.chunk_mb)

    def scipy_fn(p: torch.Tensor) -> torch.Tensor:
        return run_scipy(p, args.k)

    methods = {"scipy": (scipy_fn, False), "torch": (torch_fn, True)}
    last: dict[str, tuple[int, float] | None] = {name: None for name in methods}
    rows = []
    for num in sorted(args.sizes):
        points = torch.as_tensor(aerial_points(num, args.seed)).to(device)
        row: dict = {"size": num}
        results = {}
        for name, (fn, warmup) in methods.items():
            estimate = predicted(last[name], num, name)
            if estimate is not None and estimate > args.max_seconds:
                row[f"{name}_s"], row[f"{name}_est_s"] = None, estimate
                last[name] = (num, estimate)
                continue
            seconds, results[name] = time_method(fn, points, args.repeats, warmup)
            row[f"{name}_s"], row[f"{name}_est_s"] = seconds, None
            last[name] = (num, seconds)
        row["max_rel_diff"] = max_rel_diff(results["torch"], results["scipy"]) if len(results) == 2 else None
        rows.append(row)
        del points, results
        if device.type == "cuda":
            torch.cuda.empty_cache()

    header = f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads)"
    if "gpu" in info:
        header += f", GPU {info['gpu']}"
    print(f"{header}; k={args.k}, median of {args.repeats}, chunk {args.chunk_mb:g} MB\n")
    print(f"| size | scipy host (s) | torch {torch_name} (s) | max rel. diff |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        diff = f"{row['max_rel_diff']:.1e}" if row["max_rel_diff"] is not None else "–"
        print(f"| {row['size']:,} | {_cell(row['scipy_s'], row['scipy_est_s'])} "
              f"| {_cell(row['torch_s'], row['torch_est_s'])} | {diff} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "k": args.k, "repeats": args.repeats,
                                         "chunk_mb": args.chunk_mb, "results": rows}, indent=1))
    bad = [row["size"] for row in rows if row["max_rel_diff"] is not None and row["max_rel_diff"] >= MAX_REL_DIFF]
    if bad:
        print(f"\nmethods disagree (max rel. diff >= {MAX_REL_DIFF:g}) at sizes {bad}")
        sys.exit(1)


if __name__ == "__main__":
    main()
