"""Several views a step, paired by their cost (``distributed.balance_views``): each epoch still sees every view once,
a step's views cost about the same, the walk is a pure function of the schedule, and a view's cost is what it sees."""

import numpy as np
import pytest
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.scene import SceneData
from momentum_gs.train.scheduler import BlockScheduler, balanced_walk
from momentum_gs.train.views import view_costs


def _steps(plans: list, count: int) -> list[list[int]]:
    return [[plan[s][0][1] for plan in plans] for s in range(count)]


@pytest.mark.parametrize("views", [2, 3])
def test_a_balanced_walk_sees_every_view_once_an_epoch_with_steps_of_like_cost(views):
    rng = np.random.default_rng(0)
    costs = list(rng.uniform(100, 200, 15))
    scheduler, cameras = BlockScheduler(1, 1), [list(range(40, 55))]
    epochs = 12
    count = epochs * 15 // views
    balanced = _steps([scheduler.view_plan(0, count, cameras, seed=4, views=views, member=m, costs=[costs])
                       for m in range(views)], count)
    plain = _steps([scheduler.view_plan(0, count, cameras, seed=4, views=views, member=m) for m in range(views)],
                   count)
    walk = [v for step in balanced for v in step]
    for epoch in range(epochs):
        assert sorted(walk[epoch * 15:(epoch + 1) * 15]) == cameras[0]  # every view once an epoch
    assert all(len(set(step)) == views for step in balanced)  # never one view twice in a step, epochs' seams too

    def wait(steps):  # what the processes wait for: the costliest view of a step against the step's mean
        return np.mean([max(costs[v - 40] for v in s) - np.mean([costs[v - 40] for v in s]) for s in steps])

    assert wait(balanced) < 0.6 * wait(plain)
    assert len({tuple(sorted(s)) for s in balanced}) > 15 // views  # not the same steps every epoch


@pytest.mark.parametrize("head", [0, 1, 2])
def test_a_walk_is_a_pure_function_of_its_seed_and_begins_and_ends_in_the_middle(head):
    costs = [float(c) for c in range(11)]  # view i costs i
    walk = balanced_walk(costs, 3, head, np.random.default_rng([7, 0, 1]))
    assert sorted(walk) == list(range(11))
    assert np.array_equal(walk, balanced_walk(costs, 3, head, np.random.default_rng([7, 0, 1])))
    tail = (11 - head) % 3
    assert all(v < 11 // 2 for v in walk[:head])  # the head from the cheaper half
    assert all(v >= 11 // 2 for v in walk[len(walk) - tail:])  # the tail from the costlier half
    middle = walk[head:len(walk) - tail].reshape(-1, 3)
    assert max(step.max() - step.min() for step in middle) <= 2 + 2 * 2  # neighbours, each moved by the jitter


def test_a_resumed_balanced_run_takes_up_the_same_walk():
    scheduler, cameras, costs = BlockScheduler(1, 1), [list(range(9))], [[float(9 - i) for i in range(9)]]
    whole = [scheduler.view_plan(0, 20, cameras, seed=2, views=2, member=m, costs=costs) for m in range(2)]
    later = [scheduler.view_plan(11, 20, cameras, seed=2, views=2, member=m, costs=costs) for m in range(2)]
    assert [w[11:] for w in whole] == later


def _camera(name: str, forward: float) -> Camera:
    """A 100×100 camera at the origin looking along +z (``forward`` 1) or −z (−1)."""
    world_to_cam = torch.diag(torch.tensor([1.0, forward, forward, 1.0]))
    K = torch.tensor([[50.0, 0, 50], [0, 50.0, 50], [0, 0, 1]])
    return Camera(name, 100, 100, K, world_to_cam)


def test_a_views_cost_is_the_sfm_points_it_sees():
    rng = np.random.default_rng(1)
    ahead = np.column_stack([rng.uniform(-0.9, 0.9, (30, 2)), np.full(30, 1.0)])  # inside the view at z = 1
    aside = np.column_stack([rng.uniform(3, 4, (20, 2)), np.full(20, 1.0)])  # in front, outside the image
    behind = ahead * [1, 1, -1]
    points = np.concatenate([ahead, aside, behind, behind[:5]]).astype(np.float32)
    scene = SceneData("s", None, [_camera("a", 1.0), _camera("b", -1.0)], [], points, np.zeros_like(points, np.uint8))
    assert view_costs(scene, [0, 1]) == [30.0, 35.0]
    assert view_costs(scene, [1]) == [35.0]
