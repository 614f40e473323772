"""Several processes on one block, each on its own view of every step (``distributed.view_processes``).

A scene of one block cannot spread blocks over processes. Instead, V processes hold the same block; at every
step each renders a different training view (:meth:`~momentum_gs.train.scheduler.BlockScheduler.view_plan`'s
``views``), the block's and the decoder's gradients are averaged over the V views with one all-reduce of the
rows the views reached (:func:`average_gradients`), the growth statistics are summed over them before each growth
(:func:`sum_growth_statistics`), and every process takes the same optimizer step: the copies stay identical
without ever being sent. Each process keeps its own PyTorch ops, image loading and tile lists on its own core,
where threads in one process split only the kernels (docs/benchmarks/training.md, "Where a one-block step goes").
With ``distributed.views_per_process`` = k each process renders k views a step, dealt to the processes by their cost
(:func:`~momentum_gs.train.scheduler.deal_by_cost`), its gradients summed and divided by k before the average. The
cost (``distributed.deal_by``) is by default a view's Gaussian × tile pairs at its last render, which every process
is told of with the step's metrics (:class:`WorkDeal`); else the SfM points it sees (:func:`view_costs`).

V views a step are a batch, so the run is planned per view seen (:func:`per_view_rule`), once, when it starts:

- the steps, every schedule point and every interval ÷ V, growth's interval too: the run sees as many views as
  with one view a step, and grows after as many views;
- learning rates × √V and Adam's decays β → β^V: the square-root rule for batched 3DGS of Zhao et al., "On
  Scaling Up 3D Gaussian Splatting Training" (Grendel-GS, ICLR 2025), which makes a step of V independent views'
  gradients move as V steps of one would; for Adam in general, Malladi et al., "On the SDEs and Scaling Rules for
  Adaptive Gradient Algorithms" (NeurIPS 2022);
- the teacher's momentum m → m^V: its average spans as many views as before.

The V a config is planned for is written into it (``distributed.planned_views``), with the processes
(``distributed.view_processes`` resolved): a resumed run reads it as it is, and a run's config.yaml given to a new
run is planned again only for another V.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from momentum_gs.config import Config
from momentum_gs.config.load import LEARNING_RATES, scale_schedules
from momentum_gs.data.scene import SceneData
from momentum_gs.train import distributed as D
from momentum_gs.train.scheduler import deal_by_cost

SPARSE_FROM = 1_000_000  # block gradient values past which only the rows the views reached are all-reduced
COST_POINTS = 200_000  # SfM points at most that view_costs projects (every k-th)


def per_view_rule(cfg: Config, views: int) -> None:
    """Plan ``cfg`` (in place) for ``views`` views a step (module notes), from the views it is planned for now
    (``distributed.planned_views``): a config planned for as many changes nothing, one planned for another count is
    planned again by their ratio."""
    ratio = views / cfg.distributed.planned_views
    cfg.distributed.planned_views = views
    if ratio == 1:
        return
    optim = cfg.optim
    steps = max(1, math.ceil(optim.steps / ratio))
    scale_schedules(cfg, 1.0 / ratio)  # lr_max_steps among them (0 is `steps`, which follows by itself)
    optim.steps = steps
    cfg.strategy.update_interval = max(1, round(cfg.strategy.update_interval / ratio))
    root = math.sqrt(ratio)
    for key in LEARNING_RATES:
        setattr(optim, key, getattr(optim, key) * root)
    optim.adam_beta1, optim.adam_beta2 = optim.adam_beta1 ** ratio, optim.adam_beta2 ** ratio
    cfg.teacher.momentum = cfg.teacher.momentum ** ratio


def views_per_step(cfg: Config, processes: int) -> int:
    """The views a step of ``processes`` processes on one block: ``distributed.views_per_process`` each where there
    are several, one alone."""
    return processes * cfg.distributed.views_per_process if processes > 1 else 1


def view_costs(scene: SceneData, cameras: list[int]) -> list[float]:
    """The work of training each of ``cameras`` (indices into ``scene.train``), for :func:`~momentum_gs.train.
    scheduler.balanced_walk`: the SfM points in front of the camera and inside its image.

    A step of V views waits for its costliest, and a view's cost grows with the anchors it sees, which grow from
    these points (docs/benchmarks/training.md, "Pairing the views by cost"). A function of the scene alone, so that
    the walk stays a pure function of the schedule and the seed.
    """
    points = torch.from_numpy(np.ascontiguousarray(scene.points[::max(1, -(-len(scene.points) // COST_POINTS))]))
    costs = []
    for index in cameras:
        camera = scene.train[index]
        xyz = points.float() @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
        z = xyz[:, 2].clamp_min(1e-9)
        u = camera.K[0, 0] * xyz[:, 0] / z + camera.K[0, 2]
        v = camera.K[1, 1] * xyz[:, 1] / z + camera.K[1, 2]
        seen = (xyz[:, 2] > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        costs.append(float(seen.sum()))
    return costs


def average_gradients(rows: list[torch.Tensor], shared: list[torch.Tensor], world: D.World,
                      riders: torch.Tensor | None = None) -> tuple[int, torch.Tensor]:
    """The gradients of ``rows`` (the block's parameters, one row per anchor) and of ``shared`` (the decoder's) averaged
    over the processes, in place; returns the bytes all-reduced and ``riders`` (values of this process, such as the
    step's metrics, sent in the same all-reduce) summed over the processes.

    A view reaches only the anchors it sees. Past :data:`SPARSE_FROM` values, only the rows some process has a
    gradient in are sent: which ones is summed first (one number per anchor), then those rows and the decoder's
    gradients in one all-reduce; below it, every row at once (a collective costs about what a million values do, on
    the 2-core machine: docs/benchmarks/training.md). A gradient no process has stays None, as with one process
    (Adam then skips it).
    """
    riders = torch.zeros(0) if riders is None else riders
    if sum(p.numel() for p in rows) < SPARSE_FROM:
        reducer = D.StepReducer(rows + shared, world)
        riders = reducer.reduce(world.size, riders)
        return reducer.bytes_per_step, riders
    count = rows[0].shape[0]
    touched = torch.zeros(count, device=rows[0].device)
    for p in rows:
        if p.grad is not None:
            touched += p.grad.reshape(count, -1).ne(0).any(dim=1)
    index = D.all_reduce_sum(touched, world).nonzero().squeeze(1)
    packed = []
    for p in rows:  # stand-ins holding the touched rows' gradients, for the reducer
        holder = torch.empty((len(index), *p.shape[1:]), device=p.device, dtype=p.dtype)
        holder.grad = None if p.grad is None else p.grad.index_select(0, index)
        packed.append(holder)
    reducer = D.StepReducer(packed + shared, world)
    riders = reducer.reduce(world.size, riders)
    for p, holder in zip(rows, packed):
        if holder.grad is not None:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.index_copy_(0, index, holder.grad)
    return reducer.bytes_per_step + touched.numel() * touched.element_size(), riders


def step_sums(metrics: list[dict], deal: WorkDeal | None, views: list[tuple[int, int, torch.Tensor]],
              work: list[float]) -> torch.Tensor:
    """The sums of this process's views' ``metrics`` (one dict a view), then, where ``deal`` deals a step's views, each
    view's ``work`` in its slot (:meth:`WorkDeal.slots`; ``views``: this step's (block, view, image) triples): what a
    step of view processes sums over them, with the gradients (:func:`average_gradients`)."""
    sums = torch.stack([torch.stack(list(m.values())) for m in metrics]).sum(dim=0)
    if deal is None:
        return sums
    return torch.cat([sums, deal.slots([v for _, v, _ in views], work).to(sums)])


def sum_growth_statistics(strategy, world: D.World) -> None:
    """The growth statistics of ``strategy`` (:class:`~momentum_gs.model.strategy.AnchorStrategy`) summed over
    the processes, so that each grows and prunes from every view's."""
    stats = [strategy.opacity_accum, strategy.anchor_visits, strategy.offset_grad_accum, strategy.offset_visits]
    flat = D.all_reduce_sum(torch.cat([s.reshape(-1) for s in stats]), world)
    for s, part in zip(stats, flat.split([s.numel() for s in stats])):
        s.copy_(part.view_as(s))


