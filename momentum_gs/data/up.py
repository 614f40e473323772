"""Which way is up in a training scene, in one place.

:func:`scene_up` answers for every part that needs it (the partition's grid, the maps' frame, the camera paths,
the viewer's overlays): z in a georeferenced scene (``mgs sfm`` writes it in level ENU metres), the ``up`` a
``scene.json`` records (the synthetic scenes), else the direction the training cameras suggest
(:func:`estimate_up`). Finding up while a reconstruction is being placed, from the geometry alone, is
:mod:`momentum_gs.data.sfm.up`'s work; the scene it writes then answers here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from momentum_gs.data.camera import Camera
from momentum_gs.data.georef import read_georef
from momentum_gs.data.scene_info import SCENE_INFO_NAME, read_scene_info
from momentum_gs.errors import UserError


def scene_up(root: str | Path | None, cameras: list[Camera], strict: bool = True) -> tuple[np.ndarray | None, str]:
    """(unit [3] up, where it came from) of the scene in folder ``root`` (None: no folder) with training
    ``cameras``: z with a georef.json, the recorded up of a scene.json, else :func:`estimate_up` (None when it
    cannot tell and not ``strict``)."""
    if root is not None and read_georef(Path(root)) is not None:
        return np.eye(3)[2], "z, the georeferenced scene's (level ENU)"
    recorded = recorded_up(root) if root is not None else None
    if recorded is not None:
        return recorded / np.linalg.norm(recorded), "from scene.json"
    return estimate_up(cameras, strict), "from the training cameras"


def recorded_up(root: str | Path) -> np.ndarray | None:
    """The ``up`` vector recorded in ``root/scene.json`` (synthetic scenes), or None; a UserError for a
    ``scene.json`` that does not read (:mod:`momentum_gs.data.scene_info`) or an up of length zero."""
    info = read_scene_info(root)
    if info is None or "up" not in info:
        return None
    up = np.asarray(info["up"], np.float64)
    if np.linalg.norm(up) < 1e-6:
        raise UserError(f"{Path(root) / SCENE_INFO_NAME}: up is {info['up']}, expected a direction (not zero)")
    return up


def camera_arrays(cameras: list[Camera]) -> tuple[np.ndarray, np.ndarray]:
    """([C, 3] centres, [C, 3, 3] world-to-camera rotations) in float64 world units."""
    if not cameras:
        return np.zeros((0, 3)), np.zeros((0, 3, 3))
    poses = np.stack([cam.world_to_cam.double().cpu().numpy() for cam in cameras])
    R, t = poses[:, :3, :3], poses[:, :3, 3]
    return -np.einsum("cji,cj->ci", R, t), R


def estimate_up(cameras: list[Camera], strict: bool = True) -> np.ndarray | None:
    """[3] unit world up direction estimated from the training cameras.

    A flat layout of camera centres (a drone flight at constant altitude, or cars on flat ground) gives the
    plane normal, oriented like the cameras' own up vectors (−R[1], OpenCV y is down) or, for nadir views
    whose up vectors cancel out, against the mean viewing direction. Otherwise the mean of −R[1] is used
    (street views, orbits). Raises a UserError (or returns None if not ``strict``) when neither works.
    """
    centres, R = camera_arrays(cameras)
    mean_up = -R[:, 1, :].mean(0) if len(R) else np.zeros(3)
    if len(centres) >= 3:
        evals, evecs = np.linalg.eigh(np.cov((centres - centres.mean(0)).T))
        if evals[1] > 1e-12 and evals[0] < 0.05 * evals[1] and evals[1] > 0.01 * evals[2]:  # a plane, not a line
            normal = evecs[:, 0]
            sign = normal @ mean_up if abs(normal @ mean_up) > 0.1 else -(normal @ R[:, 2, :].mean(0))
            return normal * (1.0 if sign >= 0 else -1.0)
    if np.linalg.norm(mean_up) > 0.1:
        return mean_up / np.linalg.norm(mean_up)
    if strict:
        raise UserError("cannot tell the scene's up direction from the cameras; give it (e.g. --up 0,0,1)")
    return None
