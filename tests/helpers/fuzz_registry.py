"""The readers under fuzzing, one :class:`~tests.helpers.fuzz.Reader` each: a name, a valid sample file from tiny
generated data, and a read through the real reader. ``tests/test_fuzz.py`` (short) and ``scripts/fuzz_readers.py``
(long) both run :data:`READERS`; a reader still to be hardened carries its ``skip`` reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from momentum_gs.config import Config, load_config, to_dict
from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.colmap.model import SUPPORTED_MODELS, ColmapCamera, ColmapImage, ColmapModel
from momentum_gs.data.convert.matrixcity import _read_frames
from momentum_gs.data.georef import read_georef
from momentum_gs.data.images import MANIFEST, ImageJob, prepare_images
from momentum_gs.eval.camera_path_json import read_path_json
from momentum_gs.eval.results_file import read_results
from momentum_gs.export.scaffold import load_anchor_ply, save_anchor_ply
from momentum_gs.export.splat import load_splat, save_splat
from momentum_gs.export.spz import load_spz, save_spz
from momentum_gs.export.standard_ply import load_standard_ply, save_standard_ply
from momentum_gs.io.checkpoint import load_checkpoint, save_checkpoint
from momentum_gs.io.mesh import read_mesh, write_mesh
from momentum_gs.io.train_log import read_log
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.partition.partition import Partition
from momentum_gs.data.up import recorded_up
from momentum_gs.train.progress import _open_log
from tests.helpers.fuzz import Reader

# ---- COLMAP models ------------------------------------------------------------------------------------------
def tiny_model(rng: np.random.Generator) -> ColmapModel:
    """Cameras 1 and 2, images 1 to 3 (unique names, 0 to 4 keypoints each), 1 to 6 points: the ids stay the
    same whatever ``rng`` gives, so that any sample's file goes with any other sample's."""
    cameras = {}
    for cam_id in (1, 2):
        model = str(rng.choice(list(SUPPORTED_MODELS)))
        params = rng.uniform(-0.1, 0.1, SUPPORTED_MODELS[model])
        params[:2] = rng.uniform(10, 100, 2)  # focal lengths (or focal and cx) positive
        cameras[cam_id] = ColmapCamera(cam_id, model, int(rng.integers(1, 64)), int(rng.integers(1, 64)), params)
    n_points = int(rng.integers(1, 7))
    images = {}
    for image_id in (1, 2, 3):
        qvec = rng.normal(size=4)
        n = int(rng.integers(0, 5))
        images[image_id] = ColmapImage(image_id, qvec / np.linalg.norm(qvec), rng.normal(size=3),
                                       int(rng.integers(1, 3)), f"cam{image_id}/{int(rng.integers(1000))}.jpg",
                                       rng.uniform(0, 64, (n, 2)), rng.integers(-1, n_points, n))
    return ColmapModel(cameras, images, rng.normal(size=(n_points, 3)) * 10,
                       rng.integers(0, 256, (n_points, 3)).astype(np.uint8), rng.uniform(0, 2, n_points))


def _colmap_sample(file: str):
    binary = file.endswith(".bin")

    def sample(rng: np.random.Generator) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            write_model(tiny_model(rng), Path(folder), binary=binary)
            return (Path(folder) / file).read_bytes()
    return sample


def _colmap_read(file: str):
    def read(data: bytes, workdir: Path) -> object:
        folder = workdir / "sparse"
        if not folder.is_dir():  # the other two files, valid, once
            write_model(tiny_model(np.random.default_rng(0)), folder, binary=file.endswith(".bin"))
        (folder / file).write_bytes(data)
        return read_model(folder)
    return read


# ---- config files ---------------------------------------------------------------------------------------------
def _config_sample(rng: np.random.Generator) -> bytes:
    """A YAML file setting 1 to 8 keys of the config tree (their defaults, a few numbers moved within range)."""
    tree = to_dict(Config())
    keys = [(section, key) for section, values in tree.items() if isinstance(values, dict) for key in values]
    chosen: dict = {}
    for i in rng.choice(len(keys), int(rng.integers(1, 9)), replace=False):
        section, key = keys[i]
        value = tree[section][key]
        if isinstance(value, float) and 0 < value < 1:
            value = float(value * rng.uniform(0.5, 1.0))
        chosen.setdefault(section, {})[key] = value
    return yaml.safe_dump(chosen, sort_keys=False).encode()


def _config_read(data: bytes, workdir: Path) -> object:
    (workdir / "config.yaml").write_bytes(data)
    return load_config(workdir / "config.yaml")


# ---- the image cache's manifest -----------------------------------------------------------------------------
SOURCE_TIME_NS = 1_600_000_000 * 10**9  # the source image's fixed time, so that a sample can name its signature


def _source_png() -> bytes:
    pixels = (np.arange(4 * 4 * 3).reshape(4, 4, 3) * 5).astype(np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def _manifest_sample(rng: np.random.Generator) -> bytes:
    """The manifest of a cache folder with ``a.png`` (its true signature or a stale one) and 0 to 2 others."""
    size = len(_source_png()) + int(rng.integers(0, 2))  # 1: stale, rebuilt
    entries = {"a.png": f"{size}:{SOURCE_TIME_NS}:2x2:"}
    for i in range(int(rng.integers(0, 3))):
        entries[f"b{i}.png"] = f"{int(rng.integers(1, 10**6))}:{int(rng.integers(1, 10**18))}:2x2:"
    return json.dumps(entries, indent=0, sort_keys=True).encode()


def _manifest_read(data: bytes, workdir: Path) -> object:
    src, dst = workdir / "images" / "a.png", workdir / "images_2" / "a.png"
    if not src.is_file():
        src.parent.mkdir(parents=True, exist_ok=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(_source_png())
        os.utime(src, ns=(SOURCE_TIME_NS, SOURCE_TIME_NS))
    (dst.parent / MANIFEST).write_bytes(data)
    return prepare_images([ImageJob(src, dst, (2, 2), (4, 4))], workers=1)


# ---- exports, checkpoints, partitions and the JSON side files ------------------------------------------------
def _gaussians(rng: np.random.Generator, degree: int = 0):
    n = int(rng.integers(1, 6))
    quats = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(n, 4)), dtype=torch.float32), dim=1)
    return StandardGaussians(torch.as_tensor(rng.normal(size=(n, 3)), dtype=torch.float32), quats,
                             torch.as_tensor(rng.uniform(0.01, 1, (n, 3)), dtype=torch.float32),
                             torch.as_tensor(rng.uniform(0.05, 0.95, n), dtype=torch.float32),
                             torch.as_tensor(rng.uniform(-1, 1, (n, (degree + 1) ** 2, 3)), dtype=torch.float32))


def _through_file(name: str, write, read):
    """(sample, read) for a reader of one file: ``write(rng, path)`` makes a valid one, ``read(path)`` reads."""
    def sample(rng: np.random.Generator) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            write(rng, Path(folder) / name)
            return (Path(folder) / name).read_bytes()

    def read_bytes(data: bytes, workdir: Path) -> object:
        (workdir / name).write_bytes(data)
        return read(workdir / name)
    return sample, read_bytes


def _spz():
    return _through_file("g.spz", lambda rng, path: save_spz(_gaussians(rng), path), load_spz)


def _splat():
    return _through_file("g.splat", lambda rng, path: save_splat(_gaussians(rng), path), load_splat)


def _standard_ply():
    return _through_file("point_cloud.ply", lambda rng, path: save_standard_ply(_gaussians(rng, 1), path),
                         load_standard_ply)


def _anchor_ply():
    def write(rng, path):
        n = int(rng.integers(1, 6))
        save_anchor_ply(AnchorSet(torch.as_tensor(rng.normal(size=(n, 3)), dtype=torch.float32), 0.1, 4, 2), path)
    return _through_file("point_cloud.ply", write, lambda path: load_anchor_ply(path, 0.1))


def _mesh_ply():
    def write(rng, path):
        write_mesh(path, rng.normal(size=(4, 3)).astype(np.float32), np.array([[0, 1, 2], [1, 2, 3]], np.int32),
                   rng.integers(0, 256, (4, 3)).astype(np.uint8))
    return _through_file("m.ply", write, read_mesh)


def _checkpoint():
    def write(rng, path):
        save_checkpoint(path, int(rng.integers(0, 100)), {"w": torch.as_tensor(rng.normal(size=3))})
    return _through_file("step_1.pt", write, load_checkpoint)


def _json_file(name: str, make, read):
    """(sample, read) for a JSON file: ``make(rng)`` gives the valid object."""
    return (lambda rng: json.dumps(make(rng), indent=1).encode(), _through_file(name, None, read)[1])


def _camera_path():
    def make(rng):
        frames = [{"camera_to_world": np.eye(4).reshape(-1).tolist()[:12] + [0.0, 0.0, 0.0, 1.0],
                   "fov": float(rng.uniform(20, 90)), "aspect": 1.5} for _ in range(int(rng.integers(2, 5)))]
        return {"camera_type": "perspective", "render_width": 48, "render_height": 32, "fps": 30.0,
                "camera_path": frames}
    return _json_file("path.json", make, read_path_json)


def _georef():
    def make(rng):
        return {"origin": {"lat": float(rng.uniform(-80, 80)), "lon": float(rng.uniform(-180, 180)),
                           "alt": float(rng.uniform(0, 500))}}
    return _json_file("georef.json", make, lambda path: read_georef(path.parent))


def _scene_json():
    return _json_file("scene.json", lambda rng: {"up": rng.normal(size=3).tolist()}, lambda path: recorded_up(path.parent))


def _results_json():
    def make(rng):
        return {"psnr": float(rng.uniform(15, 35)), "ssim": float(rng.uniform(0.5, 1)),
                "lpips": [None, float(rng.uniform(0, 0.5))][int(rng.integers(2))], "num_test_views": 4,
                "num_anchors": int(rng.integers(0, 10**6)), "num_gaussians": int(rng.integers(0, 10**7)),
                "storage_mb": float(rng.uniform(0, 100)), "fps": float(rng.uniform(1, 300)),
                "step": int(rng.integers(0, 10**5)), "lpips_note": "put the weights in ...",
                "lpips_note_said_before": bool(rng.integers(2))}
    return _json_file("results.json", make, read_results)


def _transforms_json():
    """A transforms file of 3 frames (one image, poses 4x4 and 3x4, intrinsics per file and per frame, with lens
    distortion), read as ``mgs convert matrixcity`` reads a split: poses, intrinsics and distortion made into
    frames. Every sample takes every path, so that the warm-up read makes numpy's first-use allocations."""
    def make(rng):
        frames = []
        for i in range(3):
            pose = np.eye(4)
            pose[:3, 3] = rng.normal(size=3) * 10
            frame = {"file_path": ["../block_1/a", "block_1/a.png", "block_1/input/a"][i % 3],
                     "transform_matrix": pose[:4 - i % 2].tolist()}
            if i == 1:
                frame.update({"fl_x": 40.0, "fl_y": 41.0, "cx": 16.0, "cy": 12.0, "k1": 0.01, "p2": 0.001})
            frames.append(frame)
        return {"camera_angle_x": float(rng.uniform(0.3, 2)), "w": 32, "h": 24, "frames": frames}

    def read(path):
        image = path.parent / "block_1" / "input" / "a.png"
        if not image.is_file():
            image.parent.mkdir(parents=True)
            cv2.imwrite(str(image), np.zeros((24, 32, 3), np.uint8))
        return _read_frames([path], [path.parent], {}, 1.0)
    return _json_file("transforms.json", make, read)


