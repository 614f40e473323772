"""A ``--time`` run planned again once the growth window has closed: its last step moved to what the deadline
allows, every learning rate going on without a jump and ending at its final value there."""

import math
import time

import pytest
import torch

from momentum_gs.config import load_config
from momentum_gs.data.scene import load_scene
from momentum_gs.model.optim import expon_lr, retarget_schedules, update_learning_rates
from momentum_gs.train.replan import TimeBudget, replan_window
from momentum_gs.train.trainer import Trainer
from tests.helpers.tiny_training import TINY_OVERRIDES


def _optimizer(init=0.01, final=1e-4, max_steps=100):
    group = {"params": [torch.zeros(1, requires_grad=True)], "lr": init, "lr_init": init, "lr_final": final,
             "max_steps": max_steps}
    constant = {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.5, "lr_init": 0.5, "lr_final": 0.5,
                "max_steps": max_steps}
    return torch.optim.Adam([group, constant])


@pytest.mark.parametrize("new_max", [60, 100, 250])
def test_a_retargeted_decay_goes_on_from_where_it_is_and_ends_at_its_final_rate(new_max):
    opt = _optimizer()
    update_learning_rates(opt, 40)
    at_40 = opt.param_groups[0]["lr"]
    retarget_schedules(opt, 40, new_max)
    update_learning_rates(opt, 40)
    assert opt.param_groups[0]["lr"] == pytest.approx(at_40, rel=1e-9)  # no jump
    update_learning_rates(opt, new_max)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-9)
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["max_steps"] == new_max
    rates = [expon_lr(s, opt.param_groups[0]["lr_init"], 1e-4, new_max) for s in range(40, new_max + 1)]
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9) and max(ratios) <= 1  # still log-linear, downwards
    state = opt.state_dict()["param_groups"][0]  # the new schedule is the group's own: a checkpoint keeps it
    assert state["max_steps"] == new_max and state["lr_init"] == opt.param_groups[0]["lr_init"]


def test_the_window_opens_when_growth_ends_and_is_skipped_when_too_late():
    cfg = load_config(overrides=["optim.steps=1000", "strategy.update_until=500"])
    assert replan_window(cfg, 1000, 1, 1) == (500, 550)
    assert replan_window(cfg, 2000, 4, 2) == (1000, 1100)  # global steps: n/k of the blocks' own
    cfg = load_config(overrides=["optim.steps=1000", "strategy.update_until=2000"])  # growth to the end: half
    assert replan_window(cfg, 1000, 1, 1) == (500, 550)
    cfg = load_config(overrides=["optim.steps=1000", "strategy.update_until=880"])
    assert replan_window(cfg, 1000, 1, 1) is None


@pytest.mark.parametrize("steps_left", [10, 50])
def test_a_replanned_run_ends_on_its_new_last_step_with_every_decay_done(tiny_scene, tmp_path, steps_left, monkeypatch):
    cfg = load_config(overrides=[*TINY_OVERRIDES, "optim.steps=40", "optim.lr_max_steps=40",
                                     "strategy.update_until=12"])
    cfg.data.path, cfg.out = str(tiny_scene), str(tmp_path / "run")
    trainer = Trainer(cfg, load_scene(cfg.data), tmp_path / "run", torch.device("cpu"))
    trainer.budget = TimeBudget(time.time() + 3600, (12, 20))
    # the run's end as its re-plans would find it, set by hand: 10 steps after the first (shorter) or 50 (longer)
    monkeypatch.setattr("momentum_gs.train.replan.MARGIN", 0.0)
    original = trainer.retarget
    monkeypatch.setattr(trainer, "retarget", lambda total: original(20 + steps_left))
    rates = []
    real_update = trainer.train_step

    def step_and_record(views):
        out = real_update(views)
        rates.append(trainer.decoder_opt.param_groups[0]["lr"])
        return out
    monkeypatch.setattr(trainer, "train_step", step_and_record)
    summary = trainer.train()
    assert summary["steps"] == 20 + steps_left and trainer.total_steps == 20 + steps_left
    assert summary["replanned"]["planned_steps"] == 40 and summary["replanned"]["at_step"] == 20
    final = cfg.optim.mlp_opacity_lr_final
    assert rates[-1] == pytest.approx(final, rel=1e-6)  # the decay ended on the new last step
    ratios = [b / a for a, b in zip(rates[:20], rates[1:21])]  # the step after the re-plan: no jump upwards
    assert all(r <= 1 + 1e-9 for r in ratios)
    saved = load_config(tmp_path / "run" / "config.yaml")  # a resumed run keeps the new end
    assert saved.optim.steps == 20 + steps_left and saved.optim.lr_max_steps in (0, 20 + steps_left)
    assert math.isclose(saved.weighting.warmup, cfg.weighting.warmup)
    assert (tmp_path / "run" / "ckpt" / f"step_{20 + steps_left}.pt").is_file()
