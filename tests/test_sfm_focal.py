"""`mgs sfm`'s mapping: the focal length held at the EXIF's while photos are added (refined from the first pairs, it
drifted by a third with the height on a nadir survey), then refined once with every photo in; and the GPS as pose
priors that COLMAP's bundle adjustment keeps."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.sfm import colmap_steps as steps

pycolmap = pytest.importorskip("pycolmap")

TRUE_FOCAL = 1280.0


def database(folder, prior: bool, off: float = 1.05):
    """pycolmap's synthetic scene (15 photos, exact matches) in a database whose camera's focal length is ``off``
    times the truth, given as known from EXIF when ``prior``."""
    pycolmap.set_random_seed(0)
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1, num_frames_per_rig=15, num_points3D=400, camera_model_id=pycolmap.CameraModelId.SIMPLE_RADIAL,
        camera_params=[TRUE_FOCAL, 512.0, 384.0, 0.0], camera_has_prior_focal_length=prior,
        num_points2D_without_point3D=0)
    path = folder / "database.db"
    db = pycolmap.Database.open(path)
    try:
        truth = pycolmap.synthesize_dataset(options, db)
        camera = db.read_all_cameras()[0]
        camera.params = [TRUE_FOCAL * off, 512.0, 384.0, 0.0]
        db.update_camera(camera)
    finally:
        db.close()
    (folder / "images").mkdir()
    (folder / "work").mkdir()
    database.centres = {truth.image(i).name: truth.image(i).projection_center() for i in truth.reg_image_ids()}
    return path


def mapped_focal(folder, path) -> float:
    models = steps.map_images(pycolmap, path, folder / "images", folder / "work", 15, 1, 0, gps_priors=False)
    assert models and models[0].num_reg_images() == 15
    return float(next(iter(models[0].cameras.values())).params[0])


def test_a_focal_from_exif_is_held_while_mapping_then_refined(tmp_path, monkeypatch):
    path = database(tmp_path, prior=True)
    assert steps.focal_known(pycolmap, path)
    assert mapped_focal(tmp_path, path) == pytest.approx(TRUE_FOCAL, rel=1e-3)  # 5 % off, refined at the end
    held = tmp_path / "held"
    held.mkdir()
    path = database(held, prior=True)
    monkeypatch.setattr(steps, "refine_intrinsics", lambda pycolmap, model: None)
    assert mapped_focal(held, path) == pytest.approx(TRUE_FOCAL * 1.05, rel=1e-6)  # not moved while mapping


def test_a_focal_not_in_exif_is_refined_while_mapping(tmp_path, monkeypatch):
    path = database(tmp_path, prior=False)
    assert not steps.focal_known(pycolmap, path)
    monkeypatch.setattr(steps, "refine_intrinsics", lambda pycolmap, model: pytest.fail("refined twice"))
    assert mapped_focal(tmp_path, path) == pytest.approx(TRUE_FOCAL, rel=1e-3)


def test_prior_positions_fill_missing_altitudes():
    filled = steps.prior_positions({"a": np.array([1.0, 2.0, 30.0]), "b": np.array([3.0, 4.0, np.nan]),
                                    "c": np.array([5.0, 6.0, 34.0])})
    assert filled["b"][2] == 32.0 and filled["a"][2] == 30.0 and steps.priors_usable(filled)
    assert not steps.priors_usable({n: np.array([i, 2.0 * i, np.nan]) for i, n in enumerate("abcd")})


def test_gps_priors_are_kept_in_the_adjustment(tmp_path):
    """GPS with altitudes weighed as horizontal only (the default): COLMAP aligns the model to the priors before each
    bundle adjustment and keeps them in it, so the mapped cameras come out in the priors' frame, within their noise.
    Priors flattened into one plane failed that alignment, and the model came out in a frame of its own."""
    path = database(tmp_path, prior=True, off=1.0)
    rng = np.random.default_rng(0)
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    enu = {n: 12.5 * rotation @ c + [100.0, -40.0, 0.0] for n, c in database.centres.items()}
    gps = {n: p + rng.normal(0, 0.3, 3) for n, p in enu.items()}
    steps.write_priors(pycolmap, path, gps, horizontal_only=True)
    models = steps.map_images(pycolmap, path, tmp_path / "images", tmp_path / "work", 15, 1, 0, gps_priors=True)
    model = models[0]
    assert model.num_reg_images() == 15
    off = [np.linalg.norm(model.find_image_with_name(n).projection_center()[:2] - p[:2]) for n, p in enu.items()]
    assert max(off) < 2.0  # metres, on a site about 100 m across
