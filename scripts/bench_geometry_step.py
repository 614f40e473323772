"""Time of one block step with and without the geometry terms, interleaved in one process, 1 thread.

    python scripts/bench_geometry_step.py DATA PARTITION [--steps 150] [key=value ...]

Two trainers of the shipped demo.yaml on the scene DATA with the partition file PARTITION: "off" (defaults) and
"on" (``geometry.lambda_flatten=0.1 geometry.lambda_depth_normal=0.05``, the depth-normal term from step 0).
They take turns on block 0's views (the order alternating), and the medians after 30 warm-up steps are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from momentum_gs.config import load_config
from momentum_gs.data.scene import load_scene
from momentum_gs.train.trainer import Trainer

GEOMETRY = ["geometry.lambda_flatten=0.1", "geometry.lambda_depth_normal=0.05", "geometry.depth_normal_from=0"]
WARMUP = 30
DEMO = Path(__file__).resolve().parents[1] / "momentum_gs" / "configs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("partition")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trainers, folder = {}, Path(tempfile.mkdtemp())
    for name, extra in (("off", []), ("on", GEOMETRY)):
        cfg = load_config(DEMO, [f"data.path={args.data}", f"blocks.partition={args.partition}",
                                "log.tensorboard=false", "threads=1", *extra, *args.overrides])
        trainers[name] = Trainer(cfg, load_scene(cfg.data), folder / name, torch.device("cpu"))
        trainers[name].placement.activate([0])
    times = {name: [] for name in trainers}
    views = [int(v) for v in trainers["off"].blocks[0].cameras]
    for i in range(args.steps):
        view = views[i % len(views)]
        for name in ("off", "on") if i % 2 else ("on", "off"):
            trainer = trainers[name]
            gt = trainer.loader[view]
            start = time.perf_counter()
            trainer.block_step(trainer.blocks[0], view, gt, 1.0)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values[WARMUP:]) for name, values in times.items()}
    for name, value in median.items():
        print(f"geometry {name}: {value * 1000:.1f} ms per block step (median of {args.steps - WARMUP})")
    print(f"on / off: {median['on'] / median['off']:.3f}")


if __name__ == "__main__":
    main()
