"""The synthetic aerial city: determinism, COLMAP round trip, image/pose consistency, ray casting."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from momentum_gs.data.colmap.folder import read_model
from momentum_gs.data.colmap.model import qvec_to_rotmat, rotmat_to_qvec
from momentum_gs.data.synthetic import (PRESETS, city_of, flight_path, intrinsics, look_at_pose,
                                        make_synthetic_scene, scene_bounds)
from momentum_gs.data.synthetic.city import (BOX_BUILDING, GRAIN, SURFACE_GRAIN, box_albedo, ground_albedo,
                                             make_city)
from momentum_gs.data.synthetic.render import cast_camera, render
from momentum_gs.errors import UserError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_synthetic_scene(tmp_path_factory.mktemp("tiny"), "tiny", seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def _image(root: Path, split: str, name: str) -> np.ndarray:
    return cv2.imread(str(root / split / "images" / name))[..., ::-1].astype(np.float64)


def _pose(image) -> tuple[np.ndarray, np.ndarray]:
    return qvec_to_rotmat(image.qvec), image.tvec


def test_layout_and_counts(tiny):
    p = PRESETS["tiny"]
    train, val = read_model(tiny / "train" / "sparse" / "0"), read_model(tiny / "val" / "sparse" / "0")
    assert len(train.images) == p.n_train and len(val.images) == p.n_val
    for split, model in (("train", train), ("val", val)):
        names = sorted(im.name for im in model.images.values())
        assert names == sorted(f.name for f in (tiny / split / "images").glob("*.png"))
        assert _image(tiny, split, names[0]).shape == (p.height, p.width, 3)
    assert len(train.points) == p.n_points + round(p.outlier_fraction * p.n_points)
    np.testing.assert_allclose(train.cameras[1].params, intrinsics(p)[[0, 1, 0, 1], [0, 1, 2, 2]])
    bounds = scene_bounds(tiny)
    assert bounds.shape == (2, 3) and bounds[0, 2] == 0.0 and bounds[1, 2] > 5.0 / p.metres_per_unit


def test_same_seed_identical_other_seed_different(tiny, tmp_path):
    again = _files(make_synthetic_scene(tmp_path / "again", "tiny", seed=0))
    assert again == _files(tiny)
    other = _files(make_synthetic_scene(tmp_path / "other", "tiny", seed=1))
    assert other["train/images/000000.png"] != again["train/images/000000.png"]
    assert other["train/sparse/0/points3D.bin"] != again["train/sparse/0/points3D.bin"]


def test_poses_read_back(tiny):
    p = PRESETS["tiny"]
    city = make_city(np.random.default_rng([0, 0]), p.blocks, max_height=min(35.0, 0.65 * p.altitude))
    poses = flight_path(np.random.default_rng([0, 1]), city, p)
    images = {**{im.name: im for im in read_model(tiny / "train" / "sparse" / "0").images.values()},
              **{im.name: im for im in read_model(tiny / "val" / "sparse" / "0").images.values()}}
    assert len(images) == len(poses)
    for i, world_to_cam in enumerate(poses):
        R, t = _pose(images[f"{i:06d}.png"])
        t = t * p.metres_per_unit  # the model is written in SfM-like units
        np.testing.assert_allclose(R, world_to_cam[:3, :3], atol=1e-12)
        np.testing.assert_allclose(t, world_to_cam[:3, 3], atol=1e-9)
        centre, forward = -R.T @ t, R[2]
        assert 40.0 < centre[2] < 50.0  # the preset's 45 m altitude, ±3 %
        assert np.degrees(np.arcsin(-forward[2])) == pytest.approx(47.5, abs=12.6)  # pitch 35°-60°


def test_held_out_depths_land_on_the_ground_or_above(tiny):
    """Each held-out view's depth map, back-projected with its COLMAP pose, gives points on or above the ground
    (z = 0), some of them on it: camera-space z in the model's units, not the distance along the ray."""
    from momentum_gs.data.colmap.model import qvec_to_rotmat

    p = PRESETS["tiny"]
    val = read_model(tiny / "val" / "sparse" / "0")
    K = intrinsics(p)
    for image in val.images.values():
        depth = np.load(tiny / "val" / "depths" / f"{Path(image.name).stem}.npy", allow_pickle=False)
        assert depth.shape == (p.height, p.width) and depth.dtype == np.float32
        seen = np.isfinite(depth)
        assert seen.mean() > 0.5 and (depth[seen] > 0).all()
        R, t = qvec_to_rotmat(image.qvec), image.tvec
        jj, ii = np.meshgrid(np.arange(p.width) + 0.5, np.arange(p.height) + 0.5)
        rays = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1)
        points = (rays[seen] * depth[seen][:, None] - t) @ R  # camera → world: Rᵀ (x − t)
        heights = points[:, 2] * p.metres_per_unit
        # pixel means blend the ground with a wall at edges, so allow a little below 0 on a few pixels
        assert np.quantile(heights, 0.01) > -0.3 and np.abs(np.quantile(heights, 0.05)) < 0.3, heights.min()
    assert sorted(f.stem for f in (tiny / "val" / "depths").glob("*.npy")) == sorted(
        Path(im.name).stem for im in val.images.values())


