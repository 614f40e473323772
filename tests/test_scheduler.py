"""Block scheduling: which k of n blocks are active, and how they are spread over processes."""

from collections import Counter

import pytest

from momentum_gs.train.scheduler import BlockScheduler


def test_round_robin_cycles_through_all_blocks_equally():
    sched = BlockScheduler(5, 2, interval=3)
    assert sched.active(1) == sched.active(3) == [0, 1] and sched.active(4) == [2, 3]
    assert sched.active(7) == [0, 4]  # wraps around
    assert sched.changes_at(1) and sched.changes_at(4) and not sched.changes_at(5)
    assert sched.cycle_rounds == 5
    counts = Counter(b for r in range(sched.cycle_rounds) for b in sched.active(r * 3 + 1))
    assert counts == {b: 2 for b in range(5)}
    eight = BlockScheduler(8, 4, interval=500)
    assert eight.active(500) == [0, 1, 2, 3] and eight.active(501) == [4, 5, 6, 7]
    assert eight.active(1001) == [0, 1, 2, 3]
    assert BlockScheduler(3, 3).active(12345) == [0, 1, 2]


def test_random_policy_is_reproducible_and_a_pure_function_of_step():
    sched = BlockScheduler(8, 3, policy="random", interval=10, seed=4)
    sets = [sched.active(s) for s in range(1, 1001)]
    assert all(len(set(a)) == 3 and a == sorted(a) and all(0 <= b < 8 for b in a) for a in sets)
    assert all(sets[i] == sets[i - i % 10] for i in range(len(sets)))  # constant within a round
    again = BlockScheduler(8, 3, policy="random", interval=10, seed=4)
    assert [again.active(s) for s in range(1000, 0, -1)] == sets[::-1]  # any order of queries
    assert len({tuple(a) for a in sets}) > 10  # it does change between rounds
    other_seed = BlockScheduler(8, 3, policy="random", interval=10, seed=5)
    assert [other_seed.active(s) for s in range(1, 1001)] != sets
    counts = Counter(b for a in sets[::10] for b in a)
    assert set(counts) == set(range(8))


@pytest.mark.parametrize("k, world_size", [(4, 4), (7, 3), (8, 2), (5, 1), (3, 3)])
def test_assignment_covers_every_active_block_exactly_once(k, world_size):
    sched = BlockScheduler(9, k, interval=1, world_size=world_size)
    for step in (1, 2, 3):
        active = sched.active(step)
        parts = [sched.blocks_for(step, world_size, rank) for rank in range(world_size)]
        assert sorted(b for part in parts for b in part) == active
        sizes = [len(part) for part in parts]
        assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        assert sizes.count(k // world_size + 1) == k % world_size


def test_view_plan_walks_each_blocks_views_once_per_epoch_whoever_trains_it():
    sched = BlockScheduler(3, 2, interval=4, world_size=2)
    cameras = [[10, 11, 12], [20, 21], [30, 31, 32, 33]]
    whole = sched.view_plan(0, 60, cameras, seed=1)
    walked = {b: [v for step in whole for blk, v in step if blk == b] for b in range(3)}
    for b, views in walked.items():
        assert len(views) == sched.counts_before(60)[b]
        full = len(views) // len(cameras[b]) * len(cameras[b])
        for epoch in range(0, full, len(cameras[b])):  # every view once per epoch, in a new order
            assert sorted(views[epoch:epoch + len(cameras[b])]) == cameras[b]
    assert len({tuple(walked[2][e:e + 4]) for e in range(0, 24, 4)}) > 1
    ranks = [sched.view_plan(0, 60, cameras, seed=1, world_size=2, rank=r) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(step) for step in whole]
    assert sched.view_plan(25, 60, cameras, seed=1) == whole[25:]  # a resumed run sees the same views
    assert sched.view_plan(0, 60, cameras, seed=2) != whole


def test_invalid_settings_are_refused_with_clear_text():
    with pytest.raises(ValueError, match="between 1 and n"):
        BlockScheduler(4, 5)
    with pytest.raises(ValueError, match="between 1 and n"):
        BlockScheduler(4, 0)
    with pytest.raises(ValueError, match="processes"):
        BlockScheduler(8, 2, world_size=4)
    with pytest.raises(ValueError, match="processes"):
        BlockScheduler.assign([0, 1], world_size=3, rank=0)
    with pytest.raises(ValueError, match="rank"):
        BlockScheduler.assign([0, 1], world_size=2, rank=2)
    with pytest.raises(ValueError, match="policy"):
        BlockScheduler(4, 2, policy="shuffle")
    with pytest.raises(ValueError, match="interval"):
        BlockScheduler(4, 2, interval=0)
