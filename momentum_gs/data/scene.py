"""A scene on disk → train/test ``Camera`` lists and the SfM point cloud.

Two layouts are recognised from ``DataConfig.path``:
- one folder: ``images/`` + ``sparse/0/`` (or ``sparse/`` holding the model files); images sorted by name,
  every ``test_every``-th one (index % test_every == test_offset, 0 by default) held out;
- Mill-19 style: ``train/`` and ``val/`` (or ``test/``), each with ``images/`` + ``sparse/0/``; the point
  cloud comes from the training model.
Images are brought to the loaded resolution (and undistorted) once, into cache folders next to
``images/`` (see ``momentum_gs.data.images``); cameras point at the cached files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from momentum_gs.config import DataConfig
from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.folder import read_model
from momentum_gs.data.colmap.model import ColmapModel, qvec_to_rotmat
from momentum_gs.data.images import ImageJob, cache_suffix, default_cache_root, prepare_images, target_size
from momentum_gs.data.undistort import pinhole_intrinsics
from momentum_gs.errors import UserError


@dataclass
class SceneData:
    """Cameras of both splits (at the loaded resolution, undistorted) and the SfM points.

    Attributes:
        name: the scene folder's name.
        root: the scene folder.
        train, test: cameras; ``uid`` is the index within the split.
        points: [P, 3] float32 SfM points in world units; colors: [P, 3] uint8 RGB.
        source_size: (width, height) of the widest photo of the training split as stored, before any
            downsampling ((0, 0) where not known).
        errors: [P] the points' reprojection errors, pixels.
        observed: training image name → [n] int64 rows of ``points`` its keypoints triangulated; empty unless
            asked for (``load_scene(observations=True)``).
    """

    name: str
    root: Path
    train: list[Camera]
    test: list[Camera]
    points: np.ndarray
    colors: np.ndarray
    source_size: tuple[int, int] = (0, 0)
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    observed: dict[str, np.ndarray] = field(default_factory=dict)


def _sparse_dir(folder: Path) -> Path | None:
    """``folder/sparse/0`` or ``folder/sparse`` when it holds a model, else None."""
    for candidate in (folder / "sparse" / "0", folder / "sparse"):
        if any((candidate / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return candidate
    return None


def _split_folders(root: Path) -> dict[str, Path]:
    """{"all": root} for the one-folder layout, {"train": ..., "test": ...} for Mill-19; else a UserError."""
    test = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and test is not None:
        return {"train": root / "train", "test": test}
    if (root / "images").is_dir() and _sparse_dir(root) is not None:
        return {"all": root}
    raise UserError(
        f"{root} is not a scene folder: looked for images/ + sparse/0/ (or sparse/) holding a COLMAP model, and "
        "for train/ + val/ (or test/), each with images/ + sparse/0/ (Mill-19 layout)"
    )


def _world_to_cam(qvec: np.ndarray, tvec: np.ndarray) -> torch.Tensor:
    """[4, 4] float32 world-to-camera transform from a COLMAP pose."""
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = qvec_to_rotmat(qvec), tvec
    return torch.from_numpy(matrix).float()


def _cameras(model: ColmapModel, images_dir: Path, cfg: DataConfig, cache_root: Path, images: bool = True
             ) -> list[Camera]:
    """Cameras of all images in ``model``, sorted by name, at the loaded size, with their cached files."""
    cameras, jobs, intrinsics = [], [], {}
    for image in sorted(model.images.values(), key=lambda im: im.name):
        colmap_cam = model.cameras[image.camera_id]
        if image.camera_id not in intrinsics:
            intrinsics[image.camera_id] = pinhole_intrinsics(colmap_cam)
        K, undistorter = intrinsics[image.camera_id]
        size = target_size(colmap_cam.width, colmap_cam.height, cfg.downsample, cfg.max_width)
        full_size = (colmap_cam.width, colmap_cam.height)
        suffix = cache_suffix(cfg.downsample, cfg.max_width, undistorter is not None, colmap_cam.width)
        dst = None
        if undistorter is not None or size != full_size:
            folder = cache_root / f"{images_dir.name}_{suffix}"
            dst = folder / Path(image.name).with_suffix(".png")
            if not dst.resolve().is_relative_to(folder.resolve()):  # names are checked at load; a link is not
                raise UserError(f"image {image.name!r} would be cached outside {folder}; rename it")
        recipe = undistorter.recipe if undistorter is not None else ""
        jobs.append(ImageJob(images_dir / image.name, dst, size, full_size, undistorter, recipe))
        cam = Camera(image.name, *full_size, torch.from_numpy(K).float(), _world_to_cam(image.qvec, image.tvec))
        cameras.append(cam.scaled(*size) if size != full_size else cam)
    if not images:
        return cameras
    paths = prepare_images(jobs, root=cache_root)
    return [replace(cam, image_path=path) for cam, path in zip(cameras, paths)]


def _load_split(folder: Path, cfg: DataConfig, cache_root: Path | None, needs_points: bool, images: bool = True,
                keypoints: bool = False) -> tuple[ColmapModel, list[Camera]]:
    """Read one folder's model (its images' keypoints too when ``keypoints``) and make its cameras (images cached
    under ``cache_root`` if given)."""
    sparse = _sparse_dir(folder)
    if sparse is None:
        raise UserError(f"{folder} has no COLMAP model: expected sparse/0/ (or sparse/) with cameras, images "
                        "and points3D (.bin or .txt)")
    model = read_model(sparse, keypoints=keypoints)
    if not model.images:
        raise UserError(f"the COLMAP model in {sparse} has no registered images")
    if needs_points and len(model.points) == 0:
        raise UserError(f"{sparse}: points3D has no points; run COLMAP's mapper (or point_triangulator with known "
                        "poses) to triangulate the sparse point cloud that the Gaussians are initialised from")
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise UserError(f"{folder} has no images/ folder next to its COLMAP model")
    return model, _cameras(model, images_dir, cfg, cache_root or default_cache_root(images_dir), images)


def load_scene(cfg: DataConfig, cache_dir: Path | str | None = None, images: bool = True,
               observations: bool = False) -> SceneData:
    """Load the scene at ``cfg.path``: cameras of both splits and the SfM point cloud.

    Args:
        cfg: the data config (path, downsample / max_width, test_every).
        cache_dir: where to put the downsampled/undistorted image folders instead of next to ``images/``
            (for read-only datasets; by default a read-only dataset caches under ``$MGS_CACHE``).
        images: False for work that needs only poses and points (partitioning): the images are neither
            checked nor cached, and the cameras have no ``image_path``.
        observations: also read which points each training image observed (``SceneData.observed``).
    """
    if not cfg.path:
        raise UserError("data.path is not set: give the scene folder, e.g. data.path=data/mill19/rubble")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise UserError(f"data.path {root} does not exist (or is not a folder)")
    folders = _split_folders(root)
    cache = Path(cache_dir) if cache_dir is not None else None
    if "all" in folders:
        model, cameras = _load_split(root, cfg, cache, needs_points=True, images=images, keypoints=observations)
        held_out = [i % cfg.test_every == cfg.test_offset % cfg.test_every if cfg.test_every > 0 else False
                    for i in range(len(cameras))]
        train = [cam for cam, out in zip(cameras, held_out) if not out]
        test = [cam for cam, out in zip(cameras, held_out) if out]
    else:
        model, train = _load_split(folders["train"], cfg, cache / "train" if cache else None, needs_points=True,
                                   images=images, keypoints=observations)
        test = _load_split(folders["test"], cfg, cache / folders["test"].name if cache else None, False,
                           images=images)[1]
    if not train:
        raise UserError(f"{root}: no training images left (data.test_every={cfg.test_every} holds out all of them)")
    train = [replace(cam, uid=i) for i, cam in enumerate(train)]
    test = [replace(cam, uid=i) for i, cam in enumerate(test)]
    widest = max(model.cameras.values(), key=lambda camera: camera.width, default=None)
    source = (widest.width, widest.height) if widest is not None else (0, 0)
    observed = {im.name: np.asarray(im.point3d_ids, np.int64)[np.asarray(im.point3d_ids) >= 0]
                for im in model.images.values() if observations and im.point3d_ids is not None}
    observed = {cam.name: observed[cam.name] for cam in train if cam.name in observed}
    return SceneData(root.resolve().name, root, train, test, model.points.astype(np.float32), model.colors, source,
                     model.errors.astype(np.float32), observed)
