"""Partition: contraction, cells, margins, camera assignment, the automatic balanced grid, file and map."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from momentum_gs.config import DataConfig
from momentum_gs.data.camera import Camera
from momentum_gs.data.scene import SceneData, load_scene
from momentum_gs.errors import UserError
from momentum_gs.partition import (Partition, auto_partition, contract, draw_partition, estimate_up, make_partition,
                                   quantile_cuts, uncontract, up_rotation)
from momentum_gs.partition.run import partition_main
from tests.helpers.survey import camera, ground_points, lawnmower_scene, scene_of

BOX = (np.array([-10.0, 0.0, 5.0]), np.array([30.0, 20.0, 15.0]))


# --- contraction ---------------------------------------------------------------------------------------------

def test_contract_maps_the_box_to_the_middle_half():
    rng = np.random.default_rng(0)
    inside = rng.uniform(BOX[0], BOX[1], (1000, 3))
    u = contract(inside, *BOX)
    assert u.min() >= 0.25 and u.max() <= 0.75
    np.testing.assert_allclose(contract(np.stack(BOX), *BOX), [[0.25] * 3, [0.75] * 3])
    np.testing.assert_allclose(contract(0.5 * (BOX[0] + BOX[1])[None], *BOX), [[0.5] * 3])
    ut = contract(torch.from_numpy(inside), *BOX)
    assert isinstance(ut, torch.Tensor) and torch.allclose(ut, torch.from_numpy(u))


def test_contract_is_monotone_continuous_and_squashes_far_points_into_the_margin():
    t = np.linspace(-1e4, 1e4, 200_001)
    line = np.column_stack([t, np.full_like(t, 10.0), np.full_like(t, 10.0)])
    u = contract(line, *BOX)
    assert np.all(np.diff(u[:, 0]) > 0)  # strictly monotone along the axis
    lipschitz = 0.5 / (BOX[1][0] - BOX[0][0])  # the slope inside the box; it only falls outside
    assert np.abs(np.diff(u, axis=0)).max() <= lipschitz * (t[1] - t[0]) * (1 + 1e-9)  # no jump at the box edge
    far = contract(np.array([[1e6, 10.0, 10.0], [-1e6, 10.0, 10.0], [1e6, -1e6, 1e6]]), *BOX)
    assert np.all((far > 0) & (far < 1)) and far[0, 0] > 0.75 and far[1, 0] < 0.25
    rng = np.random.default_rng(1)
    pts = rng.normal(0, 200, (500, 3))
    np.testing.assert_allclose(uncontract(contract(pts, *BOX), *BOX), pts, rtol=1e-6, atol=1e-6)


# --- cells and points ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def survey() -> SceneData:
    return lawnmower_scene()


@pytest.fixture(scope="module")
def grid_partition(survey) -> Partition:
    return make_partition(survey, [-5.0, -5.0, -1.0], [155.0, 115.0, 45.0], (2, 2, 1), margin=0.1)


def test_every_point_is_in_exactly_one_cell_and_block_of_agrees(grid_partition, survey):
    p = grid_partition
    assert p.num_blocks == 4 and p.point_block.shape == (len(survey.points),)
    assert p.point_block.min() >= 0 and p.point_block.max() < 4
    np.testing.assert_array_equal(p.block_of(survey.points), p.point_block)
    on_gpu_path = p.block_of(torch.from_numpy(survey.points))
    assert isinstance(on_gpu_path, torch.Tensor)
    np.testing.assert_array_equal(on_gpu_path.numpy(), p.point_block)
    u = p.contract(survey.points)
    for b in range(p.num_blocks):  # the half-open cell bounds say the same thing
        lo, hi = p.cell_bounds(b)
        np.testing.assert_array_equal(np.all((u >= lo) & (u < hi), axis=1), p.point_block == b)


def test_blocks_start_from_their_cell_plus_a_margin(grid_partition, survey):
    p = grid_partition
    u = p.contract(survey.points)
    for b in range(p.num_blocks):
        pts = p.block_points[b]
        assert set(np.flatnonzero(p.point_block == b)) <= set(pts)
        assert len(pts) < len(survey.points)  # not the whole scene
        lo, hi = p.cell_bounds(b)
        pad = p.margin * (hi - lo)
        assert np.all((u[pts] >= lo - pad - 1e-12) & (u[pts] <= hi + pad + 1e-12))
        assert len(pts) > np.sum(p.point_block == b)  # the margin adds the neighbours' border points


# --- cameras -------------------------------------------------------------------------------------------------

def two_halves(cameras: list[Camera]) -> Partition:
    """Ground points on [0, 100] × [0, 50], cut at x = 50 (box = the ground, cells 2 × 1 × 1)."""
    scene = scene_of(cameras, ground_points([0, 0], [100, 50], 5000))
    return make_partition(scene, [0.0, 0.0, -1.0], [100.0, 50.0, 40.0], (2, 1, 1), validate=False)


def test_a_camera_centred_in_a_cell_belongs_to_it():
    p = two_halves([camera([75, 25, 30], 90.0, 89.0), camera([25, 25, 30], 0.0, 89.0)])
    assert 0 in p.block_cameras[1] and 1 in p.block_cameras[0]
    np.testing.assert_array_equal(p.camera_block, [1, 0])


def test_a_camera_outside_a_cell_belongs_to_it_when_looking_at_it_not_when_looking_away():
    towards, away = camera([20, 25, 30], 0.0, 30.0), camera([20, 25, 30], 180.0, 30.0)
    p = two_halves([towards, away])
    assert np.all(p.camera_block == 0)
    assert 0 in p.block_cameras[1] and 1 not in p.block_cameras[1]
    assert p.camera_coverage[0, 1] > 0.5 and p.camera_coverage[1, 1] < 0.05
    p = make_partition(scene_of([towards], ground_points([0, 0], [100, 50], 5000)), [0.0, 0.0, -1.0],
                       [100.0, 50.0, 40.0], (2, 1, 1), coverage_threshold=None, validate=False)
    assert len(p.block_cameras[1]) == 0 and p.criterion == "centre"  # centre-only rule


def test_occluded_content_does_not_count():
    """A wall in block 0 hides block 1's ground from a camera looking along +x."""
    rng = np.random.default_rng(0)
    wall = np.column_stack([np.full(3000, 45.0), rng.uniform(0, 50, 3000), rng.uniform(0, 60, 3000)])
    scene = scene_of([camera([20, 25, 30], 0.0, 10.0)], np.concatenate([ground_points([0, 0], [100, 50], 5000), wall]))
    p = make_partition(scene, [0.0, 0.0, -1.0], [100.0, 50.0, 40.0], (2, 1, 1), validate=False)
    assert p.camera_coverage[0, 1] < 0.1 and 0 not in p.block_cameras[1]


