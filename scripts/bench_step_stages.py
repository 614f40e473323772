#!/usr/bin/env python3
"""Where a one-block training step goes: each stage's wall time per step at 1 and 2 (or more) threads.

    python scripts/bench_step_stages.py --data DATA [--config brighton_beach.yaml] [--threads 1 2] [--steps 60]
        [--warmup 20] [--rounds 2] [KEY=VALUE ...]

Each setting trains one block as ``mgs train`` does, in a fresh process with ``threads=T``, and times the steps after
the warm-up with wrappers put around the stages (nothing in the package changes): each stage's time is its own,
the stages it calls taken out. The stages:

- decoder and anchor ops (forward): ``render_view`` less the kernels below (the decoder's MLPs, the anchors'
  view-dependent filtering and offsets, in PyTorch);
- children (C++): the anchors' children (positions, covariances) and their backward;
- projection (C++), forward and backward; tile lists (count, sort, fill; C++);
- compositing (C++), forward and backward; SSIM (C++ or PyTorch), forward and backward; other losses (L1, scale);
- backward of PyTorch's ops: the autograd pass less the kernels' backward above (the decoder, the anchors, the
  losses' other terms);
- optimizer (Adam, the block's and the decoder's); growth statistics (the strategy's hooks); teacher;
- images: waiting for the next prefetched photo; the rest of the step (the trainer's own bookkeeping).

The speedup column is 1 thread's time over the other's; the serial fraction is Amdahl's law fitted to the whole
step's two times (s = (T / S − 1) / (T − 1) for speedup S on T threads). Rounds alternate the settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package, before an installed one

STAGES = ["decoder and anchor ops (forward)", "children (C++)", "projection forward (C++)",
          "projection backward (C++)", "tile lists: count, sort, fill (C++)", "compositing forward (C++)",
          "compositing backward (C++)", "SSIM forward", "SSIM backward", "other losses", "backward of PyTorch's ops",
          "optimizer (Adam)", "growth statistics", "teacher", "images (waiting)", "rest of the step"]


class Timers:
    """Wall time per label, each label's own: the time of the labels it calls is taken out."""

    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)
        self.stack: list[float] = []
        self.on = False

    def wrap(self, label: str, fn):
        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            self.stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                inner = self.stack.pop()
                elapsed = time.perf_counter() - start
                self.total[label] += elapsed - inner
                if self.stack:
                    self.stack[-1] += elapsed
        return timed


def instrument(timers: Timers, trainer) -> None:
    """Put the timers around the stages (module notes) of this process's training."""
    import torch

    from momentum_gs import losses
    from momentum_gs.data import images
    from momentum_gs.render import builtin
    from momentum_gs.render.kernels import ops
    from momentum_gs.train import block_step, teacher

    def both(cls, forward: str, backward: str) -> None:
        cls.forward = staticmethod(timers.wrap(forward, cls.forward))
        cls.backward = staticmethod(timers.wrap(backward, cls.backward))

    both(ops.FusedProjection, "projection forward (C++)", "projection backward (C++)")
    both(ops.FusedChildren, "children (C++)", "children (C++)")
    for cls in (ops.FusedGaussianTiles, ops.FusedCompositeTiles):
        both(cls, "compositing forward (C++)", "compositing backward (C++)")
    for cls in (ops.FusedMeanSSIM, losses._MeanSSIM):
        both(cls, "SSIM forward", "SSIM backward")
    builtin.intersect = timers.wrap("tile lists: count, sort, fill (C++)", builtin.intersect)
    block_step.render_view = timers.wrap("decoder and anchor ops (forward)", block_step.render_view)
    block_step.reconstruction_loss = timers.wrap("other losses", block_step.reconstruction_loss)
    torch.Tensor.backward = timers.wrap("backward of PyTorch's ops", torch.Tensor.backward)
    for hook in ("collect_statistics", "grow_and_prune"):
        setattr(block_step.BlockStep, hook, timers.wrap("growth statistics", getattr(block_step.BlockStep, hook)))
    teacher.MomentumTeacher.update = timers.wrap("teacher", teacher.MomentumTeacher.update)
    teacher.MomentumTeacher.consistency = timers.wrap("teacher", teacher.MomentumTeacher.consistency)
    for block in trainer.blocks:
        for opt in (block.optimizer, block.decoder_optimizer):
            if opt is not None:
                opt.step = timers.wrap("optimizer (Adam)", opt.step)
    if trainer.decoder_opt is not None:
        trainer.decoder_opt.step = timers.wrap("optimizer (Adam)", trainer.decoder_opt.step)
    iterate = images.ImageLoader.iterate

    def timed_iterate(self, *args, **kwargs):
        stream = iterate(self, *args, **kwargs)

        class Timed:
            def __iter__(self):
                return self

            def __next__(self):
                return timers.wrap("images (waiting)", stream.__next__)()

            def close(self):
                stream.close()
        return Timed()

    trainer.loader.iterate = timed_iterate.__get__(trainer.loader)
    trainer.train_step = timers.wrap("rest of the step", trainer.train_step)


