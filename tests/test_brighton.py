"""The real brighton_beach capture (18 drone photos, COLMAP 4.x models, one PINHOLE and one OPENCV).

The dataset folder is read-only: every test that caches images copies a few of them into ``tmp_path``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from momentum_gs.config import DataConfig
from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.colmap.model import ColmapModel, qvec_to_rotmat
from momentum_gs.data.images import ImageLoader, read_image
from momentum_gs.data.scene import load_scene
from momentum_gs.data.undistort import opencv_intrinsics
from tests.helpers.brighton import DATA, camera_centres


pytestmark = pytest.mark.skipif(DATA is None, reason="brighton_beach dataset not found (set MGS_SHARED)")


def reprojection_errors(model: ColmapModel, distorted: bool) -> np.ndarray:
    """Pixel distances between each observed keypoint and its projected 3D point, over all images."""
    errors = []
    for im in model.images.values():
        seen = im.point3d_ids >= 0
        K, dist = opencv_intrinsics(model.cameras[im.camera_id])
        K[:2, 2] -= 0.5  # COLMAP → OpenCV pixel centres; the keypoints are in COLMAP's convention too
        rvec = cv2.Rodrigues(qvec_to_rotmat(im.qvec))[0]
        uv, _ = cv2.projectPoints(model.points[im.point3d_ids[seen]], rvec, im.tvec, K, dist if distorted else None)
        errors.append(np.linalg.norm(uv[:, 0] + 0.5 - im.xys[seen], axis=1))
    return np.concatenate(errors)


def test_undistorted_model():
    model = read_model(DATA / "sparse" / "0")  # rigs.bin and frames.bin sit beside it
    assert len(model.images) == 18 and len(model.points) == 6656
    (cam,) = model.cameras.values()
    assert (cam.model, cam.width, cam.height) == ("PINHOLE", 1949, 1093)
    centres = np.stack(list(camera_centres(model).values()))
    assert np.isfinite(centres).all()
    spread = np.linalg.svd(centres - centres.mean(0), compute_uv=False)
    assert spread[1] > 0.2 * spread[0] > 0  # three flight lines: a 2D pattern, not a point or a line
    errors = reprojection_errors(model, distorted=False)
    assert len(errors) > 10_000 and np.median(errors) < 1.0  # poses, intrinsics and point ids all agree


def test_distorted_model_has_the_same_poses():
    model = read_model(DATA / "distorted" / "sparse" / "0")
    (cam,) = model.cameras.values()
    assert cam.model == "OPENCV" and len(model.images) == 18 and len(model.points) == 6656
    undistorted = camera_centres(read_model(DATA / "sparse" / "0"))
    for name, centre in camera_centres(model).items():
        np.testing.assert_allclose(centre, undistorted[name], atol=1e-6)
    assert np.median(reprojection_errors(model, distorted=True)) < 1.0


def _mini_scene(tmp_path: Path, images: str, sparse: str, count: int) -> list[str]:
    """Copy ``count`` images and a model of just them into ``tmp_path`` (images/ + sparse/0)."""
    model = read_model(DATA / sparse)
    keep = sorted(model.images.values(), key=lambda im: im.name)[:count]
    model.images = {im.id: im for im in keep}
    (tmp_path / "images").mkdir()
    for im in keep:
        shutil.copy(DATA / images / im.name, tmp_path / "images" / im.name)
    write_model(model, tmp_path / "sparse" / "0")
    return [im.name for im in keep]


def test_load_a_few_images_at_a_tiny_size(tmp_path):
    names = _mini_scene(tmp_path, "images", "sparse/0", 3)
    scene = load_scene(DataConfig(path=str(tmp_path), downsample=16, test_every=0))
    assert [cam.name for cam in scene.train] == names and len(scene.points) == 6656
    for i, image in ImageLoader(scene.train, prefetch=2).iterate(range(3)):
        assert image.shape == (68, 122, 3)  # 1949 x 1093 / 16, rounded
        assert 0.05 < image.mean() < 0.95 and image.std() > 0.05
        reference = cv2.resize(read_image(DATA / "images" / names[i]), (122, 68), interpolation=cv2.INTER_AREA)
        assert np.abs(image.numpy() * 255 - reference).max() <= 1.0
    assert scene.train[0].K[0, 2].item() == pytest.approx(974.5 * 122 / 1949)


def test_our_undistortion_agrees_with_colmaps(tmp_path):
    """Undistort two original photos ourselves and compare them with COLMAP's undistorted images, warped
    into our pinhole camera (same pose, so a homography of intrinsics only)."""
    _mini_scene(tmp_path, "input", "distorted/sparse/0", 2)
    ours = load_scene(DataConfig(path=str(tmp_path), max_width=400, test_every=0)).train
    assert ours[0].image_path.parent.name == "images_undistorted_w400"
    fx, fy, cx, cy = read_model(DATA / "sparse" / "0").cameras[1].params
    to_cv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # COLMAP → OpenCV pixel centres
    inner = (slice(8, -8), slice(8, -8))  # COLMAP crops a little tighter than alpha=0
    for cam in ours:
        small = cv2.resize(read_image(DATA / "images" / cam.name), (400, 224), interpolation=cv2.INTER_AREA)
        K_colmap = np.array([[fx * 400 / 1949, 0, cx * 400 / 1949], [0, fy * 224 / 1093, cy * 224 / 1093], [0, 0, 1]])
        warp = to_cv @ cam.K.double().numpy() @ np.linalg.inv(K_colmap) @ np.linalg.inv(to_cv)
        image = ImageLoader([cam])[0].numpy()
        errors = {}
        for shift in ((0, 0), (0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)):  # misplace COLMAP's by half a pixel
            moved = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]]) @ warp
            reference = cv2.warpPerspective(small, moved, (cam.width, cam.height), flags=cv2.INTER_LINEAR) / 255.0
            errors[shift] = np.abs(image - reference)[inner].mean()
        assert errors[(0, 0)] < 0.025 and errors[(0, 0)] == min(errors.values())  # aligned to a sub-pixel
        distorted = cv2.resize(read_image(tmp_path / "images" / cam.name), (cam.width, cam.height),
                               interpolation=cv2.INTER_AREA) / 255.0
        reference = cv2.warpPerspective(small, warp, (cam.width, cam.height), flags=cv2.INTER_LINEAR) / 255.0
        assert errors[(0, 0)] < 0.5 * np.abs(distorted - reference)[inner].mean()  # plain resizing is worse
