"""Several views per view process (``distributed.views_per_process``): a step's views dealt to the processes by cost,
the step they take together, and runs that repeat bit for bit."""

import pytest
import torch

from momentum_gs.config import load_config
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import load_checkpoint
from momentum_gs.train.launch import choose_processes
from momentum_gs.train.scheduler import BlockScheduler, deal_by_cost
from momentum_gs.train.trainer import Trainer
from momentum_gs.train.views import per_view_rule, view_costs
from tests.helpers.cli import mgs
from tests.helpers.states import flat_tensors, one_thread
from tests.helpers.tiny_training import TINY_OVERRIDES, step_by_hand


def test_a_steps_views_are_dealt_so_that_the_processes_finish_together():
    costs = [10.0, 1.0, 9.0, 2.0, 5.0, 5.0]
    shares = deal_by_cost(costs, 2)
    assert sorted(i for share in shares for i in share) == list(range(6)) and all(len(s) == 2 for s in shares)
    loads = [sum(costs[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= 1.0  # 11, 11 and 10; in walk order (0, 1), (2, 3), (4, 5): 11, 11, 10 too
    uneven = [9.0, 8.0, 1.0, 2.0]
    assert [sum(uneven[i] for i in s) for s in deal_by_cost(uneven, 2)] == [10.0, 10.0]  # in order: 17 and 3
    assert deal_by_cost(uneven, 2) == deal_by_cost(list(uneven), 2)  # a pure function of the costs


@pytest.mark.parametrize("processes", [2, 3])
def test_the_processes_views_are_the_walks_next_views_whoever_renders_them(processes):
    scheduler = BlockScheduler(1, 1)
    cameras = [list(range(10, 22))]  # 12 views
    costs = [[float((7 * i) % 5) for i in range(12)]]
    views = 2 * processes
    walk = [v for entries in scheduler.view_plan(0, 12, cameras, seed=3) for _, v in entries]
    plans = [scheduler.view_plan(0, 12 // views, cameras, seed=3, views=views, member=m, per_process=2, deal=costs)
             for m in range(processes)]
    for s in range(12 // views):
        mine = [[v for _, v in plan[s]] for plan in plans]
        assert all(len(m) == 2 for m in mine)
        assert sorted(v for m in mine for v in m) == sorted(walk[s * views:(s + 1) * views])
        step = walk[s * views:(s + 1) * views]  # dealt as deal_by_cost deals the step's views, in walk order
        assert mine == [[step[i] for i in share] for share in deal_by_cost([costs[0][v - 10] for v in step], 2)]
    plain = [scheduler.view_plan(0, 1, cameras, seed=3, views=views, member=m, per_process=2)[0]
             for m in range(processes)]
    assert [v for entries in plain for _, v in entries] == walk[:views]  # without costs: the walk's order
    later = [scheduler.view_plan(1, 2, cameras, seed=3, views=views, member=m, per_process=2, deal=costs)[0]
             for m in range(processes)]
    assert later == [plan[1] for plan in plans]  # a resumed run deals the same


def test_views_per_process_bound_the_processes_by_the_training_views(tiny_config, monkeypatch):
    monkeypatch.setattr("momentum_gs.train.launch.cores", lambda: (64, "64 cores"))
    train = len(load_scene(tiny_config.data, images=False).train)
    tiny_config.distributed.view_processes, tiny_config.distributed.views_per_process = 0, 2
    count, why = choose_processes(tiny_config)
    assert count == train // 2 and "its own 2 views" in why
    tiny_config.distributed.view_processes = train // 2 + 1
    with pytest.raises(UserError, match="views_per_process=2 but the scene has"):
        choose_processes(tiny_config)


@pytest.mark.slow
def test_two_processes_of_two_views_take_the_step_of_four_views_averaged_and_repeat(tiny_scene, tmp_path):
    """Step 1 of two processes of two views each against one process that renders the four views, averages their
    gradients and steps with the rule's learning rates and decays; and a second run, bit for bit."""
    runs = {}
    for name in ("a", "b"):
        result = mgs("train", "--data", str(tiny_scene), "--out", str(tmp_path / name), *TINY_OVERRIDES,
                     "log.checkpoint_every=1", "log.keep_checkpoints=0", "distributed.view_processes=2",
                     "distributed.views_per_process=2", "distributed.check_every=1", "teacher.enabled=true")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "4 views a step" in result.stdout, result.stdout[-2000:]
        runs[name] = load_checkpoint(tmp_path / name / "ckpt" / "step_1.pt", map_location="cpu")
    fa, fb = (flat_tensors([runs[n]["blocks"], runs[n]["decoder"]]) for n in "ab")
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    cfg = load_config(overrides=TINY_OVERRIDES + ["teacher.enabled=true"])
    cfg.data.path = str(tiny_scene)
    per_view_rule(cfg, 4)
    cfg.distributed.planned_views = 1  # one process, doing by hand what the two do together
    with one_thread():
        trainer = Trainer(cfg, load_scene(cfg.data), tmp_path / "one", torch.device("cpu"))
        block = trainer.placement.activate([0])[0]
        costs = [view_costs(trainer.scene, block.cameras)]
        views = [v for m in range(2) for _, v in trainer.scheduler.view_plan(0, 1, [block.cameras], cfg.seed, views=4,
                                                                             member=m, per_process=2, deal=costs)[0]]
        assert len(set(views)) == 4
        step_by_hand(trainer, block, views)
    assert block.optimizer.param_groups[0]["betas"] == pytest.approx((0.9 ** 4, 0.999 ** 4))
    expected = flat_tensors({"anchors": block.anchors.state_dict(), "decoder": trainer.decoder.state_dict()})
    got = flat_tensors({"anchors": runs["a"]["blocks"][0]["anchors"], "decoder": runs["a"]["decoder"]})
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)
