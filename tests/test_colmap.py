"""COLMAP model reading and writing: round trips, foreign files, and corrupt input as one-line UserErrors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.colmap.model import (SUPPORTED_MODELS, ColmapCamera, ColmapImage, ColmapModel, qvec_to_rotmat,
                                           rotmat_to_qvec)
from momentum_gs.errors import UserError


def make_model(rng: np.random.Generator, n_points: int = 40, keypoints: bool = True) -> ColmapModel:
    """One camera of every supported model, one image per camera, points seen by some keypoints."""
    cameras, images = {}, {}
    for i, (model, n_params) in enumerate(SUPPORTED_MODELS.items(), start=1):
        params = np.concatenate([[500.0 + i, 501.0 + i, 320.25, 240.75][: n_params], rng.normal(0, 0.01, 12)])
        cameras[i] = ColmapCamera(i, model, 640 + i, 480 - i, params[:n_params])
        n_kp = 0 if i == 2 else 7  # one image with no keypoints at all
        ids = rng.integers(-1, n_points, n_kp)
        images[10 * i] = ColmapImage(10 * i, rotmat_to_qvec(qvec_to_rotmat(rng.normal(size=4))), rng.normal(size=3),
                                     i, f"dir/img {i:02d}.jpg", rng.uniform(0, 600, (n_kp, 2)) if keypoints else None,
                                     ids if keypoints else None)
    points = rng.normal(size=(n_points, 3)) * 10
    return ColmapModel(cameras, images, points, rng.integers(0, 256, (n_points, 3)).astype(np.uint8),
                       rng.uniform(0, 2, n_points))


def assert_same(a: ColmapModel, b: ColmapModel, keypoints: bool = True) -> None:
    assert a.cameras.keys() == b.cameras.keys()
    for cam_id, cam in a.cameras.items():
        other = b.cameras[cam_id]
        assert (cam.model, cam.width, cam.height) == (other.model, other.width, other.height)
        np.testing.assert_array_equal(cam.params, other.params)
    assert a.images.keys() == b.images.keys()
    for image_id, im in a.images.items():
        other = b.images[image_id]
        assert (im.name, im.camera_id) == (other.name, other.camera_id)
        np.testing.assert_array_equal(im.qvec, other.qvec)
        np.testing.assert_array_equal(im.tvec, other.tvec)
        if keypoints:
            np.testing.assert_array_equal(im.xys.reshape(-1, 2), other.xys)
            np.testing.assert_array_equal(im.point3d_ids, other.point3d_ids)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(a.errors, b.errors)


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_every_supported_model(tmp_path, binary):
    model = make_model(np.random.default_rng(0))
    write_model(model, tmp_path / "sparse" / "0", binary=binary)
    ext = ".bin" if binary else ".txt"
    assert sorted(p.name for p in (tmp_path / "sparse" / "0").iterdir()) == [f"cameras{ext}", f"images{ext}",
                                                                           f"points3D{ext}"]
    back = read_model(tmp_path / "sparse" / "0")
    assert_same(model, back)
    assert back.points.dtype == np.float64 and back.colors.dtype == np.uint8
    assert back.images[20].xys.shape == (0, 2)  # an image without keypoints stays empty


@pytest.mark.parametrize("binary", [True, False])
def test_empty_tracks_and_no_keypoints(tmp_path, binary):
    model = make_model(np.random.default_rng(1), keypoints=False)
    write_model(model, tmp_path, binary=binary)
    back = read_model(tmp_path)
    assert_same(model, back, keypoints=False)
    assert all(len(im.xys) == 0 for im in back.images.values())
    if binary:  # every track written empty: 51 bytes per point after the count
        assert (tmp_path / "points3D.bin").stat().st_size == 8 + 51 * len(model.points)
    assert read_model(tmp_path, keypoints=False).images[10].xys is None


def test_point_ids_become_rows_of_the_point_arrays(tmp_path):
    """COLMAP point ids are sparse; keypoints must index rows of ``points``, and tracks must be rebuilt."""
    (tmp_path / "cameras.txt").write_text("# comment\n1 PINHOLE 100 80 90 91 50 40\n")
    (tmp_path / "images.txt").write_text("# c\n5 1 0 0 0 0 0 0 1 a.png\n1 2 42 3 4 -1 5 6 10\n\n"
                                         "6 1 0 0 0 1 2 3 1 b.png\n\n")
    (tmp_path / "points3D.txt").write_text("10 1 2 3 255 0 0 0.5 5 2\n42 4 5 6 0 255 0 0.25 5 0\n")
    model = read_model(tmp_path)
    np.testing.assert_array_equal(model.images[5].point3d_ids, [1, -1, 0])
    np.testing.assert_array_equal(model.points, [[1, 2, 3], [4, 5, 6]])
    assert model.images[6].xys.shape == (0, 2)  # blank keypoint line
    write_model(model, tmp_path / "bin")
    data = (tmp_path / "bin" / "points3D.bin").read_bytes()
    assert len(data) == 8 + 2 * 51 + 2 * 8  # each point's track holds its one keypoint
    assert struct.unpack_from("<QII", data, 8 + 43) == (1, 5, 2)  # row 0 seen by image 5, keypoint 2
    np.testing.assert_array_equal(read_model(tmp_path / "bin").images[5].point3d_ids, [1, -1, 0])


def test_rigs_and_frames_are_ignored_and_bin_is_preferred(tmp_path):
    model = make_model(np.random.default_rng(2))
    write_model(model, tmp_path / "txt", binary=False)
    write_model(model, tmp_path / "m")
    for name in ("cameras.txt", "images.txt", "points3D.txt"):  # a stale text model beside the binary one
        (tmp_path / "m" / name).write_text("garbage that must not be read\n")
    (tmp_path / "m" / "rigs.bin").write_bytes(b"\x01\x00\xff" * 9)
    (tmp_path / "m" / "frames.bin").write_bytes(b"\x07" * 33)
    assert_same(model, read_model(tmp_path / "m"))


def test_writing_one_format_removes_the_other(tmp_path):
    model = make_model(np.random.default_rng(3))
    write_model(model, tmp_path)
    model.points[0] = [7.0, 8.0, 9.0]
    write_model(model, tmp_path, binary=False)
    assert not (tmp_path / "points3D.bin").exists()
    np.testing.assert_array_equal(read_model(tmp_path).points[0], [7, 8, 9])


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncated_file_is_a_user_error(tmp_path, name):
    write_model(make_model(np.random.default_rng(4)), tmp_path)
    data = (tmp_path / name).read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 5):
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(UserError, match=rf"{name} is truncated or corrupt") as err:
            read_model(tmp_path)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_garbage_file_is_a_user_error(tmp_path, name):
    write_model(make_model(np.random.default_rng(5)), tmp_path)
    good = (tmp_path / name).read_bytes()
    rng = np.random.default_rng(6)
    for garbage in (rng.bytes(len(good)), good + b"\x00" * 3, good[:8] + rng.bytes(len(good) - 8)):
        (tmp_path / name).write_bytes(garbage)
        with pytest.raises(UserError, match=name):
            read_model(tmp_path)


def test_garbage_text_is_a_user_error(tmp_path):
    write_model(make_model(np.random.default_rng(7)), tmp_path, binary=False)
    (tmp_path / "points3D.txt").write_text("1 2 3\n")
    with pytest.raises(UserError, match=r"points3D.txt line 1 is corrupt"):
        read_model(tmp_path)
    write_model(make_model(np.random.default_rng(7)), tmp_path, binary=False)
    (tmp_path / "images.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match=r"images.txt is not a UTF-8 text file"):
        read_model(tmp_path)


def test_unsupported_camera_model_is_a_user_error(tmp_path):
    write_model(make_model(np.random.default_rng(8)), tmp_path)
    data = bytearray((tmp_path / "cameras.bin").read_bytes())
    struct.pack_into("<i", data, 8 + 4, 15)  # first camera (id 1) → model id 15, FISHEYE
    (tmp_path / "cameras.bin").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"camera 1 uses the FISHEYE model, which is not supported .*"
                                        r"colmap image_undistorter"):
        read_model(tmp_path)
    (tmp_path / "cameras.bin").unlink()
    (tmp_path / "cameras.txt").write_text("3 OPENCV_FISHEYE 640 480 500 500 320 240 0 0 0 0\n")
    with pytest.raises(UserError, match=r"camera 3 uses the OPENCV_FISHEYE model.*supported: SIMPLE_PINHOLE"):
        read_model(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_model(tmp_path / "nope")
    write_model(make_model(np.random.default_rng(9)), tmp_path)
    (tmp_path / "images.bin").unlink()
    with pytest.raises(UserError, match=r"missing images.bin .*cameras, images and points3D"):
        read_model(tmp_path)


def test_quaternions_round_trip():
    rng = np.random.default_rng(10)
    for q in rng.normal(size=(50, 4)):
        q = q / np.linalg.norm(q) * np.sign(q[0])
        R = qvec_to_rotmat(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(rotmat_to_qvec(R), q, atol=1e-12)
    # w, x, y, z order: a quarter turn about z maps x to y
    np.testing.assert_allclose(qvec_to_rotmat([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]) @ [1, 0, 0], [0, 1, 0],
                               atol=1e-12)


def test_many_points_read_fast(tmp_path):
    """200k points with tracks: the reader walks tracks in Python but gathers fields with numpy."""
    import time

    rng = np.random.default_rng(11)
    n = 200_000
    ids = np.arange(n)
    image = ColmapImage(1, np.array([1.0, 0, 0, 0]), np.zeros(3), 1, "a.png", rng.uniform(0, 99, (n, 2)), ids)
    model = ColmapModel({1: ColmapCamera(1, "PINHOLE", 100, 100, np.array([1.0, 1, 50, 50]))}, {1: image},
                        rng.normal(size=(n, 3)), rng.integers(0, 256, (n, 3)).astype(np.uint8), rng.uniform(size=n))
    write_model(model, tmp_path)
    start = time.perf_counter()
    back = read_model(tmp_path)
    assert time.perf_counter() - start < 10.0  # generous: shared 2-core machines
    np.testing.assert_array_equal(back.points, model.points)
    np.testing.assert_array_equal(back.images[1].point3d_ids, ids)
