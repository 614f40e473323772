"""Views per second on one block: one process of one thread, one process of every core's threads, V processes of
one thread each on their own views (``distributed.view_processes``), and the machine's ceiling.

    python scripts/bench_views.py --data DATA [--config brighton_beach.yaml] [--views 2] [--rounds 3]
        [--steps 60] [--warmup 20] [--idle 120] [--view-threads 1] [KEY=VALUE ...]

Each run trains the block as ``mgs train`` does, in fresh processes of this checkout, and times the training views
after ``--warmup`` views (which fill the image cache and load the kernels); the views a run sees are the same
number in every setting (``--steps`` views, so V processes take ``--steps`` / V steps). The settings:

- ``threads=1``: one process, one thread (the reference's loop on one core);
- ``threads=0``: one process, the physical cores' threads (the kernels and, on large views, PyTorch's ops);
- ``views=V``: V processes of one thread, joined by gloo, one view each per step (:mod:`momentum_gs.train.views`),
  a step's views paired by their cost (``distributed.balance_views``);
- ``views-plain``: the same with a plain random walk of the views (``distributed.balance_views=false``);
- ``views-dealt``: V processes of ``--per-process`` views each a step (``distributed.views_per_process``), the step's
  views from the plain random walk, dealt to the processes by their cost (``distributed.deal_by``'s default: each
  view's tile pairs at its last render);
- ``views-sfm``: the same, dealt by the SfM points each view sees (``distributed.deal_by=sfm``);
- ``ceiling``: V independent one-thread runs at once, their views/s added: what this machine gives V one-thread
  processes that never talk (memory bandwidth, caches, clocks shared). Their timed steps start together (each waits
  for the others' warm-up), and each goes on training after its timed steps until every run has timed its own, so
  that no run is timed while it has the machine to itself.

``--view-threads T`` gives each view process T threads instead of one: V processes of T threads, the split a machine
of many cores can choose between (``mgs`` gives each of V processes the physical cores ÷ V).

The ratios are against the median of ``threads=1``. For the settings of V processes, each process also times its
collectives (``torch.distributed``'s all-reduces and broadcasts): their share of its timed wall clock is what the
transfers cost plus the wait for a slower process. With ``--idle S`` each run first waits up to S seconds for the
machine to be idle. ``--profile`` runs the timed steps under cProfile (slower: compare its runs with each other) and
adds each process's C++ kernels' milliseconds a view, of the last round. ``--apart`` puts a barrier before each
all-reduce and says, each round, how much of the collectives' share was the wait in it. Rounds go through the
settings in order; the table gives every round and the medians.

``--time 3m --seeds 0 1`` measures quality for the time instead: each setting but the ceiling trains with
``mgs train --time`` (as a user would, its plan included), then ``mgs eval`` scores the held-out views at the
size asked (a plan that trained on smaller images is scored on the same pixels as the others); the table
gives the held-out PSNR of each seed, their mean, the steps and the views trained.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_threads import ROOT, machine_line, wait_for_idle  # noqa: E402  (a script beside this one)

DRIVER = """
import cProfile, json, os, pstats, shutil, sys, time
from pathlib import Path
import torch.distributed as dist
from momentum_gs.data.scene import load_scene
from momentum_gs.train import distributed as D
from momentum_gs.train.run import prepare_config
from momentum_gs.train.trainer import Trainer
from momentum_gs.train.views import per_view_rule

config, data, out, warmup, steps, views, overrides = (sys.argv[1] or None), sys.argv[2], Path(sys.argv[3]), \\
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7:]
spent = [0.0]  # seconds in the collectives: their transfer, and the wait for the other processes