def test_rotmat_to_qvec_round_trip():
    rng = np.random.default_rng(0)
    poses = [look_at_pose(np.zeros(3), yaw, pitch) for yaw in (0.0, np.pi / 2, np.pi, -2.0)
             for pitch in (0.0, 0.6, np.pi / 2)]
    rotations = [pose[:3, :3] for pose in poses] + [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        rotations.append(q * np.sign(np.linalg.det(q)))
    for R in rotations:
        q = rotmat_to_qvec(R)
        assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(qvec_to_rotmat(q), R, atol=1e-12)


def test_points_project_onto_their_colour(tiny):
    """Each training view's observed points reproject to their keypoints, onto pixels of their colour."""
    model = read_model(tiny / "train" / "sparse" / "0")
    K, images = intrinsics(PRESETS["tiny"]), sorted(model.images.values(), key=lambda im: im.id)
    reprojection, colour, wrong = [], [], []
    for k, image in enumerate(images):
        rows = image.point3d_ids
        assert len(rows) > 0 and rows.min() >= 0
        for R, t, out in ((*_pose(image), reprojection), (*_pose(images[k - 1]), wrong)):
            cam = model.points[rows] @ R.T + t
            uv = cam[:, :2] / cam[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
            out.append(np.linalg.norm(uv - image.xys, axis=1))
        pix = _image(tiny, "train", image.name)[image.xys[:, 1].astype(int), image.xys[:, 0].astype(int)]
        colour.append(np.abs(pix - model.colors[rows]).mean(axis=1))
    assert np.median(np.concatenate(reprojection)) < 0.5  # pixels; noise is 0.2 % of the city
    assert np.median(np.concatenate(wrong)) > 5.0  # another view's pose does not fit
    assert np.median(np.concatenate(colour)) < 12.0  # 8-bit levels (the image is antialiased)


def test_val_views_are_new_positions(tiny):
    centres = {}
    for split in ("train", "val"):
        model = read_model(tiny / split / "sparse" / "0")
        centres[split] = np.array([-qvec_to_rotmat(im.qvec).T @ im.tvec for im in model.images.values()])
        names = [im.name for im in model.images.values()]
        centres[split + "_img"] = np.stack([_image(tiny, split, n) for n in names])
    gaps = np.linalg.norm(centres["val"][:, None] - centres["train"][None], axis=2)
    assert gaps.min() > 2.0  # metres: between training positions, not on them
    diff = np.abs(centres["val_img"][:, None] - centres["train_img"][None]).mean(axis=(2, 3, 4))
    assert diff.min() > 5.0


def test_vary_exposure_changes_brightness_only(tiny, tmp_path):
    varied = make_synthetic_scene(tmp_path / "exp", "tiny", seed=0, vary_exposure=True)
    plain_files, varied_files = _files(tiny), _files(varied)
    for split in ("train", "val"):
        for stem in ("cameras", "images", "points3D"):
            key = f"{split}/sparse/0/{stem}.bin"
            assert plain_files[key] == varied_files[key]
    ratios = []
    for name in sorted(f.name for f in (tiny / "train" / "images").glob("*.png")):
        ratios.append(_image(varied, "train", name).mean() / _image(tiny, "train", name).mean())
    ratios = np.array(ratios)
    assert np.all((ratios > 0.75) & (ratios < 1.25)) and ratios.std() > 0.03


def test_ground_grain_varies_the_ground_from_square_to_square_and_nothing_else(tiny, tmp_path):
    """``ground_grain``: the ground's albedo changes from one 15 cm square to the next, as a photo's pixel sees gravel
    or asphalt; the city, the poses and the roofs stay those of the scene without it."""
    grained = make_synthetic_scene(tmp_path / "grain", "tiny", seed=0, ground_grain=0.3)
    city, grain_city = city_of(tiny)[0], city_of(grained)[0]
    assert grain_city.ground_grain == 0.3 and np.array_equal(city.box_max, grain_city.box_max)
    x = (np.arange(133) - 66) * GRAIN + GRAIN / 2  # 20 m along y = 0.3 m, a square each
    xy = np.column_stack([x, np.full(x.size, 0.3)])
    step = lambda c: np.median(np.abs(np.diff(ground_albedo(c, xy).mean(1))))  # noqa: E731 the next square
    assert step(city) < 0.005 < 0.05 < step(grain_city)
    assert np.array_equal(ground_albedo(grain_city, xy), ground_albedo(grain_city, xy))  # no state: the same again
    files, grained_files = _files(tiny), _files(grained)
    assert all(files[f"{split}/sparse/0/images.bin"] == grained_files[f"{split}/sparse/0/images.bin"]
               for split in ("train", "val"))


def test_surface_grain_varies_ground_roofs_and_walls_in_their_own_planes(tiny, tmp_path):
    """``surface_grain``: the ground, the roofs and the walls each change albedo from one 50 cm square of their own
    plane to the next, and not with the depth into it; the city and the poses stay those of the scene without it."""
    grained = make_synthetic_scene(tmp_path / "grain", "tiny", seed=0, surface_grain=0.3)
    city, grain_city = city_of(tiny)[0], city_of(grained)[0]
    assert grain_city.surface_grain == 0.3 and np.array_equal(city.box_max, grain_city.box_max)
    b = int(np.flatnonzero(city.box_kind == BOX_BUILDING)[0])
    lo, hi = city.box_min[b], city.box_max[b]
    centre = lambda x: SURFACE_GRAIN * (np.floor(x / SURFACE_GRAIN) + 0.5)  # noqa: E731 of a square
    along = centre(lo[1]) + SURFACE_GRAIN * np.arange(1, int((hi[1] - lo[1]) / SURFACE_GRAIN) - 1)  # one a square
    n = along.size
    up, east = np.tile([0.0, 0.0, 1.0], (n, 1)), np.tile([1.0, 0.0, 0.0], (n, 1))
    roof = np.column_stack([np.full(n, centre(0.5 * (lo[0] + hi[0]))), along, np.full(n, hi[2])])
    wall = np.column_stack([np.full(n, hi[0]), along, np.full(n, 0.75)])  # the ground floor: no windows
    ground = np.column_stack([np.full(n, hi[0] + 0.3), along])
    idx = np.full(n, b)
    ratios = [box_albedo(grain_city, idx, roof, up) / box_albedo(city, idx, roof, up),
              box_albedo(grain_city, idx, wall, east) / box_albedo(city, idx, wall, east),
              ground_albedo(grain_city, ground) / ground_albedo(city, ground)]
    for ratio in ratios:
        assert np.allclose(ratio, ratio[:, :1]) and np.all(np.abs(ratio - 1) <= 0.3 + 1e-9)  # one gain a point
        assert np.median(np.abs(np.diff(ratio[:, 0]))) > 0.05  # and another in the next square
    assert not np.allclose(ratios[0], ratios[1])  # the wall's grain is not the roof's
    within = box_albedo(grain_city, idx, roof + [0.1, 0.1, -0.05], up) / box_albedo(city, idx, roof, up)
    np.testing.assert_allclose(within, ratios[0])  # the same square: the same gain, whatever the depth
    files, grained_files = _files(tiny), _files(grained)
    assert all(files[f"{split}/sparse/0/images.bin"] == grained_files[f"{split}/sparse/0/images.bin"]
               for split in ("train", "val"))
    assert any(files[key] != grained_files[key] for key in files if key.endswith(".png"))


def test_nadir_camera_hits_ground_and_roof_at_their_depth():
    city = make_city(np.random.default_rng(3), (2, 2))
    K = np.array([[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]])
    pix = np.array([[32.0, 24.0], [0.5, 0.5], [63.5, 47.5]])
    far_away = look_at_pose(np.array([5000.0, -3000.0, 37.0]), 0.3, np.pi / 2)
    hits, o, d = cast_camera(city, K, far_away, pix)
    assert np.all(hits.prim == 0)
    np.testing.assert_allclose(hits.t * (d @ far_away[2, :3]), 37.0)  # depth along the optical axis
    np.testing.assert_allclose((o + hits.t[:, None] * d)[:, 2], 0.0, atol=1e-9)
    b = int(np.flatnonzero(city.box_kind == BOX_BUILDING)[0])
    lo, hi = city.box_min[b], city.box_max[b]
    above = look_at_pose(np.array([lo[0] + 0.3, lo[1] + 0.3, 60.0]), 0.0, np.pi / 2)
    hits, _, _ = cast_camera(city, K, above, np.array([[32.0, 24.0]]))
    assert hits.prim[0] == b + 1 and hits.t[0] == pytest.approx(60.0 - hi[2])


def test_supersampling_averages_the_finer_image():
    city = make_city(np.random.default_rng(1), (1, 1))
    K = np.array([[20.0, 0.0, 8.0], [0.0, 20.0, 6.0], [0.0, 0.0, 1.0]])
    pose = look_at_pose(np.array([-30.0, 5.0, 40.0]), 0.2, 0.9)
    fine = render(city, np.diag([2.0, 2.0, 1.0]) @ K, pose, 32, 24, supersample=1)
    coarse = render(city, K, pose, 16, 12, supersample=2)
    np.testing.assert_allclose(coarse, fine.reshape(12, 2, 16, 2, 3).mean(axis=(1, 3)), atol=1e-12)


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="preset"):
        make_synthetic_scene(tmp_path / "a", "huge")
    with pytest.raises(UserError, match="colour"):
        make_synthetic_scene(tmp_path / "b", "tiny", colour="red")
    with pytest.raises(UserError, match="out of range"):
        make_synthetic_scene(tmp_path / "g", "tiny", ground_grain=1.5)
    with pytest.raises(UserError, match="out of range"):
        make_synthetic_scene(tmp_path / "s", "tiny", surface_grain=-0.1)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        make_synthetic_scene(tmp_path / "c", "tiny")
