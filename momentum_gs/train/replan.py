"""A ``--time`` run planned again once its pace is known: after the growth window closes.

The plan before the first step (:mod:`momentum_gs.train.plan`) knows only the first model's pace and guesses how
much the anchors' growth slows the steps: a whole run's mean step was 1.8 times the probe's on brighton_beach at
800 px and 0.9 times on a synthetic 100-photo survey (docs/benchmarks/site.md). A run planned on a guess either
ends at the budget's deadline before its last step (the learning rates part of the way down their decay) or ends
early with the budget unused. Once the growth window has closed the model barely changes size, so the pace of the
steps after it holds to the end: the run times those steps, counts the steps that fit before the deadline and
moves its last step there; then again after each tenth of the run, timing every step since the window closed, so
that a pace that wavers is averaged out. The schedules still to come keep their share of what is left, and each
learning rate goes on from where it is down to its final value at the new last step
(:func:`~momentum_gs.model.optim.retarget_schedules`). The run's config.yaml is written again, so that a resumed
run keeps the new end.
"""

from __future__ import annotations

import math
import time

from momentum_gs.config import save_config
from momentum_gs.config.load import SCHEDULE_KEYS
from momentum_gs.train import distributed as D

MARGIN = 0.9  # the share of the time left that the steps are planned into: the pace wavers by a tenth, and each
# re-plan takes back most of what the one before kept in hand
AGAIN = 0.1  # planned again after each such share of the run, the pace timed since the window closed
FIRST = 0.05  # the share of the run timed after the window closes before the first re-plan


class Replanning:
    """The re-plan of :class:`~momentum_gs.train.trainer.Trainer`, which sets the attributes it reads:
    ``replan`` (None: no re-plan; else the global steps after which the pace is timed and at which the run is
    planned again), ``deadline``, ``step``, ``total_steps``, ``cfg``, ``scheduler``, ``blocks``, ``world``,
    ``weighting``, ``folder``, ``logger`` and ``replanned`` (what it did, for the summary)."""

    _paced_since: float | None = None

    def replan_due(self) -> bool:
        """After a step: starts the pace's clock at the first step of :attr:`replan`, and is True at its last."""
        if self.replan is None or self.deadline is None:
            return False
        start, at = self.replan
        if self.step == start:
            self._paced_since = time.perf_counter()
        return self.step == at and self._paced_since is not None

    def replan_now(self) -> int:
        """Time the steps since the window closed, fit the steps left into the deadline, move the run's end there
        (rank 0 decides for every process) and say so; returns the new last global step."""
        start, at = self.replan
        pace = (time.perf_counter() - self._paced_since) / (at - start)
        left = max(0, math.floor(MARGIN * (self.deadline - time.time()) / pace))
        before = self.total_steps
        self.retarget(D.agreed(self.world, self.step + left))
        if self.replanned is None:
            self.replanned = {"at_step": self.step, "planned_steps": before, "times": 0}
        self.replanned.update(seconds_per_step=pace, steps=self.total_steps, times=self.replanned["times"] + 1)
        later = self.step + max(10, round(AGAIN * self.total_steps))  # again, over a longer stretch of steps
        self.replan = (start, later) if later < (1 - AGAIN / 2) * self.total_steps else None
        if self.replanned["times"] == 1 and self.logger is not None and self.world.is_main:
            self.logger.write(f"time: the steps after the growth window take {pace:.3g} s each; {self.total_steps} "
                              f"steps fit the budget instead of {before}, the schedules still to come rescaled")
        return self.total_steps

    def retarget(self, total: int) -> None:
        """Make global step ``total`` (at least the current one) the run's last: ``optim.steps`` set to match, and
        every point of :data:`~momentum_gs.config.load.SCHEDULE_KEYS` still ahead moved to keep its share of the
        steps left. The optimizers' decays follow at their next step (``decay_steps`` against their own)."""
        cfg, n, k = self.cfg, len(self.blocks), self.scheduler.num_active
        now = self.block_equivalent(self.step)
        steps = max(now, total * k // n, 1)
        ratio = (steps - now) / max(cfg.optim.steps - now, 1)
        for key in SCHEDULE_KEYS:
            section, name = key.split(".")
            value = getattr(getattr(cfg, section), name)
            if value > now:
                setattr(getattr(cfg, section), name, now + max(1, round((value - now) * ratio)))
        self.weighting.warmup_steps = cfg.weighting.warmup
        cfg.optim.steps = steps
        self.total_steps = max(self.step, math.ceil(steps * n / k))
        if self.logger is not None:
            self.logger.retotal(self.total_steps)
        if self.world.is_main:
            save_config(cfg, self.folder.config)


def replan_window(cfg, total_steps: int, num_blocks: int, num_active: int) -> tuple[int, int] | None:
    """The global steps (from, at) between which a ``--time`` run times its pace and at which it plans again:
    from the close of the growth window (half the run where there is none) for :data:`FIRST` of the run, at least
    10 steps; None where that would leave under :data:`AGAIN` of the run to plan."""
    strategy = cfg.strategy
    closes = strategy.update_until if 0 < strategy.update_until < cfg.optim.steps else cfg.optim.steps // 2
    start = math.ceil(closes * num_blocks / num_active)
    at = start + max(10, round(FIRST * total_steps))
    return (start, at) if at < (1 - AGAIN) * total_steps else None