def timed(collective):
    def call(*args, **kwargs):
        started = time.perf_counter()
        try:
            return collective(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started
    return call

for name in ("all_reduce", "broadcast", "broadcast_object_list", "all_gather", "all_gather_object", "barrier"):
    setattr(dist, name, timed(getattr(dist, name)))
waited = [0.0]  # of those, in the barrier before each all-reduce (--apart): the wait for the slower process
if os.environ.get("BENCH_APART"):
    barrier, reduce = dist.barrier, dist.all_reduce

    def apart(*args, **kwargs):
        started = time.perf_counter()
        barrier()
        waited[0] += time.perf_counter() - started
        return reduce(*args, **kwargs)
    dist.all_reduce = apart
shutil.rmtree(out, ignore_errors=True)
cfg = prepare_config(config, data, str(out), ["log.tensorboard=false"] + overrides, False)
per_view_rule(cfg, views)
cfg.optim.steps = warmup + 2 * steps  # room for the ceiling's steps past its timed ones
sync = os.environ.get("BENCH_SYNC")  # the ceiling's runs: a folder where each says it is ready, then done

def everyone(word):
    Path(sync, word + os.environ["BENCH_RANK"]).touch()
    return lambda: all(Path(sync, f"{word}{r}").exists() for r in range(int(os.environ["BENCH_COPIES"])))

world, device = D.init_world(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s)
trainer = Trainer(cfg, load_scene(cfg.data), out, device, world)
trainer.train(until=warmup)
if sync:
    ready, since = everyone("ready"), time.monotonic()
    while not ready():  # a twin that failed never comes: this one ends too, and the bench says which failed
        if time.monotonic() - since > 600:
            sys.exit("the other ceiling runs did not finish their warm-up within 600 s of this one")
        time.sleep(0.005)
profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
wall, spent[0], waited[0] = time.perf_counter(), 0.0, 0.0
if profile:
    profile.enable()
trainer.train(until=warmup + steps)
wall = time.perf_counter() - wall
kernels = {}  # the C++ kernels' seconds a view of this process
if profile:
    profile.disable()
    mine = steps * views // world.size  # the views this process rendered
    for (_, _, name), row in pstats.Stats(profile).stats.items():
        if "momentum_gs." in name:
            kernels[name.split("momentum_gs.")[-1].rstrip(">}")] = row[2] / mine
if sync:  # go on training until every run has timed its steps: none is timed on a machine it has to itself
    done, step = everyone("done"), warmup + steps
    while not done() and step < cfg.optim.steps:
        step += 1
        trainer.train(until=step, quiet=True)
print(json.dumps({"views_s": steps * views / wall, "anchors": trainer.num_anchors(), "collectives": spent[0] / wall,
                  "waiting": waited[0] / wall,
                  "kernels": kernels}))
D.close_world(world)
D.leave(0)  # not through the teardown, which a gloo worker still freeing tensors can abort
"""


VIEWS = ("views", "views-plain", "views-dealt", "views-sfm")  # the settings of V processes on one block


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args: argparse.Namespace, setting: str, tmp: Path) -> tuple[float, list[float], list[dict]]:
    """Views/s of one run of ``setting`` (module notes); for V processes on one block the share of each one's
    time spent in the collectives (their transfers and the waits for the slower process); with ``--profile``, each
    process's C++ kernels' seconds a view."""
    per = args.per_process if setting in ("views-dealt", "views-sfm") else 1
    views = args.views * per if setting in VIEWS else 1
    copies = args.views if setting in (*VIEWS, "ceiling") else 1
    extra = [f"distributed.views_per_process={per}"] if per > 1 else []
    extra += ["distributed.deal_by=sfm"] if setting == "views-sfm" else []
    threads = "0" if setting == "threads=0" else str(args.view_threads) if setting in VIEWS else "1"
    port, children, sync = _port(), [], tmp / "sync"
    shutil.rmtree(sync, ignore_errors=True)
    sync.mkdir(parents=True)
    for rank in range(copies):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("OMP_NUM_THREADS", None)
        if setting == "ceiling":
            env.update(BENCH_SYNC=str(sync), BENCH_RANK=str(rank), BENCH_COPIES=str(copies))
        if args.profile:
            env.update(BENCH_PROFILE="1")
        if args.apart:
            env.update(BENCH_APART="1")
        if setting in VIEWS:
            env.update(RANK=str(rank), WORLD_SIZE=str(copies), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(copies),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        command = [sys.executable, "-c", DRIVER, args.config or "", args.data, str(tmp / f"run{rank}"),
                   str(args.warmup // views), str(args.steps // views), str(views), *args.overrides,
                   f"threads={threads}", f"distributed.balance_views={setting == 'views'}", *extra]
        children.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True))
    results = []
    for child in children:
        out, err = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"a run of {setting} failed:\n{err.strip()[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    kernels = [r["kernels"] for r in results]
    if setting in VIEWS:
        if args.apart:
            waiting = " / ".join(f"{r['waiting']:.0%}" for r in results)
            print(f"  waiting for the slower process: {waiting} of each process's time; the rest of its collectives "
                  "is the transfers", flush=True)
        return results[0]["views_s"], [r["collectives"] for r in results], kernels
    return sum(r["views_s"] for r in results), [], kernels


def quality(args: argparse.Namespace, setting: str, seed: int, out: Path) -> dict:
    """Held-out PSNR, steps and views of one ``mgs train --time`` run of ``setting`` (module notes)."""
    dealt = [f"distributed.view_processes={args.views}", "distributed.balance_views=false",
             f"distributed.views_per_process={args.per_process}"]
    extra = {"threads=1": ["threads=1"], "threads=0": ["threads=0"],
             "views": [f"distributed.view_processes={args.views}"],
             "views-plain": [f"distributed.view_processes={args.views}", "distributed.balance_views=false"],
             "views-dealt": dealt, "views-sfm": dealt + ["distributed.deal_by=sfm"]}[setting]
    config = ["--config", args.config] if args.config else []
    train = [sys.executable, "-m", "momentum_gs.cli", "train", *config, "--data", args.data, "--out", str(out),
             "--time", args.time, f"seed={seed}", "log.tensorboard=false", *args.overrides, *extra]

    def mgs(command: list[str]) -> None:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[3:5])} of {setting} failed:\n{done.stderr.strip()[-2000:]}")

    mgs(train)
    trained_width = at_asked_size(out, args)
    mgs([sys.executable, "-m", "momentum_gs.cli", "eval", str(out), "--no-images"])
    summary = json.loads((out / "summary.json").read_text())
    psnr = json.loads((out / "eval" / "results.json").read_text())["psnr"]
    return {"psnr": psnr, "steps": summary["steps"], "views": summary["steps"] * summary.get("views_per_step", 1),
            "seconds": summary["seconds"], "anchors": summary["num_anchors"], "trained_width": trained_width}


def at_asked_size(out: Path, args: argparse.Namespace) -> int:
    """Point the run's config back at the image size the overrides ask for, so that every setting is scored on the
    same pixels: a ``--time`` plan may train on smaller images, and a PSNR on smaller images is not comparable.
    Returns the width cap the run trained under (its ``data.max_width``)."""
    from momentum_gs.config import find_config, load_config, save_config

    cfg = load_config(out / "config.yaml")
    trained = cfg.data.max_width
    asked = load_config(find_config(args.config) if args.config else None,
                        [o for o in args.overrides if o.startswith("data.")])
    cfg.data.max_width = asked.data.max_width
    save_config(cfg, out / "config.yaml")
    return trained


def main_quality(args: argparse.Namespace) -> None:
    """The ``--time`` table (module notes)."""
    settings = [s for s in args.settings if s != "ceiling"]
    rows: dict[str, list[dict]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for setting in settings:
                if args.idle:
                    wait_for_idle(args.idle)
                rows[setting].append(quality(args, setting, seed, Path(tmp) / f"{setting}_{seed}"))
                row = rows[setting][-1]
                print(f"seed {seed}, {setting}: PSNR {row['psnr']:.2f} dB at the asked size (trained under "
                      f"data.max_width={row['trained_width']}), {row['steps']} steps, {row['views']} views "
                      f"in {row['seconds']:.0f} s, {row['anchors']} anchors", flush=True)
    print(f"\n| setting (--time {args.time}) | held-out PSNR, each seed | mean | steps | views trained | anchors |")
    print("|---|---|---:|---|---|---|")
    for setting, runs in rows.items():
        psnrs = ", ".join(f"{r['psnr']:.2f}" for r in runs)
        print(f"| {setting} | {psnrs} | "
              f"{statistics.mean(r['psnr'] for r in runs):.2f} | {', '.join(str(r['steps']) for r in runs)} | "
              f"{', '.join(str(r['views']) for r in runs)} | {', '.join(str(r['anchors']) for r in runs)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="scene folder (mgs synth output or a COLMAP capture)")
    parser.add_argument("--config", help="a config file or a shipped config's name")
    parser.add_argument("--views", type=int, default=2, help="V: processes on the block, views a step")
    parser.add_argument("--settings", nargs="+", default=["threads=1", "threads=0", "views", "ceiling"])
    parser.add_argument("--per-process", type=int, default=2, help="views a process renders a step in views-dealt")
    parser.add_argument("--view-threads", type=int, default=1,
                        help="threads of each view process (views settings): on many cores, V processes of T threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="views timed (a multiple of --views)")
    parser.add_argument("--warmup", type=int, default=20, help="views before the timing")
    parser.add_argument("--idle", type=float, default=0, help="wait up to this many seconds for an idle machine")
    parser.add_argument("--time", help="measure held-out PSNR of `mgs train --time TIME` runs instead (e.g. 3m)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the --time runs")
    parser.add_argument("--profile", action="store_true",
                        help="profile the timed steps (cProfile): each process's C++ kernels' milliseconds a view")
    parser.add_argument("--apart", action="store_true",
                        help="a barrier before each all-reduce: the wait for the slower process timed apart")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.downsample=2")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.time:
        main_quality(args)
        return
    results: dict[str, list[float]] = {setting: [] for setting in args.settings}
    waits: dict[str, list[list[float]]] = {setting: [] for setting in args.settings}
    kernels: dict[str, list[dict]] = {}  # each process's kernels' seconds a view, in the last round
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for setting in args.settings:
                before = wait_for_idle(args.idle) if args.idle else None
                rate, shares, kernels[setting] = run(args, setting, Path(tmp))
                results[setting].append(rate)
                waits[setting].append(shares)
                idle = "" if before is None else f", {before:.0%} busy before"
                said = f", in collectives {' / '.join(f'{s:.0%}' for s in shares)}" if shares else ""
                print(f"round {i + 1}, {setting}: {rate:.2f} views/s{said}{idle}", flush=True)
    base = statistics.median(results["threads=1"]) if results.get("threads=1") else None
    threads = f", {args.view_threads} threads each" if args.view_threads != 1 else ""
    print(f"\n| setting (V = {args.views}{threads}) | views/s, each round | median | against threads=1 "
          "| in collectives, each process (median) |")
    print("|---|---|---:|---:|---|")
    for setting, rates in results.items():
        median = statistics.median(rates)
        ratio = f"{median / base:.2f}" if base else "-"
        shares = [statistics.median(s) for s in zip(*waits[setting])] if waits[setting][0] else []
        share = " / ".join(f"{s:.0%}" for s in shares) or "-"
        print(f"| {setting} | {', '.join(f'{r:.2f}' for r in rates)} | {median:.2f} | {ratio} | {share} |")
    if args.profile:
        print_kernels(kernels)


def print_kernels(kernels: dict[str, list[dict]]) -> None:
    """The ``--profile`` table: the C++ kernels' milliseconds a view, each process of each setting (last round)."""
    names = sorted({n for runs in kernels.values() for r in runs for n in r},
                   key=lambda n: -max(r.get(n, 0) for runs in kernels.values() for r in runs))[:6]
    print(f"\n| setting, process (last round) | {' | '.join(names)} |")
    print("|---|" + "---:|" * len(names))
    for setting, runs in kernels.items():
        for rank, r in enumerate(runs):
            print(f"| {setting}, {rank} | " + " | ".join(f"{1000 * r.get(n, 0):.1f} ms" for n in names) + " |")


if __name__ == "__main__":
    main()
