"""Scene loading: layouts, split rule, intrinsics, image cache, undistortion and the prefetching loader."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from momentum_gs.config import DataConfig
from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.folder import write_model
from momentum_gs.data.colmap.model import ColmapCamera, ColmapModel
from momentum_gs.data.images import ImageLoader, default_cache_root
from momentum_gs.data.scene import load_scene
from momentum_gs.data.undistort import opencv_intrinsics, pinhole_intrinsics
from momentum_gs.errors import UserError
from tests.helpers.colmap_folder import H, PINHOLE, W, centers, look_at, make_folder, pattern


def test_single_folder_layout_and_split_rule(tmp_path):
    poses = make_folder(tmp_path / "scene", n=10)
    scene = load_scene(DataConfig(path=str(tmp_path / "scene"), test_every=4))
    assert scene.name == "scene"
    assert [c.name for c in scene.test] == ["img_000.png", "img_004.png", "img_008.png"]
    assert [c.name for c in scene.train] == [f"img_{i:03d}.png" for i in (1, 2, 3, 5, 6, 7, 9)]
    assert [c.uid for c in scene.train] == list(range(7)) and [c.uid for c in scene.test] == [0, 1, 2]
    assert scene.points.dtype == np.float32 and scene.points.shape == (20, 3) and scene.colors.dtype == np.uint8
    cam = scene.train[0]
    assert cam.K.dtype == torch.float32 and cam.world_to_cam.dtype == torch.float32
    np.testing.assert_allclose(cam.world_to_cam.numpy(), poses[1], atol=1e-6)
    np.testing.assert_allclose(cam.center.numpy(), centers(10)[1], atol=1e-5)
    assert cam.image_path == tmp_path / "scene" / "images" / "img_001.png"  # full size pinhole: no cache


def test_sparse_folder_may_hold_the_model_directly(tmp_path):
    make_folder(tmp_path, n=3, sparse="sparse")
    scene = load_scene(DataConfig(path=str(tmp_path), test_every=0))
    assert len(scene.train) == 3 and scene.test == []


@pytest.mark.parametrize("test_name", ["val", "test"])
def test_mill19_layout(tmp_path, test_name):
    make_folder(tmp_path / "train", n=6, n_points=30)
    make_folder(tmp_path / test_name, n=2, n_points=5)
    scene = load_scene(DataConfig(path=str(tmp_path), test_every=2))
    assert len(scene.train) == 6 and len(scene.test) == 2  # test_every plays no part here
    assert len(scene.points) == 30  # the training model's points
    assert scene.test[1].image_path == tmp_path / test_name / "images" / "img_001.png"


def test_principal_point_and_downsample_cache(tmp_path):
    make_folder(tmp_path, n=3)
    cfg = DataConfig(path=str(tmp_path), downsample=2, test_every=0)
    cam = load_scene(cfg).train[1]
    assert (cam.width, cam.height) == (32, 24)
    np.testing.assert_allclose(cam.K.numpy(), [[30, 0, 10.25], [0, 31, 15.125], [0, 0, 1]])
    cached = tmp_path / "images_2" / "img_001.png"
    assert cam.image_path == cached and (tmp_path / "images_2" / ".mgs_cache.json").is_file()
    expected = cv2.resize(pattern(1), (32, 24), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(ImageLoader([cam])[0].numpy(), expected / 255.0, atol=1e-6)

    stamp = cached.stat().st_mtime_ns
    load_scene(cfg)
    assert cached.stat().st_mtime_ns == stamp  # reused, not rewritten
    source = tmp_path / "images" / "img_001.png"
    later = source.stat().st_mtime_ns + 10**9
    os.utime(source, ns=(later, later))
    load_scene(cfg)
    assert cached.stat().st_mtime_ns != stamp  # the source changed: rebuilt


def test_max_width_cache(tmp_path):
    make_folder(tmp_path, n=2)
    scene = load_scene(DataConfig(path=str(tmp_path), max_width=40, test_every=0))
    cam = scene.train[0]
    assert (cam.width, cam.height) == (40, 30) and cam.image_path.parent.name == "images_w40"
    assert ImageLoader([cam])[0].shape == (30, 40, 3)
    assert scene.source_size == (W, H)
    wide = load_scene(DataConfig(path=str(tmp_path), max_width=100, test_every=0)).train[0]
    assert wide.image_path.parent.name == "images" and wide.width == W  # already narrow enough


def test_max_width_caps_what_downsample_leaves(tmp_path):
    make_folder(tmp_path, n=2)  # 64×48
    capped = load_scene(DataConfig(path=str(tmp_path), max_width=20, downsample=2, test_every=0)).train[0]
    assert (capped.width, capped.height) == (20, 15) and capped.image_path.parent.name == "images_w20"
    narrow = load_scene(DataConfig(path=str(tmp_path), max_width=40, downsample=2, test_every=0)).train[0]
    assert (narrow.width, narrow.height) == (32, 24) and narrow.image_path.parent.name == "images_2"


def test_photos_wider_than_1600_train_at_1600_by_default():
    from momentum_gs.data.images import target_size

    data = DataConfig()
    assert target_size(4000, 3000, data.downsample, data.max_width) == (1600, 1200)
    assert target_size(1200, 900, data.downsample, data.max_width) == (1200, 900)
    assert target_size(4000, 3000, 16, data.max_width) == (250, 188)  # brighton_beach.yaml's 1/16 stays
    assert target_size(4000, 3000, 1, 0) == (4000, 3000)


def test_foreign_downsampled_folder_is_reused(tmp_path):
    """A folder made by another tool (e.g. Momentum-GS's images_4 of PNGs) is used when newer than the source;
    a 1-pixel rounding difference (floor vs round) is resized away."""
    make_folder(tmp_path, n=2, size=(66, 50))  # 66 / 4 = 16.5 → 16 or 17, 50 / 4 → 12 or 13
    (tmp_path / "images_4").mkdir()
    marker = np.full((12, 16, 3), 77, np.uint8)
    for i in range(2):
        cv2.imwrite(str(tmp_path / "images_4" / f"img_{i:03d}.png"), marker)
    (tmp_path / "images" / "img_001.png").unlink()  # a dataset shipped only downsampled
    scene = load_scene(DataConfig(path=str(tmp_path), downsample=4, test_every=0))
    image = ImageLoader(scene.train)[1]
    assert image.shape == (scene.train[1].height, scene.train[1].width, 3)
    assert torch.allclose(image, torch.full_like(image, 77 / 255))


def blob_image(uv: np.ndarray, width: int, height: int, sigma: float = 2.0) -> np.ndarray:
    """[H, W, 3] uint8 image of Gaussian blobs centred on ``uv`` [N, 2] (OpenCV pixel coordinates)."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = sum(np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma**2)) for u, v in uv)
    return np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)


