"""Dataset conversion: MatrixCity transforms.json → COLMAP, the Mill-19 layout, the downsampling cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from momentum_gs.cli import main
from momentum_gs.config import DataConfig
from momentum_gs.data import convert
from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.colmap.model import ColmapCamera, ColmapImage, ColmapModel, rotmat_to_qvec
from momentum_gs.data.images import read_image
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError

W, H = 40, 30
TARGET = np.array([0.3, -0.2, 0.5])  # a known world point every camera sees


def nerf_pose(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world with OpenGL axes (x right, y up, z backward) at ``centre`` looking at ``target``."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(right, forward), -forward], 1)
    pose[:3, 3] = centre
    return pose


def nerf_project(pose: np.ndarray, fx: float, fy: float, cx: float, cy: float, point: np.ndarray) -> np.ndarray:
    """Pixel of ``point`` by the NeRF convention: camera looks down -z, image y grows downwards."""
    x, y, z = (np.linalg.inv(pose) @ np.append(point, 1.0))[:3]
    return np.array([cx + fx * x / -z, cy - fy * y / -z])


def write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8))


def make_matrixcity(root: Path) -> dict:
    """Two blocks of 2 training views (same file names, ``<block>/input/`` layout, paths without suffix, one
    rotation scaled by 0.01 as MatrixCity's raw poses are) and 2 test views with explicit intrinsics."""
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    centres = np.stack([4 * np.cos(angles), 4 * np.sin(angles), 3 + 0.3 * np.arange(6)], 1)
    poses = [nerf_pose(c, TARGET + [0.1 * i, 0, 0]) for i, c in enumerate(centres)]
    train = {"camera_angle_x": 0.9, "w": W, "h": H, "frames": []}
    for i in range(4):
        block, name = f"block_{i // 2 + 1}", f"{i % 2:04d}"
        write_png(root / "aerial" / block / "input" / f"{name}.png", i)
        matrix = poses[i].copy()
        if i == 1:
            matrix[:3, :3] *= 0.01
        train["frames"].append({"file_path": f"../{block}/{name}", "transform_matrix": matrix.tolist()})
    test = {"fl_x": 30.0, "fl_y": 31.0, "cx": 18.5, "cy": 16.0, "w": W, "h": H, "frames": []}
    for i in (4, 5):
        write_png(root / "aerial" / "test" / f"{i:04d}.png", i)
        test["frames"].append({"file_path": f"test/{i:04d}.png", "transform_matrix": poses[i].tolist()})
    (root / "pose").mkdir(parents=True)
    (root / "pose" / "transforms_train.json").write_text(json.dumps(train))
    (root / "pose" / "transforms_test.json").write_text(json.dumps(test))
    return {"poses": poses, "train": train, "test": test}


def paths(root: Path) -> dict:
    return {"train": [root / "pose" / "transforms_train.json"], "test": [root / "pose" / "transforms_test.json"]}


def test_matrixcity_cameras_match_the_nerf_poses(tmp_path):
    src = make_matrixcity(tmp_path / "mc")
    counts = convert.matrixcity_to_colmap(paths(tmp_path / "mc"), tmp_path / "mc" / "aerial", tmp_path / "out",
                                          num_points=300)
    assert counts == {"train": 4, "val": 2, "points": 300, "rescaled": 1}
    scene = load_scene(DataConfig(path=str(tmp_path / "out")))
    assert [c.name for c in scene.train] == ["block_1/0000.png", "block_1/0001.png", "block_2/0000.png",
                                             "block_2/0001.png"]  # shared file names get their block folder
    assert [c.name for c in scene.test] == ["0004.png", "0005.png"]
    focal = 0.5 * W / math.tan(0.45)
    intrinsics = [(focal, focal, W / 2, H / 2)] * 4 + [(30.0, 31.0, 18.5, 16.0)] * 2
    for cam, pose, K in zip(scene.train + scene.test, src["poses"], intrinsics):
        w2c = cam.world_to_cam.double().numpy()
        np.testing.assert_allclose(cam.center.double().numpy(), pose[:3, 3], atol=1e-5)
        np.testing.assert_allclose(w2c[2, :3], -pose[:3, 2], atol=1e-6)  # OpenCV z forward = OpenGL -z
        np.testing.assert_allclose(cam.K.double().numpy()[[0, 1, 0, 1], [0, 1, 2, 2]], K, rtol=1e-6)
        p = cam.K.double().numpy() @ (w2c[:3, :3] @ TARGET + w2c[:3, 3])
        np.testing.assert_allclose(p[:2] / p[2], nerf_project(pose, *K, TARGET), atol=1e-3)
        assert cam.image_path is not None and read_image(cam.image_path).shape == (H, W, 3)
    # generated points: in front of and inside the view of at least one training camera
    points = torch.from_numpy(scene.points).double()
    seen = torch.zeros(len(points), dtype=torch.bool)
    for cam in scene.train:
        p = (points @ cam.world_to_cam[:3, :3].double().T + cam.world_to_cam[:3, 3].double()) @ cam.K.double().T
        uv = p[:, :2] / p[:, 2:]
        seen |= (p[:, 2] > 0) & (uv >= 0).all(1) & (uv[:, 0] <= W) & (uv[:, 1] <= H)
    assert seen.all()
    assert (scene.points[:, 2] < 0.1 * np.median([p[2, 3] for p in src["poses"][:4]]) + 1e-4).all()
    assert len(read_model(tmp_path / "out" / "val" / "sparse" / "0").points) == 0


def test_matrixcity_point_cloud_scale_and_sequential_names(tmp_path):
    make_matrixcity(tmp_path / "mc")
    vertex = np.array([(1.0, 2.0, 0.5, 255, 0, 10), (-1.0, 0.0, 0.0, 0, 128, 0)],
                      dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "cloud.ply"))
    roots = [tmp_path / "elsewhere", tmp_path / "mc" / "aerial"]  # several image folders, searched in order
    convert.matrixcity_to_colmap(paths(tmp_path / "mc"), roots, tmp_path / "out", points=tmp_path / "cloud.ply",
                                 scale=0.5, sequential_names=True, copy=True)
    model = read_model(tmp_path / "out" / "train" / "sparse" / "0")
    np.testing.assert_allclose(model.points, [[0.5, 1.0, 0.25], [-0.5, 0.0, 0.0]])
    assert model.colors.tolist() == [[255, 0, 10], [0, 128, 0]]
    assert sorted(im.name for im in model.images.values()) == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert not (tmp_path / "out" / "train" / "images" / "0000.png").is_symlink()