class WorkDeal:
    """Deals each step's views to the processes by their work at their last render (``distributed.deal_by: pairs``).

    A view's Gaussian × tile pairs tell its time far better than the SfM points it sees (docs/benchmarks/training.md,
    "More processes, more wait"), but they are known only once it is rendered, by the process that rendered it. So
    each process adds its views' pairs to the step's metrics (:meth:`slots`), which every process sums, and every
    process keeps the same record of them (:meth:`record`). Step t is dealt by each view's pairs at its last render up
    to step t − :attr:`lag`: the images of the steps ahead are loaded before the steps behind are done, and the deal
    must not depend on how far the loading has got. The lag is one step more than the images asked for ahead span. Until
    each of a step's views has been rendered (the first steps of a run) the step is dealt by ``sfm``. The record goes
    into checkpoints, so that a resumed run deals as before.

    Args:
        cameras: the block's training views (indices into the scene's training cameras).
        sfm: their costs until rendered (:func:`view_costs`), in the same order.
        prefetch: the images the loader decodes ahead of use (``data.prefetch``).
        per_process: the views each process renders a step.
    """

    def __init__(self, cameras: list[int], sfm: list[float], prefetch: int, per_process: int):
        self.index = {view: i for i, view in enumerate(cameras)}
        self.sfm, self.per_process = list(sfm), per_process
        # steps from a render to the first deal by it: taking a step's last image, the loader asks for the views
        # up to prefetch - 1 past it (ImageLoader.iterate), while the steps before this one are recorded
        self.lag = 1 + math.ceil(max(0, prefetch - 1) / per_process)
        self.history: dict[int, list[tuple[int, float]]] = {}  # view -> its last (step, pairs), oldest first
        self.recorded = 0  # the last step whose work is in the record
        self.taken: dict[int, list[int]] = {}  # step -> its views, from when it was dealt until it is recorded

    def plan(self, steps: list[list[tuple[int, int]]], start: int,
             member: int) -> Callable[[int], list[tuple[int, int]]]:
        """For global steps start+1 .. start+len(steps), each of ``steps`` every (block, view) of the step in walk
        order: the function of i that gives process ``member``'s views of step start+1+i, each step dealt once, when
        first asked for."""
        self.recorded = max(self.recorded, start)
        dealt: dict[int, list[tuple[int, int]]] = {}

        def mine(i: int) -> list[tuple[int, int]]:
            if i not in dealt:
                step, entries = start + 1 + i, steps[i]
                views = [view for _, view in entries]
                self.taken[step] = views
                costs = self.costs(step, views) or [self.sfm[self.index[view]] for view in views]
                dealt[i] = [entries[j] for j in deal_by_cost(costs, self.per_process)[member]]
            return dealt[i]
        return mine

    def costs(self, step: int, views: list[int]) -> list[float] | None:
        """Each of ``views``' pairs at its last render up to step ``step`` − lag; None unless every one has one."""
        before = step - self.lag
        if before > self.recorded:
            raise RuntimeError(f"step {step} dealt before step {before}'s work was recorded: a lag of {self.lag} "
                               "is shorter than the images loaded ahead")
        found = []
        for view in views:
            past = [work for at, work in self.history.get(view, ()) if at <= before]
            if not past:
                return None
            found.append(past[-1])
        return found

    def slots(self, views: list[int], work: list[float]) -> torch.Tensor:
        """This process's ``work`` of its ``views`` this step, one slot per block view (the others 0), then one
        more per block view counting its renders, to sum over the processes."""
        n = len(self.index)
        found = torch.zeros(2 * n, dtype=torch.float32)
        for view, value in zip(views, work):
            found[self.index[view]] += value
            found[n + self.index[view]] += 1
        return found

    def record(self, step: int, summed: list[float]) -> None:
        """Step ``step``'s :meth:`slots` summed over the processes into the record. A view a step took twice (where
        it spans two walks) was rendered twice from the same model: its work is their mean. Each view must have
        been rendered as often as the step took it: else the processes dealt it differently (RuntimeError)."""
        n, taken = len(self.index), Counter(self.taken.pop(step))
        renders = {view: summed[n + i] for view, i in self.index.items() if summed[n + i] or view in taken}
        if renders != {view: float(times) for view, times in taken.items()}:
            raise RuntimeError(f"step {step}'s views were rendered {renders} times, not {dict(taken)}: the processes "
                               "dealt them differently")
        for view, times in taken.items():
            past = self.history.setdefault(view, [])
            past.append((step, summed[self.index[view]] / times))
            del past[:-2 * self.lag - 2]  # what a deal up to the images loaded ahead may still ask for
        self.recorded = step

    def state_dict(self) -> dict:
        entries = [(view, at, work) for view, past in sorted(self.history.items()) for at, work in past]
        views, steps, works = zip(*entries) if entries else ((), (), ())
        return {"recorded": self.recorded, "views": torch.tensor(views, dtype=torch.int64),
                "steps": torch.tensor(steps, dtype=torch.int64), "work": torch.tensor(works, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        if not len(state["views"]) == len(state["steps"]) == len(state["work"]):
            raise ValueError("the deal's record has views, steps and work of different lengths")
        self.history = {}
        for view, at, work in zip(state["views"].tolist(), state["steps"].tolist(), state["work"].tolist()):
            if view not in self.index:
                raise ValueError(f"the deal's record has view {view}, which the block does not train")
            self.history.setdefault(view, []).append((at, work))
        self.recorded = int(state["recorded"])
