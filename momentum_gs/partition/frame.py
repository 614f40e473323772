"""The scene's up axis and the grid frame: estimating up from the cameras, aligning it with a world axis."""

from __future__ import annotations

import numpy as np

from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError


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


def up_rotation(up: np.ndarray, snap_deg: float = 10.0) -> tuple[np.ndarray, int]:
    """([3, 3] world → grid rotation, index of the grid's vertical axis) for a world ``up`` vector.

    The vertical axis is the world axis closest to ``up``. Within ``snap_deg`` of it the rotation is the
    identity (the box stays in world coordinates); otherwise it is the smallest rotation taking ``up`` onto
    that axis, so that the grid's cuts are vertical planes of the scene.
    """
    up = np.asarray(up, np.float64)
    up = up / np.linalg.norm(up)
    axis = int(np.argmax(np.abs(up)))
    target = np.zeros(3)
    target[axis] = np.sign(up[axis])
    cos = float(np.clip(up @ target, -1.0, 1.0))
    if np.degrees(np.arccos(cos)) <= snap_deg:
        return np.eye(3), axis
    v = np.cross(up, target)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + cos), axis  # Rodrigues with sin² = |v|²


def map_axes(rotation: np.ndarray, up: np.ndarray | None, block_dim: tuple[int, int, int]) -> tuple[int, int]:
    """(right, forward) grid axes of a top-down map, seen from above (right × forward = up).

    Without an up direction the vertical is taken as the axis with the fewest cells (z on ties).
    """
    if up is not None:
        g = rotation @ np.asarray(up, np.float64)
        vertical, positive = int(np.argmax(np.abs(g))), g[int(np.argmax(np.abs(g)))] > 0
    else:
        vertical, positive = max(range(3), key=lambda a: (-block_dim[a], a)), True
    right, forward = (vertical + 1) % 3, (vertical + 2) % 3  # cyclic, so right × forward = +vertical
    return (right, forward) if positive else (forward, right)
