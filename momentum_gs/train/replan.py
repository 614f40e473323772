"""A ``--time`` run's clock: its deadline, and its end planned again once its pace is known (:class:`TimeBudget`).

The plan before the first step (:mod:`momentum_gs.train.plan`) knows only the first model's pace and guesses how
much the anchors' growth slows the steps: a whole run's mean step was 1.8 times the probe's on brighton_beach at
800 px and 0.9 times on a synthetic 100-photo survey (docs/benchmarks/site.md). A run planned on a guess either
ends at the budget's deadline before its last step (the learning rates part of the way down their decay) or ends
early with the budget unused. Once the growth window has closed the model barely changes size, so the pace of the
steps after it holds to the end: the run times those steps, counts the steps that fit before the deadline and
moves its last step there; then again after each tenth of the run, timing every step since the window closed, so
that a pace that wavers is averaged out. The schedules still to come keep their share of what is left
(:func:`~momentum_gs.config.load.scale_schedules`), and each learning rate goes on from where it is down to its
final value at the new last step (:func:`~momentum_gs.model.optim.retarget_schedules`); the trainer does that
(:meth:`~momentum_gs.train.trainer.Trainer.retarget`) and writes the run's config.yaml again, so that a resumed
run keeps the new end.
"""

from __future__ import annotations

import math
import time

import torch

from momentum_gs.train import distributed as D

MARGIN = 0.9  # the share of the time left that the steps are planned into: the pace wavers by a tenth, and each
# re-plan takes back most of what the one before kept in hand
AGAIN = 0.1  # planned again after each such share of the run, the pace timed since the window closed
FIRST = 0.05  # the share of the run timed after the window closes before the first re-plan


class TimeBudget:
    """The clock of a ``--time`` run, held by the trainer.

    Args:
        deadline: ``time.time()`` past which the run stops after its step, writing its checkpoint.
        window: the global steps (from, at) between which the pace is timed and at which the run is planned
            again (:func:`replan_window`); None: the deadline alone (a resumed run).
        world: the training processes; process 0's clock and pace decide for every one.
    """

    def __init__(self, deadline: float, window: tuple[int, int] | None = None, world: D.World = D.SINGLE):
        self.deadline, self.window, self.world = deadline, window, world
        self.replanned: dict | None = None  # what the re-plans found and did, for the summary
        self._paced_since: float | None = None

    def past(self) -> bool:
        """Whether the deadline has passed (process 0's clock decides for every process)."""
        past = torch.tensor([float(time.time() >= self.deadline)])
        if self.world.distributed:
            torch.distributed.broadcast(past, src=0)
        return bool(past.item())

    def replan_due(self, step: int) -> bool:
        """After global step ``step``: starts the pace's clock at the first step of :attr:`window`, and is True at
        its last."""
        if self.window is None:
            return False
        start, at = self.window
        if step == start:
            self._paced_since = time.perf_counter()
        return step == at and self._paced_since is not None

    def last_step(self, step: int) -> tuple[int, float]:
        """At a re-plan (global step ``step``): the last global step that fits the deadline at the pace timed since
        the window closed (rank 0 decides for every process), and that pace (seconds a step)."""
        start, at = self.window
        pace = (time.perf_counter() - self._paced_since) / (at - start)
        return D.agreed(self.world, step + max(0, math.floor(MARGIN * (self.deadline - time.time()) / pace))), pace

    def moved(self, step: int, before: int, total: int, pace: float) -> str | None:
        """Record that the re-plan at ``step`` moved the run's end from ``before`` to ``total`` global steps at
        ``pace``, and set the next re-plan; returns the line that says the first one (None after)."""
        first = self.replanned is None
        if first:
            self.replanned = {"at_step": step, "planned_steps": before, "times": 0}
        self.replanned.update(seconds_per_step=pace, steps=total, times=self.replanned["times"] + 1)
        start = self.window[0]
        later = step + max(10, round(AGAIN * total))  # again, over a longer stretch of steps
        self.window = (start, later) if later < (1 - AGAIN / 2) * total else None
        if not first:
            return None
        return (f"time: the steps after the growth window take {pace:.3g} s each; {total} steps fit the budget "
                f"instead of {before}, the schedules still to come rescaled")


def replan_window(cfg, total_steps: int, num_blocks: int, num_active: int) -> tuple[int, int] | None:
    """The global steps (from, at) between which a ``--time`` run times its pace and at which it plans again:
    from the close of the growth window (half the run where there is none) for :data:`FIRST` of the run, at least
    10 steps; None where that would leave under :data:`AGAIN` of the run to plan."""
    strategy = cfg.strategy
    closes = strategy.update_until if 0 < strategy.update_until < cfg.optim.steps else cfg.optim.steps // 2
    start = math.ceil(closes * num_blocks / num_active)
    at = start + max(10, round(FIRST * total_steps))
    return (start, at) if at < (1 - AGAIN) * total_steps else None
