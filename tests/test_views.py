"""Several processes on one block, one view each a step (``distributed.view_processes``): the plan per view seen,
each process's views, the averaged step, and runs that repeat bit for bit."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from momentum_gs.config import load_config, save_config
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import load_checkpoint
from momentum_gs.train.launch import choose_processes
from momentum_gs.train.scheduler import BlockScheduler
from momentum_gs.train.trainer import Trainer
from momentum_gs.train.distributed import World
from momentum_gs.train.views import average_gradients, per_view_rule
from tests.helpers.cli import assert_one_line_error, mgs
from tests.helpers.states import flat_tensors, one_thread
from tests.helpers.tiny_training import TINY_OVERRIDES, step_by_hand


def test_the_rule_plans_a_run_per_view_seen():
    cfg = load_config(overrides=["optim.steps=3000", "strategy.update_interval=100", "teacher.momentum=0.9"])
    before = load_config(overrides=["optim.steps=3000", "strategy.update_interval=100", "teacher.momentum=0.9"])
    per_view_rule(cfg, 4)
    assert cfg.optim.steps == 750 and cfg.strategy.update_interval == 25
    assert cfg.strategy.update_until == round(before.strategy.update_until / 4)
    assert cfg.strategy.start_stat == round(before.strategy.start_stat / 4)
    assert cfg.optim.lr_max_steps == round(before.optim.lr_max_steps / 4)
    assert cfg.optim.feature_lr == pytest.approx(2 * before.optim.feature_lr)
    assert cfg.optim.mlp_color_lr_final == pytest.approx(2 * before.optim.mlp_color_lr_final)
    assert cfg.optim.adam_beta1 == pytest.approx(0.9 ** 4) and cfg.optim.adam_beta2 == pytest.approx(0.999 ** 4)
    assert cfg.teacher.momentum == pytest.approx(0.9 ** 4)
    assert cfg.distributed.planned_views == 4
    planned = load_config(overrides=["optim.steps=3000"])
    per_view_rule(planned, 4)
    per_view_rule(planned, 4)  # planned once: a run's config.yaml given to a new run
    assert planned == cfg
    per_view_rule(planned, 2)  # planned again for another count, from the one it had
    assert planned.optim.steps == 1500
    assert planned.optim.feature_lr == pytest.approx(math.sqrt(2) * before.optim.feature_lr)
    assert planned.optim.adam_beta1 == pytest.approx(0.81)
    per_view_rule(planned, 1)
    assert planned.optim.steps == 3000 and planned.optim.feature_lr == pytest.approx(before.optim.feature_lr)
    same = load_config(overrides=["optim.steps=3000"])
    per_view_rule(same, 1)
    assert same == load_config(overrides=["optim.steps=3000"])


@pytest.mark.parametrize("views", [2, 3])
def test_each_process_takes_its_own_views_of_one_walk(views):
    scheduler = BlockScheduler(1, 1)
    cameras = [list(range(10, 22))]  # 12 views
    walk = [v for entries in scheduler.view_plan(0, 12, cameras, seed=3) for _, v in entries]
    plans = [scheduler.view_plan(0, 12 // views, cameras, seed=3, views=views, member=m) for m in range(views)]
    steps = [[plan[s][0][1] for plan in plans] for s in range(12 // views)]
    assert [v for step in steps for v in step] == walk  # the one walk, cut into steps of `views`
    assert sorted(walk) == cameras[0]  # an epoch sees every view once
    later = [scheduler.view_plan(s, s + 1, cameras, seed=3, views=views, member=m)[0][0][1]
             for s in (1, 3) for m in range(views)]
    assert later == [v for s in (1, 3) for v in steps[s]]  # a resumed run takes up the same walk


def test_the_launcher_starts_one_process_per_core_or_as_asked(tiny_config, monkeypatch):
    monkeypatch.setattr("momentum_gs.train.launch.cores", lambda: (4, "4 cores"))
    tiny_config.distributed.view_processes = 0
    assert choose_processes(tiny_config)[0] == 4
    tiny_config.distributed.view_processes = 3
    assert choose_processes(tiny_config)[0] == 3
    tiny_config.distributed.view_processes = 1
    assert choose_processes(tiny_config)[0] == 1
    monkeypatch.setattr("momentum_gs.train.launch.cores", lambda: (1, "1 core"))
    tiny_config.distributed.view_processes = 0
    assert choose_processes(tiny_config)[0] == 1


def test_view_processes_are_at_most_the_training_views(tiny_config, monkeypatch):
    """A step of more views than the scene has would take one twice: 64 cores start one process per view, and more
    processes than views asked for are one clear line."""
    train = len(load_scene(tiny_config.data, images=False).train)
    monkeypatch.setattr("momentum_gs.train.launch.cores", lambda: (64, "64 cores"))
    tiny_config.distributed.view_processes = 0
    count, why = choose_processes(tiny_config)
    assert 2 <= count == train < 64 and f"at most one per training view ({train})" in why
    tiny_config.distributed.view_processes = train
    assert choose_processes(tiny_config)[0] == train
    tiny_config.distributed.view_processes = train + 1
    with pytest.raises(UserError, match=f"the scene has {train} training views: .* at most {train}"):
        choose_processes(tiny_config)


def test_view_processes_on_a_scene_of_several_blocks_is_one_clear_line(block_config):
    block_config.distributed.view_processes = 2
    with pytest.raises(UserError, match="scene of one block"):
        choose_processes(block_config)


def test_a_single_process_refuses_a_config_planned_for_several(tiny_config, tmp_path):
    tiny_config.distributed.planned_views = 2
    with pytest.raises(UserError, match="planned_views=2: start it with `mgs train`"):
        Trainer(tiny_config, load_scene(tiny_config.data), tmp_path / "run", torch.device("cpu"))


def _two_view_run(scene, out, *extra):
    result = mgs("train", "--data", str(scene), "--out", str(out), *TINY_OVERRIDES, "log.checkpoint_every=2",
                 "log.keep_checkpoints=0", "distributed.view_processes=2", "distributed.check_every=1", *extra)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_take_the_step_of_their_two_views_averaged(tiny_scene, tmp_path):
    """Step 1 of two processes on the block against one process that renders both views, averages their gradients
    and steps with the rule's learning rates and decays."""
    result = _two_view_run(tiny_scene, tmp_path / "two")
    assert "2 views a step" in result.stdout and "distributed.view_processes=2" in result.stdout
    trained = load_checkpoint(tmp_path / "two" / "ckpt" / "step_1.pt", map_location="cpu")
    cfg = load_config(overrides=TINY_OVERRIDES + ["log.checkpoint_every=2"])
    cfg.data.path = str(tiny_scene)
    per_view_rule(cfg, 2)
    cfg.distributed.planned_views = 1  # one process, doing by hand what the two do together
    with one_thread():
        trainer = Trainer(cfg, load_scene(cfg.data), tmp_path / "one", torch.device("cpu"))
        block = trainer.placement.activate([0])[0]
        initial = flat_tensors({"anchors": {k: v.clone() for k, v in block.anchors.state_dict().items()}})
        views = [trainer.scheduler.view_plan(0, 1, [block.cameras], cfg.seed, views=2, member=m)[0][0][1]
                 for m in range(2)]
        assert views[0] != views[1]
        step_by_hand(trainer, block, views)
    assert block.optimizer.param_groups[0]["betas"] == pytest.approx((0.81, 0.999 ** 2))
    expected = {"anchors": block.anchors.state_dict(), "decoder": trainer.decoder.state_dict()}
    got = {"anchors": trained["blocks"][0]["anchors"], "decoder": trained["decoder"]}
    flat_expected, flat_got = flat_tensors(expected), flat_tensors(got)
    assert set(flat_expected) <= set(flat_got)
    for name, value in flat_expected.items():
        torch.testing.assert_close(flat_got[name], value, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(flat_expected[".anchors.features"], initial[".anchors.features"])  # a step was taken


@pytest.mark.slow
def test_two_view_runs_repeat_bit_for_bit_and_resume(tiny_scene, tmp_path):
    paired = ("teacher.enabled=true", "distributed.balance_views=true")  # the walk paired by cost, resumed too
    _two_view_run(tiny_scene, tmp_path / "a", *paired)
    _two_view_run(tiny_scene, tmp_path / "b", *paired)
    a, b = (load_checkpoint(tmp_path / run / "ckpt" / "step_12.pt", map_location="cpu") for run in ("a", "b"))
    fa, fb = flat_tensors(a["blocks"]), flat_tensors(b["blocks"])
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    assert all(torch.equal(a["decoder"][k], b["decoder"][k]) for k in a["decoder"])
    saved = load_config(str(tmp_path / "a" / "config.yaml"))
    assert saved.distributed.planned_views == 2 and saved.optim.steps == 12  # planned once, for 2 views a step
    resumed = mgs("train", "--resume", "--out", str(tmp_path / "a"))
    assert resumed.returncode == 0 and "2 processes" in resumed.stdout, resumed.stderr[-3000:]
    assert load_config(str(tmp_path / "a" / "config.yaml")).optim.steps == 12  # not planned again
    refused = mgs("train", "--data", str(tiny_scene), "--out", str(tmp_path / "c"), *TINY_OVERRIDES,
                  "distributed.view_processes=2", "blocks.partition=auto:2")
    assert_one_line_error(refused, "scene of one block")


def test_gradients_sent_by_rows_come_back_to_their_rows(monkeypatch):
    monkeypatch.setattr("momentum_gs.train.views.SPARSE_FROM", 0)
    torch.manual_seed(0)
    features, offsets, unused = (torch.nn.Parameter(torch.randn(shape)) for shape in ((6, 4), (6, 3, 3), (6, 2)))
    features.grad = torch.randn(6, 4) * torch.tensor([1.0, 0, 1, 0, 0, 1])[:, None]
    offsets.grad = torch.randn(6, 3, 3) * torch.tensor([0.0, 0, 1, 1, 0, 0])[:, None, None]
    decoder = torch.nn.Parameter(torch.randn(5))
    decoder.grad = torch.randn(5)
    before = [features.grad.clone(), offsets.grad.clone(), decoder.grad.clone()]
    average_gradients([features, offsets, unused], [decoder], World())
    assert unused.grad is None  # no view reached it
    for after, expected in zip((features.grad, offsets.grad, decoder.grad), before):
        assert torch.equal(after, expected)


@pytest.mark.slow
def test_the_rows_the_views_reached_train_the_bits_every_row_trains(tiny_scene, tmp_path):
    """The all-reduce of the touched rows (forced here, under torchrun) against that of every row (the tiny scene's
    few anchors): the same checkpoint, bit for bit."""
    cfg = load_config(overrides=TINY_OVERRIDES + ["teacher.enabled=true", "distributed.view_processes=2"])
    cfg.data.path = str(tiny_scene)
    per_view_rule(cfg, 2)
    save_config(cfg, tmp_path / "planned.yaml")
    every = mgs("train", "--config", str(tmp_path / "planned.yaml"), "--out", str(tmp_path / "every"))
    assert every.returncode == 0, every.stderr[-3000:]
    rows = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(Path(__file__).parent / "helpers" / "sparse_views.py"), "train", "--config",
                           str(tmp_path / "planned.yaml"), "--out", str(tmp_path / "rows")],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert rows.returncode == 0, rows.stderr[-3000:]
    a, b = (load_checkpoint(tmp_path / run / "ckpt" / "step_12.pt", map_location="cpu") for run in ("every", "rows"))
    fa, fb = flat_tensors([a["blocks"], a["decoder"]]), flat_tensors([b["blocks"], b["decoder"]])
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    assert a["blocks"][0]["anchors"]["features"].abs().sum() > 0  # trained
