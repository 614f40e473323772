"""How well a view's cost can be told before it is rendered: what dealing a step's views to the processes by it
would leave them waiting.

    python scripts/bench_view_costs.py --data DATA [--config brighton_beach.yaml] [--warmup 100] [--steps 400]
        [--deals 4x2 [8x4 ...]] [--seed 0] [KEY=VALUE ...]

One process of one thread trains one view a step as ``mgs train`` does; after ``--warmup`` steps it times each of
the next ``--steps`` steps and notes, for its view:

- ``sfm``: the SfM points in front of the camera and inside its image (:func:`~momentum_gs.train.views.view_costs`,
  what ``distributed.views_per_process`` deals by);
- ``anchors``: the anchors in its frustum at that step, before the render;
- ``gaussians``: the Gaussians the render drew;
- ``pairs``: the Gaussian × tile pairs of the render's tile lists;
- ``last pairs`` and ``last time``: the same view's pairs and time at its render before (warm-up steps included).

``gaussians`` and ``pairs`` are known only once the view is rendered; ``anchors`` before, from the model every
process holds; ``last pairs`` from a render every process could have been told of (the same count for every run of a
seed and thread count); ``last time`` too, but it is not the same from run to run.
For each of ``--deals`` (V x P: V views a step to P processes) the timed views are then cut into groups of V
consecutive views, as steps of P processes of V / P views each would take them, each group dealt by each cost with
:func:`~momentum_gs.train.scheduler.deal_by_cost`. The table gives each cost's correlation with a view's time and
the mean wait a step: the slowest share's summed time less the mean share's (for two processes, half their
|difference|), also as a share of the mean share's time; against dealing at random and by the measured times
themselves (the best a deal can do). The times are one thread's, the views trained one a step: the deals are
what the same views would cost, not a run of P processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.model.neural import visible_anchors
from momentum_gs.train import distributed as D
from momentum_gs.train.run import prepare_config
from momentum_gs.train.scheduler import deal_by_cost
from momentum_gs.train.trainer import Trainer
from momentum_gs.train.views import view_costs

from bench_threads import machine_line  # a script beside this one

COSTS = ("random", "sfm", "anchors", "gaussians", "pairs", "last pairs", "last time", "time")


def measure(args: argparse.Namespace, out: Path) -> dict[str, np.ndarray]:
    """Each timed step's view, time (s) and costs (module notes)."""
    torch.set_num_threads(1)
    cfg = prepare_config(args.config, args.data, str(out),
                         ["log.tensorboard=false", "threads=1", f"seed={args.seed}"] + args.overrides, False)
    world, device = D.init_world(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s)
    scene = load_scene(cfg.data)
    trainer = Trainer(cfg, scene, out, device, world)
    block = trainer.blocks[0]
    sfm = dict(zip(block.cameras, view_costs(scene, block.cameras)))
    rows: list[list[float]] = []
    drawn, last = [], {}  # last: view -> (pairs, time) at its render before
    step, block_step = trainer.train_step, trainer.block_step_on

    def timed_step(views):
        view, camera, timed = views[0][1], scene.train[views[0][1]], trainer.step >= args.warmup
        if timed:  # the block is loaded by the first step
            with torch.no_grad():
                anchors = block.anchors
                seen = visible_anchors(anchors.positions, anchors.scalings[:, :3].exp(), camera.world_to_cam,
                                       camera.K, camera.width, camera.height)
        started = time.perf_counter()
        result = step(views)
        seconds, pairs = time.perf_counter() - started, trainer.view_work[0]  # the render's pairs (WorkDeal's)
        if timed:
            rows.append([view, seconds, sfm[view], float(seen.sum()), drawn[-1], pairs, *last.get(view, ())])
        last[view] = (pairs, seconds)
        return result

    def counted_block_step(*a, **k):
        metrics = block_step(*a, **k)
        drawn.append(float(metrics[0]["num_gaussians"]))
        return metrics

    trainer.train_step, trainer.block_step_on = timed_step, counted_block_step
    try:
        trainer.train(until=args.warmup + args.steps, quiet=True)
    finally:
        trainer.train_step, trainer.block_step_on = step, block_step
    missing = sum(1 for row in rows if len(row) < 8)
    if missing:
        raise SystemExit(f"{missing} timed views had not been rendered in the warm-up: give a longer --warmup")
    table = np.array(rows)
    return dict(zip(("view", "time", "sfm", "anchors", "gaussians", "pairs", "last pairs", "last time"), table.T))


def waiting(times: np.ndarray, costs: np.ndarray, views: int, processes: int) -> float:
    """Mean over the groups of ``views`` consecutive views of the slowest share's time less the mean share's,
    each group dealt by ``costs``; for two processes, half the |difference| of their shares."""
    waits = []
    for start in range(0, len(times) - views + 1, views):
        shares = deal_by_cost(list(costs[start:start + views]), views // processes)
        sums = [sum(times[start + i] for i in share) for share in shares]
        waits.append(max(sums) - float(np.mean(sums)))
    return float(np.mean(waits))


def deal_shape(text: str) -> tuple[int, int]:
    """"4x2" → (4 views a step, 2 processes); an argparse error unless the views deal evenly."""
    try:
        views, processes = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give views x processes, e.g. 4x2") from None
    if processes < 1 or views < processes or views % processes:
        raise argparse.ArgumentTypeError(f"{text}: {views} views do not deal evenly to {processes} processes")
    return views, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="brighton_beach.yaml")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--deals", type=deal_shape, nargs="+", default=[(4, 2)],
                        help="views a step x processes, each dealt on the same timed views (e.g. 4x2 8x4 14x7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config overrides KEY=VALUE")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="view_costs_") as tmp:
        measured = measure(args, Path(tmp) / "run")
    times = measured["time"] * 1000.0
    measured["random"] = np.random.default_rng(args.seed).random(len(times))
    print(f"{len(times)} views timed after {args.warmup}: {times.mean():.1f} ms a view on the mean, "
          f"standard deviation {times.std():.1f} ms")
    heads = " | ".join(f"{v} views to {p} processes" for v, p in args.deals)
    print("\nMean wait a step (slowest share − mean share), and its share of the mean share's time:\n")
    print(f"| dealt by | correlation with a view's time | {heads} |\n|---|---:|" + "---:|" * len(args.deals))
    for name in COSTS:
        costs = times if name == "time" else measured[name]
        correlation = "-" if name == "random" else f"{np.corrcoef(costs, times)[0, 1]:.2f}"
        waits = [(waiting(times, costs, v, p), times.mean() * v / p) for v, p in args.deals]
        print(f"| {name} | {correlation} | " + " | ".join(f"{w:.1f} ms ({w / share:.1%})" for w, share in waits) + " |")

if __name__ == "__main__":
    main()
