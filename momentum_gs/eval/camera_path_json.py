"""Camera paths as nerfstudio's camera-path JSON (what its viewer exports and ``ns-render camera-path`` reads).

The file::

    {"camera_type": "perspective", "render_width": 1280, "render_height": 720, "fps": 30, "seconds": 4.0,
     "camera_path": [{"camera_to_world": [16 numbers, a row-major 4x4], "fov": 50.0, "aspect": 1.777}, ...]}

``camera_to_world`` may also be a nested 4x4 list. It uses OpenGL axes (x right, y up, z backwards) and is
read in this scene's own world frame, the frame of its COLMAP model: nerfstudio's dataparser transform
(the re-centring and scaling it applies to a dataset) is not applied, so a path exported from nerfstudio's
viewer must be in the COLMAP frame. ``fov`` is the vertical field of view in degrees; the principal point
is the image centre and pixels are square (``aspect`` is written for nerfstudio but not read: the frame
size gives it). One entry is one video frame; ``fps`` (else frames / ``seconds``, else 30) is the frame rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from momentum_gs.errors import UserError
from momentum_gs.eval.camera_path import CameraPath
from momentum_gs.io.atomic import atomic_write_text

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips y and z; its own inverse (CV_TO_GL is the same matrix)
ROTATION_TOLERANCE = 1e-4  # largest |R^T R - I| entry accepted (files written in float32 are off by ~1e-7)


def path_to_json(path: CameraPath) -> dict:
    """The nerfstudio camera-path dictionary of ``path``."""
    frames = [{"camera_to_world": (pose @ GL_TO_CV).reshape(-1).tolist(), "fov": float(fov),
               "aspect": path.width / path.height} for pose, fov in zip(path.cam_to_world, path.fov_y)]
    return {"camera_type": "perspective", "render_width": path.width, "render_height": path.height,
            "fps": path.fps, "seconds": path.seconds, "camera_path": frames}


def write_path_json(path: CameraPath, file: str | Path) -> Path:
    """Write ``path`` as a nerfstudio camera-path file (atomically); returns the file."""
    file = Path(file)
    data = path_to_json(path)
    cameras = ",\n  ".join(json.dumps(camera) for camera in data.pop("camera_path"))  # one line per frame
    header = json.dumps(data, indent=1)[:-2]
    atomic_write_text(file, f'{header},\n "camera_path": [\n  {cameras}\n ]\n}}\n')
    return file


def read_path_json(file: str | Path) -> CameraPath:
    """The camera path in a nerfstudio camera-path file (see the module docstring); a UserError names the
    first thing wrong with it."""
    file = Path(file)
    if not file.is_file():
        raise UserError(f"camera path {file} does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"camera path {file} is not valid JSON ({str(exc).splitlines()[0][:100]})")
    except RecursionError:
        raise UserError(f"camera path {file} is nested too deeply to be a camera path (nerfstudio's format is flat)")
    return path_from_json(data, str(file))


def path_from_json(data, where: str = "camera path") -> CameraPath:
    """The :class:`CameraPath` of a parsed camera-path dictionary; ``where`` names it in errors."""
    if not isinstance(data, dict) or not isinstance(data.get("camera_path"), list):
        raise UserError(f"{where}: expected an object with a 'camera_path' list (nerfstudio's camera-path format)")
    frames = data["camera_path"]
    if len(frames) < 2:
        raise UserError(f"{where}: 'camera_path' has {len(frames)} cameras; a video needs at least 2")
    width = int(_positive(data, "render_width", where, integer=True))
    height = int(_positive(data, "render_height", where, integer=True))
    poses, fovs = [], []
    for i, frame in enumerate(frames):
        at = f"{where}: camera_path[{i}]"
        if not isinstance(frame, dict):
            raise UserError(f"{at} is not an object with 'camera_to_world' and 'fov'")
        poses.append(_pose(frame.get("camera_to_world"), at) @ GL_TO_CV)
        fov = frame.get("fov")
        if not _number(fov) or not 0 < fov < 180:
            raise UserError(f"{at}: 'fov' is {json.dumps(fov)}, expected the vertical field of view in degrees, "
                            "in (0, 180)")
        fovs.append(float(fov))
    if "fps" in data:
        fps = _positive(data, "fps", where)
    elif "seconds" in data:
        fps = len(frames) / _positive(data, "seconds", where)
    else:
        fps = 30.0
    return CameraPath(np.stack(poses), np.array(fovs, np.float64), width, height, float(fps))


def _number(value) -> bool:
    """Whether ``value`` is a finite JSON number (not a bool; json reads NaN and Infinity as floats)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(data: dict, key: str, where: str, integer: bool = False) -> float:
    """``data[key]``, checked to be a finite positive number (a whole one with ``integer``)."""
    value = data.get(key)
    if not _number(value) or value <= 0 or (integer and value != int(value)):
        kind = "a positive whole number" if integer else "a positive number"
        raise UserError(f"{where}: '{key}' is {json.dumps(value)}, expected {kind}")
    return float(value)


def _pose(value, where: str) -> np.ndarray:
    """[4, 4] float64 camera-to-world matrix (OpenGL axes) from 16 numbers or a nested 4x4 list, checked to be
    a rigid transform; the rotation is re-orthonormalised."""
    if isinstance(value, list) and len(value) == 4 and all(isinstance(row, list) for row in value):
        value = [x for row in value for x in row]
    if not isinstance(value, list) or len(value) != 16 or not all(_number(x) for x in value):
        raise UserError(f"{where}: 'camera_to_world' must be 16 finite numbers (a row-major 4x4 matrix)")
    matrix = np.array(value, np.float64).reshape(4, 4)
    if np.abs(matrix[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise UserError(f"{where}: the last row of 'camera_to_world' is {matrix[3].tolist()}, not [0, 0, 0, 1]")
    R = matrix[:3, :3]
    error = np.abs(R.T @ R - np.eye(3)).max()
    if error > ROTATION_TOLERANCE or np.linalg.det(R) < 0:
        raise UserError(f"{where}: the 3x3 part of 'camera_to_world' is not a rotation (|R^T R - I| = {error:.2g}, "
                        f"det = {np.linalg.det(R):.3g})")
    U, _, Vt = np.linalg.svd(R)
    matrix[:3, :3] = U @ Vt
    return matrix
