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

A run can also fall behind before its window closes: the probe's pace, times :data:`GROWTH`, is too fast a guess
where each step renders several views a process (docs/benchmarks/training.md). Such a run would reach the deadline
with its window still open and never be planned again. So, before the window closes, the run times the last
:data:`FIRST` of its steps at each progress check: where the steps left at that pace alone already end past the
deadline (and the steps only slow while the anchors grow), it plans its end again at once, at that pace times
:data:`GROWTH`, and its window moves with the rescaled schedules. The re-plan after the window then sets the end
from the pace that holds.
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
GROWTH = 1.35  # a whole run's mean step time over its first steps' (momentum_gs.train.plan)


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
        self.behind_plan: dict | None = None  # what the re-plans before the window found and did, for the summary
        self._paced_since: float | None = None
        self._marks: list[tuple[int, float]] = []  # (global step, clock) at the progress checks before the window
        self._recent_pace = 0.0  # seconds a step over the last marks

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
        if self._paced_since is None and step >= start:  # past it only where a re-plan moved the window here
            self._paced_since = time.perf_counter()
        return step == at and self._paced_since is not None

    def behind(self, step: int, total: int) -> bool:
        """At a progress check (global step ``step`` of ``total``) before the window opens: whether the steps left,
        at the pace of the last :data:`FIRST` of the run, already end past the deadline (rank 0 decides)."""
        if self.window is None or step >= self.window[0]:
            return False
        now = time.perf_counter()
        self._marks.append((step, now))
        span = max(10, round(FIRST * total))
        while len(self._marks) > 2 and step - self._marks[1][0] >= span:
            self._marks.pop(0)
        since, then = self._marks[0]
        late = False
        if step - since >= span:
            self._recent_pace = (now - then) / (step - since)
            late = time.time() + (total - step) * self._recent_pace > self.deadline
        flag = torch.tensor([float(late)])
        if self.world.distributed:
            torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def early_step(self, step: int) -> tuple[int, float]:
        """At a re-plan before the window (global step ``step``): the last global step that fits the deadline at
        the recent pace times :data:`GROWTH` (rank 0 decides for every process), and that recent pace."""
        ahead = MARGIN * (self.deadline - time.time()) / (self._recent_pace * GROWTH)
        return D.agreed(self.world, step + max(0, math.floor(ahead))), self._recent_pace

    def moved_early(self, step: int, before: int, total: int, pace: float, window: tuple[int, int] | None) -> str:
        """Record that the re-plan before the window, at ``step``, moved the run's end from ``before`` to ``total``
        global steps at the recent ``pace``, and move the window to ``window``; returns the line that says so."""
        if self.behind_plan is None:
            self.behind_plan = {"at_step": step, "planned_steps": before, "times": 0}
        self.behind_plan.update(seconds_per_step=pace, steps=total, times=self.behind_plan["times"] + 1)
        self.window, self._marks = window, []
        return (f"time: behind the plan at step {step} while the anchors grow ({pace:.3g} s a step); {total} steps "
                f"fit the budget instead of {before}, the schedules still to come rescaled")

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
