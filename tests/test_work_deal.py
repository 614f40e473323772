"""Dealing a step's views by their work at their last render (``distributed.deal_by: pairs``, WorkDeal): the SfM
points until every view has been rendered, the record shared by the processes and kept in checkpoints, and two
processes of two views that run, record and resume through it."""

import re
from types import SimpleNamespace

import pytest
import torch

from momentum_gs.config import load_config
from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import load_scene
from momentum_gs.io.checkpoint import load_checkpoint
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.train_log import read_log
from momentum_gs.train.scheduler import deal_by_cost
from momentum_gs.train.views import WorkDeal
from tests.helpers.cli import mgs
from tests.helpers.states import flat_tensors
from tests.helpers.tiny_training import TINY_OVERRIDES

CAMERAS = [10, 11, 12, 13, 14, 15]
SFM = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
STEPS = [[(0, 10), (0, 11), (0, 12), (0, 13)], [(0, 14), (0, 15), (0, 10), (0, 11)],
         [(0, 12), (0, 13), (0, 14), (0, 15)], [(0, 10), (0, 11), (0, 12), (0, 13)]]


def _render(deals: list[WorkDeal], step: int, work: dict[int, float], start: int = 0) -> list[list[int]]:
    """Step ``step`` dealt by each of ``deals`` (one per process, of two), rendered with ``work`` and recorded by
    all, as the trainer does; returns each process's views."""
    mine = [[view for _, view in deal.plan(STEPS, start, member)(step - start - 1)]
            for member, deal in enumerate(deals)]
    summed = sum(deal.slots(views, [work[v] for v in views]) for deal, views in zip(deals, mine))
    for deal in deals:
        deal.record(step, summed.tolist())
    return mine


def test_steps_are_dealt_by_the_sfm_points_until_their_views_were_rendered_then_by_their_work():
    deals = [WorkDeal(CAMERAS, SFM, prefetch=0, per_process=2) for _ in range(2)]
    work = {10: 9.0, 11: 1.0, 12: 1.0, 13: 9.0, 14: 5.0, 15: 5.0}  # 10 and 13 costly, though the SfM says 13 and 12
    first = _render(deals, 1, work)
    views = [10, 11, 12, 13]
    assert first == [[views[i] for i in share] for share in deal_by_cost(SFM[:4], 2)] == [[10, 13], [11, 12]]
    _render(deals, 2, work)  # 14 and 15 have no render yet: the SfM points
    third = _render(deals, 3, work)  # 12 to 15, all rendered once
    assert deals[0].costs(4, views) == [work[v] for v in views]
    fourth = _render(deals, 4, work)
    assert sorted(fourth[0] + fourth[1]) == views and {frozenset(m) for m in fourth} == {frozenset({10, 11}),
                                                                                           frozenset({12, 13})}
    # by the work 1 + 9 against 5 + 5; by the SfM points it would have been 12 and 15 against 13 and 14: 6 against 14
    assert {frozenset(m) for m in third} == {frozenset({12, 13}), frozenset({14, 15})}
    assert deals[0].history == deals[1].history  # every process keeps the same record


def test_a_deal_waits_its_lag_and_is_refused_ahead_of_the_record():
    deal = WorkDeal(CAMERAS, SFM, prefetch=2, per_process=2)
    deal.plan(STEPS, 0, 0)(0)
    deal.record(1, [7.0] * 4 + [0.0] * 2 + [1.0] * 4 + [0.0] * 2)
    assert deal.costs(2, [10, 11]) is None  # rendered at step 1: first used for step 3
    assert deal.costs(3, [10, 11]) == [7.0, 7.0]
    with pytest.raises(RuntimeError, match="lag of 2"):
        deal.costs(4, [10, 11])  # step 2 is not recorded yet


def test_a_view_taken_twice_in_a_step_counts_once_and_a_different_deal_is_caught():
    deal = WorkDeal(CAMERAS, SFM, prefetch=0, per_process=2)
    deal.taken[1] = [10, 11, 10, 12]  # a step across two walks takes 10 twice
    deal.record(1, [8.0, 3.0, 5.0, 0, 0, 0, 2.0, 1.0, 1.0, 0, 0, 0])
    assert deal.costs(2, [10, 11, 12]) == [4.0, 3.0, 5.0]
    deal.taken[2] = [10, 11, 12, 13]
    with pytest.raises(RuntimeError, match="dealt them differently"):  # 13 never rendered, 12 twice
        deal.record(2, [1.0, 1.0, 2.0, 0, 0, 0, 1.0, 1.0, 2.0, 0, 0, 0])