def child(args: argparse.Namespace) -> None:
    """One setting, in this process: print {"steps_s", "stages": {label: seconds per step}, "threads"}."""
    from momentum_gs.config import threads_in_use
    from momentum_gs.data.scene import load_scene
    from momentum_gs.train import distributed as D
    from momentum_gs.train.run import prepare_config
    from momentum_gs.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        overrides = [f"optim.steps={args.warmup + args.steps + 10}", "log.tensorboard=false", "device=cpu",
                     f"threads={args.child}", *args.overrides]
        cfg = prepare_config(args.config, args.data, out, overrides, False)
        world, device = D.init_world(cfg.device)
        trainer = Trainer(cfg, load_scene(cfg.data), Path(out), device, world)
        timers = Timers()
        instrument(timers, trainer)
        trainer.train(until=args.warmup, quiet=True)
        timers.on = True
        start = time.perf_counter()
        trainer.train(until=args.warmup + args.steps, quiet=True)
        wall = time.perf_counter() - start
    stages = {label: timers.total.get(label, 0.0) / args.steps for label in STAGES}
    print(json.dumps({"steps_s": args.steps / wall, "stages": stages, "threads": threads_in_use()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--threads", nargs="+", default=["1", "2"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return
    from bench_threads import machine_line  # a script beside this one

    print(f"{machine_line()}; Python {platform.python_version()}", flush=True)
    runs: dict[str, list[dict]] = {t: [] for t in args.threads}
    for round_ in range(args.rounds):
        for threads in args.threads:
            command = [sys.executable, __file__, "--data", args.data, "--steps", str(args.steps), "--warmup",
                       str(args.warmup), "--child", threads, *(["--config", args.config] if args.config else []),
                       *args.overrides]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"threads={threads} failed:\n{done.stderr.strip()[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[threads].append(result)
            print(f"round {round_ + 1}, threads={threads}: {result['steps_s']:.2f} steps/s ({result['threads']})",
                  flush=True)
    median = {t: {label: statistics.median(r["stages"][label] for r in rows) for label in STAGES}
              for t, rows in runs.items()}
    first, *others = args.threads
    header = "| stage | " + " | ".join(f"ms/step, {t} thread{'s' if t != '1' else ''}" for t in args.threads)
    print("\n" + header + " | " + " | ".join(f"speedup at {t}" for t in others) + " |")
    print("|---" * (1 + len(args.threads) + len(others)) + "|")
    totals = {t: sum(median[t].values()) for t in args.threads}
    for label in [*STAGES, "whole step"]:
        values = {t: (totals[t] if label == "whole step" else median[t][label]) for t in args.threads}
        ups = [f"{values[first] / values[t]:.2f}" if values[t] > 0 else "–" for t in others]
        print(f"| {label} | " + " | ".join(f"{1000 * values[t]:.1f}" for t in args.threads) + " | "
              + " | ".join(ups) + " |")
    for t in others:
        speedup, count = totals[first] / totals[t], int(t) / int(first)
        serial = (count / speedup - 1) / (count - 1) if count > 1 else float("nan")
        print(f"\n{t} threads: whole step {speedup:.2f}× of {first}; Amdahl's serial fraction {100 * serial:.0f} %; "
              f"steps/s {statistics.median(r['steps_s'] for r in runs[t]):.2f} against "
              f"{statistics.median(r['steps_s'] for r in runs[first]):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": median}, indent=1) + "\n")


if __name__ == "__main__":
    main()
