"""Training steps per second and CPU seconds per step against the config's ``threads``, run by run interleaved.

    python scripts/bench_threads.py --data DATA [--config brighton_beach.yaml] [--threads 1 0] [--rounds 3]
        [--steps 100] [--warmup 15] [--idle 120] [--beside 1] [KEY=VALUE ...]

Each run trains one block as ``mgs train`` does, with ``threads=T`` and the given overrides, in a fresh process
of this checkout; it times the steps after ``--warmup`` (which fill the image cache and load the kernels):
steps/s of wall time, CPU seconds per step of the whole process (every thread, spinning ones included), and
the cores other processes kept busy meanwhile (from /proc/stat; a run beside other work is not an idle
figure). With ``--idle S`` each run first waits up to S seconds for the machine to be idle (under 8 % busy
for 2 s). ``--beside N`` runs N processes that spin on a core each beside every run: other work holding
cores, as on a shared machine. Rounds go through the thread settings in order; the table gives every round
and the medians.
``--threads 0`` is auto: its row names the count it chose and why (``threads_in_use``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DRIVER = """
import json, os, shutil, sys, time
from pathlib import Path
from momentum_gs.config import threads_in_use
from momentum_gs.data.scene import load_scene
from momentum_gs.train import distributed as D
from momentum_gs.train.run import prepare_config
from momentum_gs.train.trainer import Trainer

def busy():
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

config, data, out, warmup, steps, overrides = (sys.argv[1] or None), sys.argv[2], Path(sys.argv[3]), \\
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:]
shutil.rmtree(out, ignore_errors=True)
cfg = prepare_config(config, data, str(out), [f"optim.steps={warmup + steps}", "log.tensorboard=false"] + overrides,
                     False)
world, device = D.init_world(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s)
trainer = Trainer(cfg, load_scene(cfg.data), out, device, world)
trainer.train(until=warmup)
wall, cpu, others = time.perf_counter(), time.process_time(), busy()
trainer.train(until=warmup + steps)
wall, cpu, others = time.perf_counter() - wall, time.process_time() - cpu, busy() - others
print(json.dumps({"steps_s": steps / wall, "cpu_s": cpu / steps, "others": max(0.0, (others - cpu) / wall),
                  "threads": threads_in_use()}))
"""


def busy_share(seconds: float = 2.0) -> float:
    """The share of the machine's CPU time that was busy over the next ``seconds``."""
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total, idle = read()
    time.sleep(seconds)
    total2, idle2 = read()
    return 1 - (idle2 - idle) / max(1, total2 - total)


def machine_line() -> str:
    """"cpu: <model; ISA>; <the cores this process may use>; kernels -march=<build>; load <1 min>": the first line a
    bench prints, so that its figures name the machine they were measured on (this checkout's package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from momentum_gs.config.device import cores
    from momentum_gs.render.kernels.build import describe_cpu, march

    return f"cpu: {describe_cpu()}; {cores()[1]}; kernels -march={march()}; load {os.getloadavg()[0]:.2f}"


def wait_for_idle(limit: float) -> float:
    """Waits until the machine is under 8 % busy over 2 s, at most ``limit`` seconds; returns the last share."""
    deadline = time.monotonic() + limit
    share = busy_share()
    while share >= 0.08 and time.monotonic() < deadline:
        share = busy_share()
    return share


def run(args: argparse.Namespace, threads: str, out: Path) -> dict:
    """One training run with ``threads=threads`` (``args.beside`` spinning processes beside it): {"steps_s",
    "cpu_s", "others", "threads"}."""
    command = [sys.executable, "-c", DRIVER, args.config or "", args.data, str(out), str(args.warmup),
               str(args.steps), *args.overrides, f"threads={threads}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.beside)]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        raise SystemExit(f"a run with threads={threads} failed:\n{done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="scene folder (mgs synth output or a COLMAP capture)")
    parser.add_argument("--config", help="a config file or a shipped config's name")
    parser.add_argument("--threads", nargs="+", default=["1", "0"], help="thread settings to compare (0: auto)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--idle", type=float, default=0, help="wait up to this many seconds for an idle machine")
    parser.add_argument("--beside", type=int, default=0, help="processes spinning on a core each beside every run")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.downsample=2")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from momentum_gs.config.device import cores
    from momentum_gs.render.kernels.build import describe_cpu, march

    print(f"cpu: {describe_cpu()}; {cores()[1]}; kernels -march={march()}; load {os.getloadavg()[0]:.2f}",
          flush=True)
    results: dict[str, list[dict]] = {threads: [] for threads in args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for threads in args.threads:
                before = wait_for_idle(args.idle) if args.idle else None
                result = run(args, threads, Path(tmp) / "run")
                results[threads].append(result)
                idle = "" if before is None else f", {before:.0%} busy before"
                print(f"round {i + 1}, threads={threads}: {result['steps_s']:.2f} steps/s, {result['cpu_s']:.4f} "
                      f"CPU s/step, other processes {result['others']:.2f} cores{idle}", flush=True)
    print("\n| threads | in use | steps/s, each round | median steps/s | median CPU s/step | others' cores, most |")
    print("|---|---|---|---:|---:|---:|")
    for threads, rows in results.items():
        rates = ", ".join(f"{r['steps_s']:.2f}" for r in rows)
        print(f"| {threads} | {rows[-1]['threads']} | {rates} | {statistics.median(r['steps_s'] for r in rows):.2f} | "
              f"{statistics.median(r['cpu_s'] for r in rows):.4f} | {max(r['others'] for r in rows):.2f} |")


if __name__ == "__main__":
    main()