# --- automatic grid ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_auto_partition_balances_camera_counts(survey, n):
    p = auto_partition(survey, n)
    centred = np.bincount(p.camera_block, minlength=n)
    assert p.num_blocks == n and p.block_dim[2] == 1  # cut in the ground plane only
    assert centred.min() > 0 and centred.max() / centred.min() <= 1.5
    assert set(np.concatenate(p.block_cameras)) == set(range(len(survey.train)))
    assert max(len(b) for b in p.block_points) < len(survey.points) or n == 1


def test_balanced_cuts_beat_uniform_cells_on_an_uneven_survey():
    scene = lawnmower_scene(warp=lambda xy: np.column_stack([xy[:, 0] ** 2 / 150.0, xy[:, 1]]), seed=3)
    ratio = {}
    for balance in (True, False):
        p = auto_partition(scene, 4, np.array([0.0, 0.0, 1.0]), balance=balance, validate=False)
        centred = np.bincount(p.camera_block, minlength=4)
        ratio[balance] = centred.max() / max(centred.min(), 1)
    assert ratio[True] <= 1.5 < ratio[False]


def test_up_is_estimated_and_a_tilted_scene_gets_the_same_partition(survey):
    np.testing.assert_allclose(estimate_up(survey.train), [0, 0, 1], atol=0.02)
    a = np.radians(35.0)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    tilted_cams = []
    for cam in survey.train:
        pose = cam.world_to_cam.double().numpy().copy()
        pose[:3, :3] = pose[:3, :3] @ tilt.T  # x_world' = tilt x_world
        tilted_cams.append(Camera(cam.name, cam.width, cam.height, cam.K, torch.from_numpy(pose).float()))
    tilted = scene_of(tilted_cams, survey.points @ tilt.T)
    np.testing.assert_allclose(estimate_up(tilted.train), tilt[:, 2], atol=0.02)
    rotation, vertical = up_rotation(estimate_up(tilted.train))
    assert vertical == 2 and np.allclose(rotation @ tilt, np.eye(3), atol=0.02)
    flat, rotated = auto_partition(survey, 4), auto_partition(tilted, 4)
    assert np.mean(flat.point_block == rotated.point_block) > 0.99