def _train_log():
    """A train.log of 1 to 20 lines, read as a resume (dropping the lines after step 50) and ``mgs table`` do."""
    def sample(rng):
        lines = [json.dumps({"step": 10 * i, "loss": float(rng.uniform(0, 1)), "psnr": float(rng.uniform(10, 30)),
                             "num_gaussians": int(rng.integers(0, 1000))}) for i in range(1, int(rng.integers(2, 21)))]
        return ("\n".join(lines) + "\n").encode()

    def read(data, workdir):
        (workdir / "train.log").write_bytes(data)
        entries = read_log(workdir / "train.log")
        _open_log(workdir / "train.log", 50).close()
        return entries
    return sample, read


def _partition():
    def write(rng, path):
        points = np.zeros(4, np.int64)
        Partition([0.0, 0, 0], [1.0, 1, 1], (1, 1, 1), points, [np.arange(4)], [np.arange(2)]).save(path)
    return _through_file("partition.npz", write, Partition.load)


# gzip expands at most 1032 times (spz.MAX_DEFLATE_RATIO, checked from the header before any allocation), and a
# Gaussian of SH degree 3 packed in 65 bytes peaks at about 910 traced bytes while unpacked (numpy temporaries): 14
# per packed byte, measured up to 14,440 x the file's size on zero-filled files at the bound.
SPZ_MEMORY_FACTOR = 1032 * 15


