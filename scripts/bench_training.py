"""Training steps per second of this checkout against another one, interleaved run by run.

    python scripts/bench_training.py --data DATA --before ../old-checkout [--rounds 5] [--steps 300] [KEY=VALUE ...]

Each run trains one block the way ``mgs train`` does, with ``threads=1``, ``optim.steps=STEPS`` and the given
overrides, in a fresh process whose ``momentum_gs`` is the checkout's. It times the training loop after the
first two steps, which fill the image cache and load the C++ kernels: wall clock and this thread's CPU time,
which leaves out time the process waited for a core. Rounds alternate before, after, before, ... and the table
gives each round's ratio and the medians. Any checkout whose ``Trainer`` and ``prepare_config`` have today's
signatures works (the kernels' first build happens in the first run of a machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Run inside the checkout's folder, so that ``import momentum_gs`` is that checkout's.
DRIVER = """
import json, shutil, sys, time
from pathlib import Path
from momentum_gs.config import use_threads
from momentum_gs.data.scene import load_scene
from momentum_gs.train import distributed as D
from momentum_gs.train.run import prepare_config
from momentum_gs.train.trainer import Trainer
data, out, steps, overrides = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
shutil.rmtree(out, ignore_errors=True)
cfg = prepare_config(None, data, str(out), [f"optim.steps={steps}", "log.tensorboard=false", "threads=1"] + overrides,
                     False)
world, device = D.init_world(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s)
use_threads(cfg.threads, device)
trainer = Trainer(cfg, load_scene(cfg.data), out, device, world)
trainer.train(until=2)
wall, cpu = time.perf_counter(), time.thread_time()
trainer.train(until=steps)
wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
print(json.dumps({"wall": (steps - 2) / wall, "cpu": (steps - 2) / cpu}))
"""


def run(checkout: Path, data: str, steps: int, overrides: list[str], out: Path) -> dict:
    """{"wall": steps/s, "cpu": steps/s} of one training run with ``checkout``'s package."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    done = subprocess.run([sys.executable, "-c", DRIVER, data, str(out), str(steps), *overrides], cwd=checkout,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"a run in {checkout} failed:\n{done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="scene folder (mgs synth output or a COLMAP capture)")
    parser.add_argument("--before", required=True, type=Path, help="the other checkout's folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("overrides", nargs="*", help="config overrides for both, e.g. data.max_width=320")
    args = parser.parse_args()
    after = Path(__file__).resolve().parent.parent
    before = args.before.resolve()
    if not (before / "momentum_gs").is_dir():
        raise SystemExit(f"--before {before} is not a momentum_gs checkout (no momentum_gs folder in it)")
    sys.path.insert(0, str(after))
    from momentum_gs.render.kernels.build import describe_cpu, march

    print(f"cpu: {describe_cpu()}; the kernels built with -march={march()} (MOMENTUM_GS_MARCH)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            pair = [run(tree, args.data, args.steps, args.overrides, Path(tmp) / "run") for tree in (before, after)]
            rows.append(pair)
            print(f"round {i + 1}: before {pair[0]['wall']:.2f}, after {pair[1]['wall']:.2f} steps/s", flush=True)
    print("\n| round | before steps/s (CPU) | after steps/s (CPU) | after / before (CPU) |\n|---|---:|---:|---:|")
    for i, (b, a) in enumerate(rows, start=1):
        print(f"| {i} | {b['wall']:.2f} ({b['cpu']:.2f}) | {a['wall']:.2f} ({a['cpu']:.2f}) | "
              f"{a['wall'] / b['wall']:.2f} ({a['cpu'] / b['cpu']:.2f}) |")
    med = {k: statistics.median(a[k] / b[k] for b, a in rows) for k in ("wall", "cpu")}
    print(f"\nmedian ratio: {med['wall']:.2f} (wall), {med['cpu']:.2f} (CPU)")


if __name__ == "__main__":
    main()