def test_quantile_cuts():
    np.testing.assert_allclose(quantile_cuts(np.arange(8.0) / 10, 2), [0, 0.35, 1])
    cuts = quantile_cuts(np.array([0.1, 0.1, 0.1, 0.1, 0.2, 0.3]), 2)  # ties are never split
    assert cuts[1] == pytest.approx(0.15)
    with pytest.raises(UserError, match="cannot split"):
        quantile_cuts(np.array([0.1, 0.1, 0.2]), 3)


# --- validation, file, map -----------------------------------------------------------------------------------

def test_a_block_without_cameras_or_points_is_a_clear_error():
    scene = scene_of([camera([20, 25, 30], 180.0, 80.0)], ground_points([0, 0], [45, 50], 2000))
    with pytest.raises(UserError, match=r"block 1 \(cell 1,0,0\) has no training cameras; use fewer blocks"):
        make_partition(scene, [0.0, 0.0, -1.0], [100.0, 50.0, 40.0], (2, 1, 1))
    scene = scene_of([camera([20, 25, 30], 180.0, 80.0), camera([80, 25, 30], 0.0, 80.0)], scene.points)
    with pytest.raises(UserError, match=r"block 1 \(cell 1,0,0\) has no SfM points in its cell"):
        make_partition(scene, [0.0, 0.0, -1.0], [100.0, 50.0, 40.0], (2, 1, 1))


