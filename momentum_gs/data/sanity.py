"""Scenes that are valid but that training cannot make sense of, said before training starts.

A COLMAP model in units a million times too large or too small, or with cameras that look away from every
point, reads without an error and trains to a loss of 1e15 or to no Gaussians at all. :func:`scene_warnings`
measures what training depends on (how far the cameras are from what they see, and whether they see the
points at all) and returns one line per problem, with what to do; ``mgs train`` prints them as warnings.
"""

from __future__ import annotations

import numpy as np

from momentum_gs.data.camera import Camera

# The distances (world units) from a camera to what it sees that training handles: the defaults that are in
# world units (render.near 0.2, the voxel size from point spacing, learning rates scaled by the extent) are
# tuned for scenes from about one to some ten thousand units across (COLMAP's arbitrary units, metres).
NEAR_FACTOR = 2  # the median depth should be at least this many times render.near
FAR_DEPTH = 1e5  # beyond this float32 positions keep fewer than 3 significant digits of a 1-unit detail
MAX_POINTS = 20_000  # points and cameras looked at; enough for medians and "sees none"
MAX_CAMERAS = 500


def visible_depths(camera: Camera, points: np.ndarray) -> np.ndarray:
    """[V] camera-frame depths of the ``points`` [P, 3] that lie in front of ``camera`` and inside its image."""
    w2c = camera.world_to_cam.double().cpu().numpy()
    K = camera.K.double().cpu().numpy()
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    front = z > 0
    uv = cam[front, :2] / z[front, None] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    return z[front][inside]


def scene_warnings(cameras: list[Camera], points: np.ndarray, near: float) -> list[str]:
    """One line per way the scene's numbers are outside what training can handle, with what to do; [] if none.

    Args:
        cameras: the training cameras; points: [P, 3] SfM points, world units; near: ``render.near``.
    """
    if not len(points) or not cameras:
        return []
    rng = np.random.default_rng(0)  # its own stream: the training's random streams are not touched
    points = np.asarray(points, np.float64)
    if len(points) > MAX_POINTS:
        points = points[rng.choice(len(points), MAX_POINTS, replace=False)]
    step = max(1, len(cameras) // MAX_CAMERAS)
    looked = cameras[::step]
    depths = [visible_depths(camera, points) for camera in looked]
    blind = [camera for camera, d in zip(looked, depths) if not len(d)]
    lines = []
    if blind:
        share = len(blind) / len(looked)
        lines.append(
            f"{len(blind)} of {len(looked)} training cameras see none of the SfM points in front of them "
            f"(e.g. {blind[0].name}): {'all' if share == 1 else 'those'} would train on nothing. Check that the "
            "poses are COLMAP's world-to-camera (a camera-to-world pose looks away from the scene) and that the "
            "points belong to this model")
    seen = [d for d in depths if len(d)]
    if seen:
        median = float(np.median(np.concatenate(seen)))
        if near > 0 and median < NEAR_FACTOR * near:
            lines.append(
                f"the cameras are a median {median:.3g} world units from the points they see, close to "
                f"render.near={near:g} (anchors nearer than that are culled): the model is probably in much "
                f"smaller units than usual. Scale the model up (e.g. to metres), or set render.near={median / 100:.2g}")
        elif median > FAR_DEPTH:
            lines.append(
                f"the cameras are a median {median:.3g} world units from the points they see: at that scale float32 "
                "positions and the default learning rates do not fit. Scale the model down so that the cameras are "
                "1 to 10000 units from the scene (e.g. metres, or COLMAP's own units)")
    return lines
