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
from pathlib import Path

import numpy as np

from momentum_gs.errors import UserError
from momentum_gs.eval.camera_path import CameraPath
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.schema import ListOf, Number, Obj, OneOf, read_json
from momentum_gs.ranges import MAX_FRAMES, MAX_WIDTH, Range

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips y and z; its own inverse (CV_TO_GL is the same matrix)
ROTATION_TOLERANCE = 1e-4  # largest |R^T R - I| entry accepted (files written in float32 are off by ~1e-7)
SIDE = Number(Range(1, MAX_WIDTH), whole=True, note="pixels")
# a pose's entries: a rotation's are within [-1, 1], a position within 1e15 model units (products of such
# entries stay far from float64's overflow)
ENTRY = Number(Range(-1e15, 1e15), note="a rotation's entries are within [-1, 1], a position's within 1e15")
MATRIX = OneOf((ListOf(ENTRY, 16, 16), ListOf(ListOf(ENTRY, 4, 4), 4, 4)),
               "16 numbers within ±1e15 (a row-major 4x4 matrix) or a 4x4 list of them")
CAMERA = Obj({"camera_to_world": MATRIX,
              "fov": Number(Range(0, 180, open_low=True, open_high=True), note="the vertical field of view, degrees")})
# What is read of a camera-path file; nerfstudio's other keys (keyframes, aspect, crop...) are not looked into.
CAMERA_PATH = Obj({"render_width": SIDE, "render_height": SIDE, "camera_path": ListOf(CAMERA, 2, MAX_FRAMES)},
                  {"fps": Number(Range(0, 1000, open_low=True), note="frames per second"),
                   "seconds": Number(Range(1e-3, 1e6), note="the video's length")})


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
    return _camera_path(read_json(file, CAMERA_PATH, "camera path"), f"camera path {file}")


def _camera_path(data: dict, where: str) -> CameraPath:
    """The :class:`CameraPath` of a dictionary that has :data:`CAMERA_PATH`'s shape."""
    frames = data["camera_path"]
    poses = [_pose(frame["camera_to_world"], f"{where}: camera_path[{i}]") @ GL_TO_CV
             for i, frame in enumerate(frames)]
    fovs = [float(frame["fov"]) for frame in frames]
    fps = data["fps"] if "fps" in data else len(frames) / data["seconds"] if "seconds" in data else 30.0
    return CameraPath(np.stack(poses), np.array(fovs, np.float64), int(data["render_width"]),
                      int(data["render_height"]), float(fps))


def _pose(value: list, where: str) -> np.ndarray:
    """[4, 4] float64 camera-to-world matrix (OpenGL axes) from 16 numbers or a nested 4x4 list (their shape
    checked by :data:`CAMERA_PATH`), checked to be a rigid transform; the rotation is re-orthonormalised."""
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
