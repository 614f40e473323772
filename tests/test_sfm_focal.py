"""The focal length in `mgs sfm`'s mapping: held at the EXIF's while photos are added (refined from the first pairs,
it drifted by a third with the height on a nadir survey), then refined once with every photo in."""

from __future__ import annotations

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
        pycolmap.synthesize_dataset(options, db)
        camera = db.read_all_cameras()[0]
        camera.params = [TRUE_FOCAL * off, 512.0, 384.0, 0.0]
        db.update_camera(camera)
    finally:
        db.close()
    (folder / "images").mkdir()
    (folder / "work").mkdir()
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