def blob_centres(image: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    """[N, 2] intensity-weighted centroids (OpenCV pixel coordinates) of the blobs near ``near``."""
    out = []
    for u, v in near:
        x0, y0 = int(round(u)), int(round(v))
        patch = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1].astype(np.float64)
        yy, xx = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        out.append([(patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()])
    return np.array(out)


# OpenCV puts pixel centres on integers, COLMAP (and our K) half a pixel further: K_opencv = K - HALF_PIXEL.
HALF_PIXEL = np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
DISTORTED = {
    "SIMPLE_RADIAL": [150.0, 80.3, 59.6, -0.2],
    "RADIAL": [150.0, 80.3, 59.6, -0.2, 0.05],
    "OPENCV": [150.0, 155.0, 80.3, 59.6, -0.25, 0.05, 0.002, -0.001],
    "FULL_OPENCV": [150.0, 155.0, 80.3, 59.6, -0.25, 0.05, 0.002, -0.001, 0.01, 0.02, 0.0, 0.01],
}


def grid_rays() -> np.ndarray:
    """[12, 3] camera-frame points on a 4 x 3 grid spanning most of a 160 x 120 view at f = 150."""
    return np.array([[x, y, 1.0] for x in np.linspace(-0.38, 0.38, 4) for y in np.linspace(-0.28, 0.28, 3)]) * 2


@pytest.mark.parametrize("model", DISTORTED)
def test_undistortion_puts_points_where_the_pinhole_projection_does(model):
    camera = ColmapCamera(1, model, 160, 120, np.array(DISTORTED[model]))
    K_dist, dist = opencv_intrinsics(camera)
    points = grid_rays()
    uv, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K_dist - HALF_PIXEL, dist)
    K, undistort = pinhole_intrinsics(camera)
    expected = (points / points[:, 2:]) @ K.T
    expected = expected[:, :2] - 0.5
    assert np.abs(uv[:, 0] - expected).max() > 1.5  # the distortion really moves the points
    found = blob_centres(undistort(blob_image(uv[:, 0], 160, 120))[..., 0], expected)
    np.testing.assert_allclose(found, expected, atol=0.1)


