"""A COLMAP model folder read or written whole, in either format: :func:`read_model`, :func:`write_model`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from momentum_gs.data.colmap.binary import read_cameras_bin, read_images_bin, read_points_bin, write_bin
from momentum_gs.data.colmap.model import SUPPORTED_MODELS, ColmapImage, ColmapModel, validate_model
from momentum_gs.data.colmap.text import read_cameras_txt, read_images_txt, read_points_txt, write_txt
from momentum_gs.errors import UserError

_STEMS = ("cameras", "images", "points3D")


def _index_point_ids(images: dict[int, ColmapImage], point_ids: np.ndarray, path: Path) -> None:
    """Turn the COLMAP point ids of the images' keypoints into rows of the point arrays (-1 = none); a point id
    given twice in ``path`` is a UserError."""
    order = np.append(np.argsort(point_ids, kind="stable"), -1)
    twice = np.flatnonzero(np.diff(point_ids[order[:-1]]) == 0)
    if len(twice):
        raise UserError(f"{path}: point id {int(point_ids[order[twice[0]]])} appears twice; the model is corrupt "
                        "(re-export it from COLMAP)")
    # The sentinel after the largest id keeps searchsorted's answer a valid index that matches nothing.
    sorted_ids = np.append(point_ids[order[:-1]], np.iinfo(np.int64).max)
    for image in images.values():
        if image.point3d_ids is not None:
            pos = np.searchsorted(sorted_ids, image.point3d_ids)
            image.point3d_ids = np.where(sorted_ids[pos] == image.point3d_ids, order[pos], -1).astype(np.int64)


def _model_files(sparse_dir: Path) -> dict[str, Path]:
    """The three model files, ``.bin`` preferred per file; a UserError says what is missing."""
    if not sparse_dir.is_dir():
        raise UserError(f"COLMAP model folder {sparse_dir} does not exist")
    candidates = {stem: (sparse_dir / f"{stem}.bin", sparse_dir / f"{stem}.txt") for stem in _STEMS}
    files = {stem: next((p for p in paths if p.is_file()), None) for stem, paths in candidates.items()}
    missing = [f"{stem}.bin" for stem, path in files.items() if path is None]
    if missing:
        raise UserError(f"{sparse_dir} is not a complete COLMAP model: missing {', '.join(missing)} (a model "
                        "folder holds cameras, images and points3D as .bin or .txt, e.g. `colmap mapper`'s sparse/0)")
    return files


def read_model(sparse_dir: Path, keypoints: bool = True) -> ColmapModel:
    """Read a COLMAP model folder (``.bin`` preferred over ``.txt``; ``rigs``/``frames`` are ignored).

    Args:
        sparse_dir: folder holding ``cameras``, ``images`` and ``points3D``.
        keypoints: also read each image's keypoints and their point rows (off: faster, less memory).
    Returns:
        The model; ``points`` [P, 3] float64 world units, ``colors`` [P, 3] uint8, ``errors`` [P] pixels.
    """
    files = _model_files(Path(sparse_dir))
    binary = {stem: path.suffix == ".bin" for stem, path in files.items()}
    cameras = (read_cameras_bin if binary["cameras"] else read_cameras_txt)(files["cameras"])
    points = (read_points_bin if binary["points3D"] else read_points_txt)(files["points3D"])
    images = (read_images_bin if binary["images"] else read_images_txt)(files["images"], keypoints)
    for image in images.values():
        if image.camera_id not in cameras:
            raise UserError(f"{files['images']}: image {image.name} uses camera {image.camera_id}, "
                            f"which {files['cameras']} does not define")
    _index_point_ids(images, points["id"].astype(np.int64), files["points3D"])
    model = ColmapModel(cameras, images, points["xyz"].copy(), points["rgb"].copy(), points["error"].copy())
    validate_model(model, files)
    return model


def write_model(model: ColmapModel, sparse_dir: Path, binary: bool = True) -> None:
    """Write ``model`` into ``sparse_dir`` (created if needed) as ``.bin`` or ``.txt`` files.

    Point ids are written as ``row + 1``; tracks are rebuilt from the images' ``point3d_ids`` (empty when
    the images carry no keypoints). The other format's model files there are removed, so that a reader
    preferring ``.bin`` cannot pick up a stale model.
    """
    sparse_dir = Path(sparse_dir)
    sparse_dir.mkdir(parents=True, exist_ok=True)
    for cam in model.cameras.values():
        if cam.model not in SUPPORTED_MODELS or len(cam.params) != SUPPORTED_MODELS[cam.model]:
            raise ValueError(f"camera {cam.id}: {cam.model} with {len(cam.params)} params cannot be written")
    (write_bin if binary else write_txt)(model, sparse_dir)
    for stem in _STEMS:
        (sparse_dir / f"{stem}{'.txt' if binary else '.bin'}").unlink(missing_ok=True)
