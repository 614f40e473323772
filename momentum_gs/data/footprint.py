"""Where the photos see the ground: the place a map covers and an export keeps.

The ground is the plane across ``up`` at the SfM points' median height. Each training photo's four corner rays,
widened by a share of the image on each side, are met with it; a ray that meets it more than :data:`REACH`
flight heights away from the camera's foot (or never: looking at or above the horizon) is cut at that distance,
so an oblique photo's view towards the horizon does not stretch the site without bound. The photos see the
ground inside the box of those points and of the cameras' feet: what lies above the ground in any photo lies
over that box (a camera's view down to the ground is the cone from the camera through its corners' points), so
a Gaussian beyond it is under the ground, seen through it, or beyond the capture.
"""

from __future__ import annotations

import numpy as np

REACH = 4.0  # the farthest ground a photo sees, in its flight heights from its foot (a ray 76° off the nadir)


def footprints(cameras: list, points: np.ndarray, up: np.ndarray, margin: float = 0.0,
               ground: float | None = None) -> list[np.ndarray]:
    """Per training camera above the ground, a [5, 3] array of world points: its foot, then its four corner rays
    met with the ground (module notes), the image widened by ``margin`` of its size on each side. The ground: the
    plane across unit ``up`` [3] at height ``ground`` along it (None: the SfM ``points``' median height; a lower
    one reaches the low ground of a valley the photos look into). Empty without ``points``."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if not len(points) or not cameras:
        return []
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    ground = float(np.median(points @ up)) if ground is None else ground
    found = []
    for camera in cameras:
        centre = camera.center.detach().double().cpu().numpy()
        height = float(centre @ up) - ground
        if height <= 0:
            continue
        foot = centre - height * up
        to_world = camera.cam_to_world.detach().double().cpu().numpy()[:3, :3]
        inverse = np.linalg.inv(camera.K.detach().double().cpu().numpy())
        w, h = camera.width, camera.height
        seen = [foot]
        for u, v in ((-margin * w, -margin * h), ((1 + margin) * w, -margin * h),
                     ((1 + margin) * w, (1 + margin) * h), (-margin * w, (1 + margin) * h)):
            ray = to_world @ inverse @ np.array([u, v, 1.0])
            down = -float(ray @ up)  # the ray's fall per unit of its length
            across = ray - (ray @ up) * up  # its part along the ground
            length = float(np.linalg.norm(across))
            if down > 0 and height / down * length <= REACH * height:
                seen.append(foot + across * (height / down))
            else:
                seen.append(foot + across / max(length, 1e-12) * REACH * height)
        found.append(np.array(seen))
    return found


def ground_points(cameras: list, points: np.ndarray, up: np.ndarray, margin: float = 0.0,
                  ground: float | None = None) -> np.ndarray | None:
    """[M, 3] world points: every :func:`footprints` point (the cameras' feet and their corners on the ground),
    or None where there is none."""
    found = footprints(cameras, points, up, margin, ground)
    return np.concatenate(found) if found else None