def test_distorted_scene_is_undistorted_into_a_cache(tmp_path):
    camera = ("OPENCV", DISTORTED["OPENCV"])
    K_dist, dist = opencv_intrinsics(ColmapCamera(1, camera[0], 160, 120, np.array(camera[1])))
    world = np.array([[0.0, y, z] for y in (-2.2, 0.0, 2.2) for z in (-1.4, 1.4)])  # facing both cameras
    images, distorted = [], []
    for pose in [look_at(c) for c in centers(2)]:
        rvec = cv2.Rodrigues(pose[:3, :3])[0]
        distorted.append(cv2.projectPoints(world, rvec, pose[:3, 3], K_dist - HALF_PIXEL, dist)[0][:, 0])
        images.append(blob_image(distorted[-1], 160, 120, sigma=1.5))
    make_folder(tmp_path, n=2, camera=camera, size=(160, 120), images=images)
    scene = load_scene(DataConfig(path=str(tmp_path), test_every=0))
    for i, cam in enumerate(scene.train):
        assert cam.image_path == tmp_path / "images_undistorted" / f"img_{i:03d}.png"
        in_cam = world @ cam.world_to_cam[:3, :3].double().numpy().T + cam.world_to_cam[:3, 3].double().numpy()
        expected = ((in_cam / in_cam[:, 2:]) @ cam.K.double().numpy().T)[:, :2] - 0.5
        as_pinhole = ((in_cam / in_cam[:, 2:]) @ K_dist.T)[:, :2] - 0.5
        assert np.abs(distorted[i] - as_pinhole).max() > 3.0  # what ignoring the distortion would cost
        found = blob_centres(ImageLoader([cam])[0].numpy()[..., 0], expected, radius=8)
        np.testing.assert_allclose(found, expected, atol=0.15)
    half = load_scene(DataConfig(path=str(tmp_path), test_every=0, downsample=2)).train[0]
    assert half.image_path.parent.name == "images_undistorted_2" and (half.width, half.height) == (80, 60)
    np.testing.assert_allclose(half.K[:2].numpy(), scene.train[0].K[:2].numpy() / 2, rtol=1e-6)


def test_prefetching_loader_yields_every_index_in_order(tmp_path):
    make_folder(tmp_path, n=6)
    cameras = load_scene(DataConfig(path=str(tmp_path), test_every=0)).train
    order = [3, 1, 4, 1, 5, 0, 2, 5]
    for cache, prefetch in ((True, 3), (False, 2), (False, 0)):
        loader = ImageLoader(cameras, cache=cache, prefetch=prefetch)
        got = list(loader.iterate(order))
        assert [i for i, _ in got] == order
        for i, image in got:
            assert image.dtype == torch.float32 and image.shape == (H, W, 3)
            assert torch.equal(image, loader[i])
            assert torch.equal(image, torch.from_numpy(pattern(i)).float() / 255)
        loader.close()
    early = ImageLoader(cameras, prefetch=4)
    assert next(iter(early.iterate(range(6))))[0] == 0  # stopping early neither hangs nor fails
    early.close()


def test_image_cache_stays_within_its_budget_and_evicts_the_least_recently_used(tmp_path, monkeypatch):
    import momentum_gs.data.images as I

    make_folder(tmp_path, n=6)
    cameras = load_scene(DataConfig(path=str(tmp_path), test_every=0)).train
    budget = int(2.5 * H * W * 3)  # room for two images
    loader = ImageLoader(cameras, prefetch=3, cache_bytes=budget)
    assert loader.cache.num_slots == 2 and loader.cache.capacity_bytes <= budget
    reads = []
    real = I.read_image
    monkeypatch.setattr(I, "read_image", lambda path: reads.append(path.name) or real(path))
    order = [0, 1, 0, 2, 0, 3, 4, 0, 5, 5]
    for i, image in loader.iterate(order * 3):  # slots reused by 3 threads: every image must still be its own
        assert torch.equal(image, torch.from_numpy(pattern(i)).float() / 255)
    assert len(loader.cache) == 2 and loader.cache._buffer.numel() == loader.cache.capacity_bytes
    loader.close()
    loader, reads[:] = ImageLoader(cameras, prefetch=0, cache_bytes=budget), []
    for i, image in loader.iterate(order):
        assert torch.equal(image, torch.from_numpy(pattern(i)).float() / 255)
    # a hit keeps 0 (used again and again); only 4 pushes it out, as the least recently used then
    assert reads == [f"img_00{i}.png" for i in (0, 1, 2, 3, 4, 0, 5)]
    assert list(loader.cache._slots) == [0, 5]  # the two most recently used, oldest first
    unbounded = ImageLoader(cameras, prefetch=0, cache_bytes=10 * budget)
    assert unbounded.cache.num_slots == 6  # never more slots than images
    off = ImageLoader(cameras, cache=False)
    assert off.cache.num_slots == 0 and torch.equal(off[3], loader[3]) and len(off.cache) == 0
    for each in (loader, unbounded, off):
        each.close()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_loader_sends_pinned_uint8_to_the_gpu(tmp_path):
    make_folder(tmp_path, n=4)
    cameras = load_scene(DataConfig(path=str(tmp_path), test_every=0)).train
    loader = ImageLoader(cameras, prefetch=2)
    assert loader._pixels(0, pin=True).is_pinned() and loader._pixels(0).dtype == torch.uint8
    for i, image in loader.iterate([2, 0, 3], torch.device("cuda")):
        assert image.device.type == "cuda" and image.dtype == torch.float32
        assert torch.equal(image.cpu(), loader[i])
    loader.close()


