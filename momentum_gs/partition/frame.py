"""The grid frame: the scene's up (:mod:`momentum_gs.data.up`) aligned with a world axis."""

from __future__ import annotations

import numpy as np


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
