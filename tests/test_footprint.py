"""The ground the photos see (data/footprint.py), and what the exports and maps take from it: Gaussians beyond it
dropped, a map over it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentum_gs.data.footprint import REACH, ground_of, ground_points
from momentum_gs.data.map_frame import own_frame
from momentum_gs.export.floaters import SIZE, Views, capped, drop_floaters, kept_by_views, largest_size
from momentum_gs.maps.make import seen_ground
from momentum_gs.maps.ortho import MapGrid
from tests.helpers.generated_city import look_at
from tests.helpers.tiles import random_gaussians

UP = np.array([0.0, 0.0, 1.0])
GROUND = np.array([[x, y, 0.0] for x in (-5.0, 0.0, 5.0) for y in (-5.0, 0.0, 5.0)])  # SfM points at z = 0


def test_a_nadir_photo_sees_its_image_cast_onto_the_ground():
    camera = look_at([3.0, -2.0, 50.0], [3.0, -2.0, 0.0], 400, 300, 200.0)  # 50 m up, 400 px over 200 px focal
    found = ground_points([camera], GROUND, UP)
    assert found.shape == (5, 3) and np.allclose(found[:, 2], 0.0, atol=1e-4)
    assert np.allclose(found[0], [3.0, -2.0, 0.0], atol=1e-4)  # the camera's foot
    lo, hi = found[:, :2].min(0), found[:, :2].max(0)
    assert np.allclose(hi - lo, [100.0, 75.0], atol=1e-3)  # 50 m × 400 / 200 across, 50 × 300 / 200 along
    widened = ground_points([camera], GROUND, UP, margin=0.1)
    assert np.allclose(np.ptp(widened[:, :2], 0), [120.0, 90.0], atol=1e-3)


def test_a_photo_towards_the_horizon_is_cut_at_its_reach():
    height = 30.0
    camera = look_at([0.0, 0.0, height], [100.0, 0.0, height], 400, 300, 200.0)  # level: half its rays look up
    found = ground_points([camera], GROUND, UP)
    reach = np.linalg.norm(found[:, :2], axis=1)
    assert reach.max() == pytest.approx(REACH * height, rel=1e-5)
    assert (found[1:, 0] > 0).all()  # all ahead of the camera
    # a camera under the ground sees none of it; with no SfM points there is no ground
    assert ground_points([look_at([0, 0, -5.0], [0, 0, -10.0], 40, 30, 20.0)], GROUND, UP) is None
    assert ground_points([camera], np.zeros((0, 3)), UP) is None


def test_under_the_ground_beyond_what_the_photos_see_is_dropped_where_z_is_up():
    """An oblique photo sees, through the ground, a cone widening below it: a Gaussian there, under the ground
    and beyond its footprint, stays in front of the camera and inside its image."""
    camera = look_at([0.0, 0.0, 40.0], [40.0, 0.0, 0.0], 400, 300, 300.0)  # 45° down towards +x
    found = ground_points([camera], GROUND, UP, 0.05)
    beyond = [found[:, 0].max() + 30.0, 0.0, -30.0]  # 30 m under the ground, 30 m past the far edge
    on = [40.0, 0.0, 0.0]  # where it looks, on the ground
    means = torch.tensor([beyond, on], dtype=torch.float32)
    assert kept_by_views(means, [camera]).all()  # both in the photo
    assert kept_by_views(means, [camera], GROUND, z_up=True).tolist() == [False, True]


def test_the_map_knows_which_of_its_pixels_a_photo_sees():
    camera = look_at([10.0, 20.0, 50.0], [10.0, 20.0, 0.0], 400, 300, 200.0)  # sees 100 × 75 m around (10, 20)
    frame = own_frame(UP, "up")
    grid = MapGrid(-100.0, 100.0, 0.5, 400, 400)  # x -100..100, y 100..-100
    seen = seen_ground(grid, frame, ground_of([camera], GROUND, UP))
    assert seen.sum() == pytest.approx(100 * 75 / 0.25, rel=0.02)
    rows, cols = np.nonzero(seen)
    assert -100 + 0.5 * cols.mean() == pytest.approx(10.0, abs=0.5)
    assert 100 - 0.5 * rows.mean() == pytest.approx(20.0, abs=0.5)
    assert seen_ground(grid, frame, ground_of([camera], np.zeros((0, 3)), UP)) is None


def test_an_export_caps_the_sizes_over_the_ground_it_keeps():
    cameras = [look_at([x, 0.0, 50.0], [x, 0.0, 0.0], 400, 300, 200.0) for x in (-20.0, 20.0)]
    views = Views(cameras, GROUND, z_up=True)
    seen = ground_points(cameras, GROUND, UP)
    size = largest_size(views)
    assert size == pytest.approx(SIZE * np.ptp(seen[:, :2], 0).max() / 2) and 5.0 < size < 20.0  # 140 m across
    gaussians = random_gaussians(3, degree=0)
    gaussians.means = torch.zeros(3, 3)
    gaussians.scales = torch.tensor([[0.5, 0.5, 0.1], [3 * size, 0.5, 0.1], [2 * size, 2 * size, size]])
    kept, dropped = drop_floaters(gaussians, views)
    assert dropped == 0 and torch.equal(kept.scales[0], gaussians.scales[0])
    assert kept.scales.max() == pytest.approx(size) and kept.scales[1, 1] == 0.5
    assert torch.equal(kept.means, gaussians.means) and torch.equal(kept.opacities, gaussians.opacities)
    # no ground in the scene's own frame: nothing capped
    assert largest_size(Views(cameras, GROUND, z_up=False)) is None
    assert torch.equal(capped(gaussians, Views(cameras, GROUND, z_up=False)).scales, gaussians.scales)


def test_a_valley_the_photos_look_into_is_kept():
    """Most SfM points on a plateau at z = 0, a fifth in a valley 10 m lower: an oblique photo's far rays reach the
    valley floor beyond where they would meet the plateau's height, and what lies there is kept."""
    camera = look_at([0.0, 0.0, 50.0], [50.0, 0.0, 0.0], 400, 300, 300.0)  # 45° down towards +x
    plateau = np.array([[x, y, 0.0] for x in np.linspace(-20, 60, 9) for y in np.linspace(-20, 20, 10)])
    valley = np.array([[x, 0.0, -10.0] for x in np.linspace(120, 180, 23)])
    points = np.concatenate([plateau, valley])
    ray = (camera.cam_to_world[:3, :3].double() @ torch.linalg.solve(camera.K.double(),
                                                                       torch.tensor([200.0, 0.0, 1.0],
                                                                                    dtype=torch.float64)))
    floor = camera.center.double() + ray * (-10.0 - 50.0) / ray[2]  # the image's top edge, on the valley floor
    assert floor[0] > ground_points([camera], points, UP, 0.05)[:, 0].max()  # beyond the plateau's footprint
    assert kept_by_views(floor[None].float(), [camera], points, z_up=True).all()


def test_a_facade_a_low_photo_looks_at_is_kept():
    """A photo 10 m up looking out nearly level at a facade 60 m away: its rays reach the ground's cut (four flight
    heights) before the facade, whose SfM points keep it."""
    camera = look_at([0.0, 0.0, 10.0], [60.0, 0.0, 5.0], 400, 300, 300.0)
    ground = np.array([[x, y, 0.0] for x in np.linspace(5, 40, 8) for y in np.linspace(-10, 10, 5)])
    facade = np.array([[60.0, y, z] for y in np.linspace(-10, 10, 5) for z in np.linspace(0, 20, 5)])
    points = np.concatenate([ground, facade])
    on_it = torch.tensor([[60.0, 2.0, 8.0]])
    assert ground_points([camera], points, UP, 0.05, 0.01)[:, 0].max() < 60.0  # beyond the rays' reach
    assert kept_by_views(on_it, [camera], points, z_up=True).all()
    assert not kept_by_views(torch.tensor([[150.0, 2.0, 8.0]]), [camera], points, z_up=True).any()