def test_the_record_comes_back_from_its_state_and_deals_the_same():
    deals = [WorkDeal(CAMERAS, SFM, prefetch=0, per_process=2) for _ in range(2)]
    work = {10: 9.0, 11: 1.0, 12: 1.0, 13: 9.0, 14: 5.0, 15: 5.0}
    for step in (1, 2, 3):
        _render(deals, step, work)
    state = deals[0].state_dict()
    assert state["recorded"] == 3 and state["work"].dtype == torch.float64
    resumed = [WorkDeal(CAMERAS, SFM, prefetch=0, per_process=2) for _ in range(2)]
    for deal in resumed:
        deal.load_state_dict(state)
    assert resumed[0].history == deals[0].history
    assert _render(resumed, 4, work, start=3) == _render(deals, 4, work, start=3)
    broken = dict(state, views=torch.tensor([99] * len(state["views"])))
    with pytest.raises(ValueError, match="view 99"):
        WorkDeal(CAMERAS, SFM, prefetch=0, per_process=2).load_state_dict(broken)


@pytest.mark.parametrize("prefetch, per_process", [(0, 1), (1, 1), (4, 2), (4, 3), (7, 2), (8, 4)])
def test_the_lag_covers_the_images_the_loader_asks_for_ahead(prefetch, per_process, monkeypatch):
    """The trainer's loop as it is: the loader pulls views ahead through the deal, each step is recorded once its
    images are taken and it is trained. With the lag one step shorter the deal is asked for a step too early."""
    monkeypatch.setattr(ImageLoader, "_decode", lambda self, i: torch.zeros(1))
    views = len(CAMERAS)
    walk = [[(0, CAMERAS[(s * 2 * per_process + j) % views]) for j in range(2 * per_process)] for s in range(12)]

    def train(shorter: bool) -> None:
        deal = WorkDeal(CAMERAS, SFM, prefetch, per_process)
        deal.lag -= shorter
        mine = deal.plan(walk, 0, 0)
        loader = ImageLoader([SimpleNamespace(width=1, height=1)] * views, cache=False, prefetch=prefetch)
        images = loader.iterate(CAMERAS.index(view) for i in range(len(walk)) for _, view in mine(i))
        for i, entries in enumerate(map(mine, range(len(walk)))):
            for _ in entries:
                next(images)
            summed = [0.0] * (2 * views)
            for _, view in walk[i]:
                summed[CAMERAS.index(view)] += 5.0
                summed[views + CAMERAS.index(view)] += 1.0
            deal.record(i + 1, summed)
        images.close()
        loader.close()
        assert deal.costs(len(walk) + 1, CAMERAS) == [5.0] * views

    train(shorter=False)
    if deal_lag := WorkDeal(CAMERAS, SFM, prefetch, per_process).lag - 1:  # a lag of 1 cannot be shorter
        with pytest.raises(RuntimeError, match=f"lag of {deal_lag}"):
            train(shorter=True)


@pytest.mark.slow
def test_two_processes_of_two_views_deal_by_their_work_repeat_bit_for_bit_and_resume(tiny_scene, tmp_path):
    """Twelve steps of four views, two a process: past the first walk and the lag (3 steps, 4 images loaded ahead),
    the steps are dealt by the recorded pairs. Two runs give the same bits; the record is in the checkpoint."""
    states = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = mgs("train", "--data", str(tiny_scene), "--out", str(out), *TINY_OVERRIDES, "optim.steps=48",
                     "log.keep_checkpoints=0", "distributed.view_processes=2", "distributed.views_per_process=2",
                     "distributed.check_every=1")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "leaked semaphore" not in result.stderr  # tqdm's lock across processes, left by leave()
        sent = re.search(r"(\d+) bytes all-reduced per step", result.stdout)
        assert sent and int(sent.group(1)) > 0, result.stdout[-2000:]  # the gradients and the metrics, together
        states.append(load_checkpoint(out / "ckpt" / "step_12.pt", map_location="cpu"))
    a, b = (flat_tensors([state["blocks"], state["decoder"]]) for state in states)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    folder = RunFolder(tmp_path / "a")  # the metrics ride with the gradients: summed over both, anchors after growth
    (logged, wrong), *own = (read_log(path) for path in (folder.train_log, folder.rank_log(0), folder.rank_log(1)))
    assert not wrong and not any(dropped for _, dropped in own)
    ranks = [{row["step"]: row for row in entries} for entries, _ in own]
    for row in logged:
        local = [ranks[r][row["step"]] for r in (0, 1)]
        assert row["loss"] == pytest.approx((local[0]["loss"] + local[1]["loss"]) / 2, rel=1e-5)
        assert row["num_anchors"] == local[0]["num_anchors"] == local[1]["num_anchors"]
    assert len(logged) == 12 and len({row["num_anchors"] for row in logged}) > 1  # grown within the twelve steps
    record = states[0]["view_work"]
    assert record["recorded"] == 12 and all(torch.equal(record[k], states[1]["view_work"][k]) for k in record
                                            if k != "recorded")
    train = len(load_scene(load_config(str(tmp_path / "a" / "config.yaml")).data, images=False).train)
    assert len(set(record["views"].tolist())) == train and (record["work"] > 0).all()  # every view has its pairs
    deal = WorkDeal(sorted(set(record["views"].tolist())), [1.0] * train, prefetch=4, per_process=2)
    deal.load_state_dict(record)
    assert deal.costs(13, sorted(set(record["views"].tolist()))) is not None  # the next step is dealt by the pairs
    resumed = mgs("train", "--resume", "--out", str(tmp_path / "a"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