def test_loader_is_lazy(tmp_path):
    ghost = [ghost_camera(tmp_path, i) for i in range(1000)]
    loader = ImageLoader(ghost, prefetch=8)  # nothing is opened here
    assert len(loader) == 1000
    with pytest.raises(UserError, match="ghost_0007.png"):
        loader[7]


def ghost_camera(tmp_path: Path, i: int) -> Camera:
    return Camera(f"ghost_{i:04d}.png", W, H, torch.eye(3), torch.eye(4), tmp_path / f"ghost_{i:04d}.png", i)


def test_image_size_mismatch_is_a_user_error(tmp_path):
    make_folder(tmp_path, n=2)
    cv2.imwrite(str(tmp_path / "images" / "img_001.png"), pattern(1, W + 6, H))
    scene = load_scene(DataConfig(path=str(tmp_path), test_every=0))
    with pytest.raises(UserError, match=r"img_001.png is 70x48 pixels but its camera expects 64x48"):
        ImageLoader(scene.train)[1]
    with pytest.raises(UserError, match=r"img_001.png is 70x48 pixels but its camera expects 64x48"):
        load_scene(DataConfig(path=str(tmp_path), test_every=0, downsample=2))
    cv2.imwrite(str(tmp_path / "images" / "img_001.png"), pattern(1, W + 1, H))  # rounding: accepted
    assert ImageLoader(scene.train)[1].shape == (H, W, 3)


def test_missing_image_is_a_user_error(tmp_path):
    make_folder(tmp_path, n=3)
    (tmp_path / "images" / "img_002.png").unlink()
    with pytest.raises(UserError, match=r"1 image\(s\) listed in the COLMAP model are missing .*img_002.png"):
        load_scene(DataConfig(path=str(tmp_path)))


def test_empty_point_cloud_is_a_user_error(tmp_path):
    make_folder(tmp_path, n=3, n_points=0)
    with pytest.raises(UserError, match=r"points3D has no points; run COLMAP's mapper"):
        load_scene(DataConfig(path=str(tmp_path)))


def test_path_errors(tmp_path):
    with pytest.raises(UserError, match="data.path is not set"):
        load_scene(DataConfig())
    with pytest.raises(UserError, match="does not exist"):
        load_scene(DataConfig(path=str(tmp_path / "nope")))
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match=r"looked for images/ \+ sparse/0/ .* train/ \+ val/"):
        load_scene(DataConfig(path=str(tmp_path)))


def test_model_without_images_is_a_user_error(tmp_path):
    write_model(ColmapModel({1: ColmapCamera(1, PINHOLE[0], W, H, np.array(PINHOLE[1]))}, {}, np.zeros((3, 3)),
                            np.zeros((3, 3), np.uint8), np.zeros(3)), tmp_path / "sparse" / "0")
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match="no registered images"):
        load_scene(DataConfig(path=str(tmp_path)))


def test_a_blocks_extent_is_1_1_times_the_radius_of_its_cameras(tmp_path):
    """``camera_extent`` scales a block's position learning rate (as the scene extent does in 3DGS)."""
    from momentum_gs.train.blocks import camera_extent

    make_folder(tmp_path, n=8)
    scene = load_scene(DataConfig(path=str(tmp_path), test_every=0))
    assert camera_extent(scene, list(range(8))) == pytest.approx(1.1 * 5.0, rel=1e-5)  # a circle of radius 5
    centres = torch.stack([scene.train[i].center for i in (0, 1)]).double()  # two neighbours: half their gap
    assert camera_extent(scene, [0, 1]) == pytest.approx(1.1 * float((centres[0] - centres[1]).norm()) / 2, rel=1e-6)
    assert camera_extent(scene, [3]) == 1e-6


def test_read_only_dataset_caches_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("MGS_CACHE", str(tmp_path / "cache"))
    make_folder(tmp_path / "data", n=2)
    (tmp_path / "data").chmod(0o555)  # no write bits: left alone even by root, who could write anyway
    try:
        scene = load_scene(DataConfig(path=str(tmp_path / "data"), downsample=2, test_every=0))
        assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["images", "sparse"]
        root = default_cache_root(tmp_path / "data" / "images")
    finally:
        (tmp_path / "data").chmod(0o755)
    assert root.parent == tmp_path / "cache" and root.name.startswith("data-")
    assert scene.train[0].image_path == root / "images_2" / "img_000.png"
    assert default_cache_root(tmp_path / "data" / "images") == tmp_path / "data"  # writable again
