"""A COLMAP sparse model in memory (cameras, images, the point cloud), the camera models training reads, the
rotations between quaternions and matrices, and the checks a model read from disk must pass.

Point ids are not kept: ``ColmapImage.point3d_ids`` are rows of ``ColmapModel.points``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momentum_gs.errors import UserError
from momentum_gs.ranges import FLOAT32_MAX, MAX_WIDTH, shown

# Every model id COLMAP defines, so that an unsupported one is named in the error instead of "unknown".
CAMERA_MODELS: dict[int, str] = dict(enumerate(
    "SIMPLE_PINHOLE PINHOLE SIMPLE_RADIAL RADIAL OPENCV OPENCV_FISHEYE FULL_OPENCV FOV SIMPLE_RADIAL_FISHEYE "
    "RADIAL_FISHEYE THIN_PRISM_FISHEYE RAD_TAN_THIN_PRISM_FISHEYE SIMPLE_DIVISION DIVISION SIMPLE_FISHEYE FISHEYE "
    "EUCM EQUIRECTANGULAR".split()))  # fmt: skip
MODEL_IDS = {name: model_id for model_id, name in CAMERA_MODELS.items()}
# The models OpenCV's distortion model covers (so we can undistort them), with their parameter counts.
SUPPORTED_MODELS: dict[str, int] = {
    "SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8, "FULL_OPENCV": 12,
}  # fmt: skip


@dataclass
class ColmapCamera:
    """One COLMAP camera; ``params`` in COLMAP's order for ``model``, in pixels (pixel centres at +0.5)."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64


@dataclass
class ColmapImage:
    """One registered image; ``qvec`` (w, x, y, z) and ``tvec`` map world to camera coordinates."""

    id: int
    qvec: np.ndarray  # [4] w,x,y,z world-to-camera rotation
    tvec: np.ndarray  # [3] world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray | None = None  # [n,2] keypoints in pixels (may be empty)
    point3d_ids: np.ndarray | None = None  # [n] int64 row of ColmapModel.points, -1 = none


@dataclass
class ColmapModel:
    """A sparse reconstruction: cameras and images by id, the point cloud as arrays."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [P,3] float64 xyz
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))  # [P,3] uint8
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P] float64 reprojection error


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """[4] quaternion (w, x, y, z; normalised here) → [3, 3] rotation matrix."""
    w, x, y, z = np.asarray(qvec, np.float64) / np.linalg.norm(qvec)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices → [..., 4] unit quaternions (w, x, y, z) with w >= 0."""
    R = np.asarray(R, np.float64)
    (a, b, c), (d, e, f), (g, h, i) = (tuple(R[..., r, col] for col in range(3)) for r in range(3))
    # Row k holds 4 q_k q_j for j = w, x, y, z; the row with the largest diagonal 4 q_k^2 divides safely.
    P = np.stack([np.stack(row, -1) for row in ([1 + a + e + i, h - f, c - g, d - b],
                                                [h - f, 1 + a - e - i, b + d, c + g],
                                                [c - g, b + d, 1 - a + e - i, f + h],
                                                [d - b, c + g, f + h, 1 - a - e + i])], -2)
    k = np.argmax(np.diagonal(P, axis1=-2, axis2=-1), -1)[..., None, None]
    row = np.take_along_axis(P, k, -2)[..., 0, :]
    q = row / (2 * np.sqrt(np.take_along_axis(row, k[..., 0], -1)))
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] >= 0, 1.0, -1.0)


def check_camera(camera_id: int, model: str, n_params: int, where: str) -> None:
    """Raise a UserError unless ``model`` is supported and has its number of parameters."""
    if model not in SUPPORTED_MODELS:
        known = "" if model in MODEL_IDS else " (not a COLMAP camera model)"
        raise UserError(f"{where}: camera {camera_id} uses the {model} model{known}, which is not supported "
                        f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort the images with "
                        "`colmap image_undistorter` first")
    if n_params != SUPPORTED_MODELS[model]:
        raise UserError(f"{where}: camera {camera_id} ({model}) has {n_params} params, not {SUPPORTED_MODELS[model]}")


# The focal-length parameters of each supported model (the rest are principal point and distortion).
_FOCALS = {"SIMPLE_PINHOLE": 1, "PINHOLE": 2, "SIMPLE_RADIAL": 1, "RADIAL": 1, "OPENCV": 2, "FULL_OPENCV": 2}


def image_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an image name inside ``images/`` (empty, absolute, leaving the folder through
    ``..``, a drive or a NUL), or None when it is fine; sub-folders such as ``cam1/0001.jpg`` are fine."""
    if not name or "\0" in name:
        return "is empty or holds a NUL byte"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "points outside the images folder"
    return None


def _float32(values: np.ndarray) -> bool:
    """Whether every value is finite in float32, the type cameras and points are trained in (NaN is not)."""
    return bool((np.abs(values) <= FLOAT32_MAX).all())


def validate_model(model: ColmapModel, files: dict[str, Path]) -> None:
    """Refuse, with one line naming the record, what would poison training or reach outside the dataset:
    poses, parameters or points that are not finite in float32, zero-length quaternions, non-positive focal
    lengths, sizes outside 1 to ``MAX_WIDTH`` pixels, image names that leave ``images/`` and names that appear
    twice."""
    for cam in model.cameras.values():
        where = f"{files['cameras']}: camera {cam.id}"
        if not (0 < cam.width <= MAX_WIDTH and 0 < cam.height <= MAX_WIDTH):
            raise UserError(f"{where} has size {cam.width}x{cam.height}; width and height must be positive and "
                            f"at most {MAX_WIDTH} pixels")
        if not _float32(cam.params):
            raise UserError(f"{where} has non-finite parameters {shown(cam.params.tolist())} (float32's range counts)")
        if (cam.params[: _FOCALS[cam.model]] <= 0).any():
            raise UserError(f"{where} has focal length {cam.params[: _FOCALS[cam.model]].tolist()}; it must be "
                            "positive (pixels)")
    names: dict[str, int] = {}
    for image in model.images.values():
        where = f"{files['images']}: image {image.id} ({image.name!r})"
        problem = image_name_problem(image.name)
        if problem:
            raise UserError(f"{where}: the name {problem}; names are paths relative to images/")
        if image.name in names:
            raise UserError(f"{files['images']}: images {names[image.name]} and {image.id} are both named "
                            f"{image.name!r}; each image needs its own file")
        names[image.name] = image.id
        if not (_float32(image.qvec) and _float32(image.tvec)):
            raise UserError(f"{where} has a non-finite pose in float32 (q {shown(image.qvec.tolist())}, t "
                            f"{shown(image.tvec.tolist())}); drop the image or fix its pose")
        norm = math.hypot(*image.qvec.tolist())
        if not 1e-6 < norm < 1e6:
            raise UserError(f"{where} has a rotation quaternion of length {norm:.3g}, which is not a rotation; "
                            "drop the image or fix its pose")
    bad = ~(np.abs(model.points) <= FLOAT32_MAX).all(axis=1)  # NaN too
    if bad.any():
        raise UserError(f"{files['points3D']}: {int(bad.sum())} of {len(bad)} points have non-finite coordinates "
                        f"in float32 (first: row {int(np.flatnonzero(bad)[0])}); the model is corrupt")