def _made(name: str, make, text: bool = False, memory_factor: float = 64) -> Reader:
    sample, read = make()
    return Reader(name, sample, read, text=text, memory_factor=memory_factor)


READERS: list[Reader] = [
    Reader("colmap cameras.bin", _colmap_sample("cameras.bin"), _colmap_read("cameras.bin"), memory_factor=64),
    Reader("colmap images.bin", _colmap_sample("images.bin"), _colmap_read("images.bin"), memory_factor=64),
    Reader("colmap points3D.bin", _colmap_sample("points3D.bin"), _colmap_read("points3D.bin"), memory_factor=64),
    Reader("colmap cameras.txt", _colmap_sample("cameras.txt"), _colmap_read("cameras.txt"), True, 64),
    Reader("colmap images.txt", _colmap_sample("images.txt"), _colmap_read("images.txt"), True, 64),
    Reader("colmap points3D.txt", _colmap_sample("points3D.txt"), _colmap_read("points3D.txt"), True, 64),
    Reader("config yaml", _config_sample, _config_read, text=True, memory_factor=1024),
    Reader("image cache manifest", _manifest_sample, _manifest_read, text=True, memory_factor=64),
    _made("3dgs ply", _standard_ply),
    _made("anchor ply", _anchor_ply),
    _made("spz", _spz, memory_factor=SPZ_MEMORY_FACTOR),
    _made("splat", _splat),
    _made("mesh ply", _mesh_ply),
    _made("checkpoint", _checkpoint),
    _made("partition", _partition),
    _made("georef.json", _georef, text=True),
    _made("scene.json", _scene_json, text=True),
    _made("camera-path json", _camera_path, text=True),
    _made("results.json", _results_json, text=True),
    _made("transforms.json", _transforms_json, text=True),
    _made("train.log", _train_log, text=True),
]
