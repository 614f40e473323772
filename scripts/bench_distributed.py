#!/usr/bin/env python3
"""Training throughput with 1, 2, … processes, and what they exchange per step.

Partitions a scene into ``--blocks`` blocks, then trains it with ``--active`` blocks per step on G
processes for each G in ``--procs`` (G = 1: plain ``mgs train``; G > 1: torchrun, gloo on CPU, NCCL on
GPUs). Each process gets cores / G threads on a CPU, so the rows share the same machine fairly. Prints one
markdown table: global steps/s, block-steps/s, the bytes of the one all-reduce each step (the decoder
gradients, their presence flags and the step's metrics) and what a ring all-reduce sends per process
(2·(G−1)/G times that).

    python scripts/bench_distributed.py --out runs/bench_dist --procs 1 2 [--config NAME] [--rounds R]
        [--device cuda] [key=value ...]

``--rounds R`` repeats the rows R times, interleaved, and gives each round's steps/s and the median.

Without a scene at --data, the synthetic ``demo`` city is generated there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run(procs: int, args, out: Path) -> dict:
    """Train once with ``procs`` processes; returns the run's summary.json."""
    if out.exists():
        shutil.rmtree(out)
    mgs = ["-m", "momentum_gs.cli", "train", "--config", args.config,
           "--data", str(args.data), "--out", str(out), f"blocks.partition={args.out / 'partition.npz'}",
           f"blocks.active={args.active}", f"optim.steps={args.steps}", "log.tensorboard=false",
           "weighting.enabled=false", f"device={args.device}", *args.overrides]
    env = dict(os.environ)
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // procs))
        env["CUDA_VISIBLE_DEVICES"] = ""
    if procs == 1:
        command = [sys.executable, *mgs]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                   *mgs]
    subprocess.run(command, check=True, env=env, cwd=REPO)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "synthetic_demo")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_distributed")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--active", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100, help="steps per block")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="demo", help="a config file or the name of a shipped one")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for every run")
    args = parser.parse_args()
    from momentum_gs.config import load_config
    from momentum_gs.data.synthetic import make_synthetic_scene
    from momentum_gs.partition.run import partition_main

    if not args.data.exists():
        make_synthetic_scene(args.data, "demo", seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    partition_main(load_config(args.config, [f"data.path={args.data}", *args.overrides]).data, args.out / "partition.npz",
                   num_blocks=args.blocks)
    speeds = {procs: [] for procs in args.procs}
    buffers = {}
    for _ in range(args.rounds):
        for procs in args.procs:
            summary = run(procs, args, args.out / f"g{procs}")
            speeds[procs].append(summary["steps_per_second"])
            buffers[procs] = summary["allreduce_bytes_per_step"]
    rows = []
    for procs in args.procs:
        sps, buffer = statistics.median(speeds[procs]), buffers[procs]
        rows.append((procs, sps, sps * args.active, buffer, 2 * (procs - 1) / procs * buffer))
    print("steps/s of each round: " + "; ".join(f"{p}: " + ", ".join(f"{v:.2f}" for v in speeds[p])
                                                for p in args.procs))
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {os.cpu_count()} cores"
    print(f"\n{args.blocks} blocks, {args.active} active, {args.steps} steps per block; {device}\n")
    print("| processes | global steps/s | block-steps/s | all-reduce buffer (bytes/step) | sent per process (bytes/step) |")
    print("|---|---|---|---|---|")
    for procs, sps, bsps, buffer, sent in rows:
        print(f"| {procs} | {sps:.2f} | {bsps:.2f} | {buffer if procs > 1 else '— (no exchange)'} | {sent:.0f} |")


if __name__ == "__main__":
    main()