def test_save_load_round_trip(tmp_path, survey):
    p = auto_partition(survey, 4)
    p.save(tmp_path / "partition.npz")
    q = Partition.load(tmp_path / "partition.npz")
    assert q.block_dim == p.block_dim and q.splits == "balanced" and q.camera_names == p.camera_names
    for name in ("box_min", "box_max", "rotation", "up", "point_block", "camera_block", "camera_coverage"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    for a, b in zip(p.edges + tuple(p.block_points) + tuple(p.block_cameras),
                    q.edges + tuple(q.block_points) + tuple(q.block_cameras)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(q.block_of(survey.points), p.point_block)
    assert q.coverage_threshold == p.coverage_threshold and q.margin == p.margin
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed
    with pytest.raises(UserError, match="other training cameras"):
        q.check_scene(len(survey.points), q.camera_names[:-1])


def test_missing_or_corrupt_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Partition.load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(UserError, match="corrupt"):
        Partition.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(UserError, match="corrupt or not a partition"):
        Partition.load(tmp_path / "other.npz")


def test_map_is_written_with_the_expected_size_and_colours(tmp_path, survey):
    p = auto_partition(survey, 4)
    draw_partition(p, survey, tmp_path / "map.png", size=400)
    image = cv2.imread(str(tmp_path / "map.png"))
    assert image.shape[1] == 400 and image.shape[0] > 400
    colours = np.unique(image[:400].reshape(-1, 3), axis=0)
    assert len(colours) > 20
    hues = cv2.cvtColor(image[:400], cv2.COLOR_BGR2HSV)
    saturated = hues[..., 1] > 80
    assert len(np.unique(hues[..., 0][saturated] // 10)) >= 4  # the four blocks' colours


def test_partition_main_on_the_tiny_synthetic_scene(tiny_scene, tmp_path):
    summary = partition_main(DataConfig(path=str(tiny_scene)), tmp_path / "partition.npz", num_blocks=2)
    assert "block 1" in summary and (tmp_path / "partition.png").is_file()
    scene = load_scene(DataConfig(path=str(tiny_scene)))
    p = Partition.load(tmp_path / "partition.npz")
    p.check_scene(len(scene.points), [cam.name for cam in scene.train])
    np.testing.assert_allclose(p.up, [0, 0, 1])
    assert p.num_blocks == 2 and set(np.concatenate(p.block_cameras)) == set(range(len(scene.train)))
    assert sorted(np.bincount(p.camera_block, minlength=2)) == [len(scene.train) // 2] * 2


def test_bad_requests_are_user_errors(survey):
    with pytest.raises(UserError, match="makes 4 blocks, not 8"):
        auto_partition(survey, 8, grid=(2, 2, 1))
    with pytest.raises(UserError, match="number of blocks"):
        auto_partition(survey)
    with pytest.raises(UserError, match="max corner"):
        auto_partition(survey, 2, box=((0, 0, 0), (10, 0, 5)))
    with pytest.raises(UserError, match="cannot split"):
        auto_partition(survey, 500)  # more blocks than distinct camera positions along an axis
    p = auto_partition(survey, 2, grid=(2, 1, 1), coverage_threshold=1.0)  # >= 1: the centre-only rule
    assert p.criterion == "centre" and p.camera_coverage is None
    assert p.block_of([[0.0, 0.0, 0.0], [150.0, 0.0, 0.0]]).tolist() == [0, 1]
    assert p.block_of(np.zeros((2, 5, 3))).shape == (2, 5)


def test_map_rings_name_the_blocks_a_camera_joins_by_coverage_and_the_scale_bar_is_round(survey):
    from momentum_gs.draw import scale_bar
    from momentum_gs.partition.draw import coverage_blocks

    p = auto_partition(survey, 4)
    extra = coverage_blocks(p, len(survey.train))
    for c, others in enumerate(extra):
        joined = sorted(b for b, cams in enumerate(p.block_cameras) if c in set(np.asarray(cams).tolist()))
        assert others == [b for b in joined if b != p.camera_block[c]]
    assert any(extra) and not all(extra)  # some cameras train a second block, some only their own
    for pixels_per_unit, size in ((26.6, 1000), (0.37, 800), (1234.0, 400)):
        units, length = scale_bar(pixels_per_unit, size)
        mantissa = units / 10 ** np.floor(np.log10(units))
        assert round(mantissa, 6) in (1, 2, 5) and length == round(units * pixels_per_unit)
        assert size / 12.5 <= length <= size / 5 + 1  # the largest round length up to a fifth


def test_partitioning_reads_no_image(tiny_scene, tmp_path):
    """The default rule needs poses and points only: no image is opened and no image cache is made, even at
    another size (which would otherwise build images_2/)."""
    import shutil

    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene, scene)
    for image in (scene / "train" / "images").iterdir():
        image.write_bytes(b"not an image")  # any read would fail
    summary = partition_main(DataConfig(path=str(scene), downsample=2), tmp_path / "partition.npz", num_blocks=2)
    assert "block 1" in summary and (tmp_path / "partition.png").is_file()
    assert sorted(p.name for p in (scene / "train").iterdir()) == ["images", "sparse"]


def test_a_partition_file_with_an_index_out_of_range_is_refused(tmp_path, survey):
    """A file whose lists index past the points or the cameras, or hold a negative index, is refused when it
    is read, naming the list and the value, instead of an IndexError mid-training or a silent wrong block."""
    good = tmp_path / "partition.npz"
    auto_partition(survey, 4).save(good)
    with np.load(good, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    points, cameras = len(arrays["point_block"]), len(json.loads(str(arrays["meta"]))["camera_names"])
    cases = {"block_points_flat": (-1, points, r"block_points\[\d\] holds (-1|\d+), outside \[0, "),
             "block_cameras_flat": (-3, cameras, r"block_cameras\[\d\] holds (-3|\d+), outside \[0, "),
             "point_block": (-1, 4, r"point_block holds (-1|4), outside \[0, 4\)"),
             "camera_block": (-2, 4, r"camera_block holds (-2|4), outside \[0, 4\)")}
    for name, (negative, past, message) in cases.items():
        for value in (negative, past):
            changed = dict(arrays, **{name: arrays[name].copy()})
            changed[name][len(changed[name]) // 2] = value
            path = tmp_path / f"{name}_{value}.npz"
            np.savez(path, **changed)
            with pytest.raises(UserError, match=f"partition file .* is invalid: {message}"):
                Partition.load(path)