def test_matrixcity_missing_image_writes_nothing(tmp_path):
    make_matrixcity(tmp_path / "mc")
    (tmp_path / "mc" / "aerial" / "block_2" / "input" / "0001.png").unlink()
    with pytest.raises(UserError, match=r"block_2/0001"):
        convert.matrixcity_to_colmap(paths(tmp_path / "mc"), tmp_path / "mc" / "aerial", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_matrixcity_rejects_a_sheared_pose(tmp_path):
    make_matrixcity(tmp_path / "mc")
    meta = json.loads((tmp_path / "mc" / "pose" / "transforms_test.json").read_text())
    meta["frames"][1]["transform_matrix"][0][1] += 0.3
    (tmp_path / "mc" / "pose" / "transforms_test.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="frame 1: transform_matrix is not a rotation"):
        convert.matrixcity_to_colmap(paths(tmp_path / "mc"), tmp_path / "mc" / "aerial", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_matrixcity_keeps_the_lens_distortion_of_a_phone_capture(tmp_path):
    """colmap2nerf / instant-ngp write k1 k2 p1 p2 (and k3 k4): an OPENCV (or FULL_OPENCV) camera keeps them,
    so loading undistorts the images instead of dropping ~4 px at the corners."""
    make_matrixcity(tmp_path / "mc")
    meta = json.loads((tmp_path / "mc" / "pose" / "transforms_train.json").read_text())
    meta.update(k1=-0.12, k2=0.03, p1=0.001, p2=-0.0005)
    (tmp_path / "mc" / "pose" / "transforms_train.json").write_text(json.dumps(meta))
    test = json.loads((tmp_path / "mc" / "pose" / "transforms_test.json").read_text())
    test["frames"][1].update(k1=0.05, k3=0.01)  # one frame with k3: the full model, its own camera
    (tmp_path / "mc" / "pose" / "transforms_test.json").write_text(json.dumps(test))
    convert.matrixcity_to_colmap(paths(tmp_path / "mc"), tmp_path / "mc" / "aerial", tmp_path / "out", num_points=50)
    train = read_model(tmp_path / "out" / "train" / "sparse" / "0")
    (camera,) = train.cameras.values()
    focal = 0.5 * W / math.tan(0.45)
    assert camera.model == "OPENCV"
    np.testing.assert_allclose(camera.params, [focal, focal, W / 2, H / 2, -0.12, 0.03, 0.001, -0.0005])
    val = read_model(tmp_path / "out" / "val" / "sparse" / "0")
    # the test file gives no distortion: the training file's applies (as its intrinsics would), per frame
    assert sorted(c.model for c in val.cameras.values()) == ["FULL_OPENCV", "OPENCV"]
    full = next(c for c in val.cameras.values() if c.model == "FULL_OPENCV")
    np.testing.assert_allclose(full.params[4:], [0.05, 0.03, 0.001, -0.0005, 0.01, 0, 0, 0])
    scene = load_scene(DataConfig(path=str(tmp_path / "out")))  # distorted cameras load undistorted
    assert "images_undistorted" in scene.train[0].image_path.parts
    meta["k4"] = 0.01
    (tmp_path / "mc" / "pose" / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="k4/k5/k6 are not read"):
        convert.matrixcity_to_colmap(paths(tmp_path / "mc"), tmp_path / "mc" / "aerial", tmp_path / "out2")
    meta["is_fisheye"] = True
    (tmp_path / "mc" / "pose" / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="fisheye camera"):
        convert.matrixcity_to_colmap(paths(tmp_path / "mc"), tmp_path / "mc" / "aerial", tmp_path / "out2")


def make_colmap_folder(folder: Path, n: int = 6) -> ColmapModel:
    """``folder/images`` (PNG) + ``folder/sparse/0``: n cameras around the origin, 30 points with tracks."""
    rng = np.random.default_rng(0)
    cameras = {1: ColmapCamera(1, "PINHOLE", W, H, np.array([35.0, 36.0, 19.0, 15.5])),
               2: ColmapCamera(2, "SIMPLE_PINHOLE", W, H, np.array([33.0, 20.0, 15.0]))}
    images = {}
    for i in range(n):
        pose = nerf_pose(np.array([5 * math.cos(i), 5 * math.sin(i), 2.0]), np.zeros(3))
        R = (pose[:3, :3] * [1, -1, -1]).T
        name = f"img_{i:02d}.png"
        write_png(folder / "images" / name, i)
        images[i + 1] = ColmapImage(i + 1, rotmat_to_qvec(R), -R @ pose[:3, 3], 1 + i % 2, name,
                                    rng.uniform(0, W, (3, 2)), np.array([i, i + 1, -1]))
    model = ColmapModel(cameras, images, rng.normal(size=(30, 3)), rng.integers(0, 255, (30, 3), np.uint8),
                        np.ones(30))
    write_model(model, folder / "sparse" / "0")
    return model


def test_mill19_split_round_trip(tmp_path):
    make_colmap_folder(tmp_path / "src")
    (tmp_path / "val.txt").write_text("# held out\nimg_01.png\nimg_04.png\n")
    counts = convert.prepare_mill19(tmp_path / "src", tmp_path / "out", val_list=tmp_path / "val.txt")
    assert counts == {"train": 4, "val": 2}
    whole = load_scene(DataConfig(path=str(tmp_path / "src"), test_every=0))
    split = load_scene(DataConfig(path=str(tmp_path / "out")))
    assert [c.name for c in split.test] == ["img_01.png", "img_04.png"]
    by_name = {c.name: c for c in whole.train}
    for cam in split.train + split.test:
        assert torch.equal(cam.K, by_name[cam.name].K) and torch.equal(cam.world_to_cam, by_name[cam.name].world_to_cam)
        assert cam.image_path.resolve() == by_name[cam.name].image_path.resolve()
    np.testing.assert_array_equal(split.points, whole.points)
    assert convert.check_mill19(tmp_path / "out") == counts


def test_mill19_megannerf_release_fixed_in_place(tmp_path):
    """Mega-NeRF's *-pixsfm folders (rgbs/) plus CityGaussian's colmap_results/<scene>/{train,val}/sparse."""
    for split, n in (("train", 4), ("val", 2)):
        make_colmap_folder(tmp_path / "colmap" / split, n)
        (tmp_path / "pixsfm" / split).mkdir(parents=True)
        (tmp_path / "colmap" / split / "images").rename(tmp_path / "pixsfm" / split / "rgbs")
    copied = convert.prepare_mill19(tmp_path / "pixsfm", tmp_path / "copy", colmap=tmp_path / "colmap", copy=True)
    assert copied == {"train": 4, "val": 2} and not (tmp_path / "pixsfm" / "train" / "images").exists()
    counts = convert.prepare_mill19(tmp_path / "pixsfm", colmap=tmp_path / "colmap")
    assert counts == {"train": 4, "val": 2}
    assert (tmp_path / "pixsfm" / "train" / "images").is_symlink()
    assert len(load_scene(DataConfig(path=str(tmp_path / "pixsfm"))).test) == 2


def test_mill19_missing_image_is_named(tmp_path):
    make_colmap_folder(tmp_path / "src")
    (tmp_path / "src" / "images" / "img_03.png").unlink()
    (tmp_path / "val.txt").write_text("img_01.png\n")
    with pytest.raises(UserError, match="img_03.png"):
        convert.prepare_mill19(tmp_path / "src", tmp_path / "out", val_list=tmp_path / "val.txt")
    assert not (tmp_path / "out").exists()
    write_png(tmp_path / "src" / "images" / "img_03.png", 3)
    (tmp_path / "val.txt").write_text("nope.png\n")
    with pytest.raises(UserError, match="not in the model"):
        convert.prepare_mill19(tmp_path / "src", tmp_path / "out", val_list=tmp_path / "val.txt")


def test_downsample_builds_the_cache_and_cli(tmp_path, capsys):
    make_matrixcity(tmp_path / "mc")
    mc = tmp_path / "mc"
    assert main(["convert", "matrixcity", "--train", str(mc / "pose" / "transforms_train.json"),
                 "--test", str(mc / "pose" / "transforms_test.json"), "--images", str(mc / "aerial"),
                 "--out", str(tmp_path / "out"), "--num-points", "50"]) == 0
    assert "4 training and 2 test views, 50 points" in capsys.readouterr().out
    assert main(["convert", "downsample", str(tmp_path / "out"), "--factor", "2"]) == 0
    folders = [Path(line) for line in capsys.readouterr().out.split()]
    assert folders == [tmp_path / "out" / "train" / "images_2", tmp_path / "out" / "val" / "images_2"]
    for folder in folders:
        files = sorted(folder.rglob("*.png"))
        assert len(files) == (4 if folder.parent.name == "train" else 2)
        assert all(read_image(f).shape == (H // 2, W // 2, 3) for f in files)
    assert main(["convert", "mill19", str(tmp_path / "out"), "--check"]) == 0
    assert "4 training and 2 validation images" in capsys.readouterr().out
