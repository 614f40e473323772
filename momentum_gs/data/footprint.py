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

from dataclasses import dataclass

import numpy as np

REACH = 4.0  # the farthest ground a photo sees, in its flight heights from its foot (a ray 76° off the nadir)


@dataclass(frozen=True)
class Ground:
    """The ground a scene's training photos see, worked out once per scene (:func:`ground_of`) and handed to the
    export's floaters and the maps: ``up`` [3] (unit), ``level`` (the SfM points' median height along it; None
    without points) and, per training camera, its centre [C, 3], the matrix [C, 3, 3] from a pixel (u, v, 1) to
    its ray in the world, and the image size [C, 2]. Each question (a margin, a plane) is arithmetic on these."""

    up: np.ndarray
    level: float | None
    centres: np.ndarray
    rays: np.ndarray
    sizes: np.ndarray

    def footprints(self, margin: float = 0.0, level: float | None = None) -> list[np.ndarray]:
        """Per camera above the ground, a [5, 3] array of world points: its foot, then its four corner rays met
        with the ground (module notes), the image widened by ``margin`` of its size on each side. The ground: the
        plane across ``up`` at height ``level`` (None: :attr:`level`; a lower one reaches the low ground of a
        valley the photos look into). Empty without SfM points."""
        level = self.level if level is None else level
        if level is None or not len(self.centres):
            return []
        up = self.up
        found = []
        for centre, to_world, (w, h) in zip(self.centres, self.rays, self.sizes):
            height = float(centre @ up) - level
            if height <= 0:
                continue
            foot = centre - height * up
            seen = [foot]
            for u, v in ((-margin * w, -margin * h), ((1 + margin) * w, -margin * h),
                         ((1 + margin) * w, (1 + margin) * h), (-margin * w, (1 + margin) * h)):
                ray = to_world @ np.array([u, v, 1.0])
                down = -float(ray @ up)  # the ray's fall per unit of its length
                across = ray - (ray @ up) * up  # its part along the ground
                length = float(np.linalg.norm(across))
                if down > 0 and height / down * length <= REACH * height:
                    seen.append(foot + across * (height / down))
                else:
                    seen.append(foot + across / max(length, 1e-12) * REACH * height)
            found.append(np.array(seen))
        return found

    def points(self, margin: float = 0.0, level: float | None = None) -> np.ndarray | None:
        """[M, 3] world points: every :meth:`footprints` point (the cameras' feet and their corners on the
        ground), or None where there is none."""
        found = self.footprints(margin, level)
        return np.concatenate(found) if found else None


def ground_of(cameras: list, points: np.ndarray, up: np.ndarray) -> Ground:
    """The :class:`Ground` of training ``cameras`` over SfM ``points`` [P, 3] with unit ``up`` [3]: the one place
    the cameras are read for it."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    level = float(np.median(points @ up)) if len(points) and cameras else None
    centres = np.array([c.center.detach().double().cpu().numpy() for c in cameras]).reshape(-1, 3)
    rays = np.array([c.cam_to_world.detach().double().cpu().numpy()[:3, :3]
                     @ np.linalg.inv(c.K.detach().double().cpu().numpy()) for c in cameras]).reshape(-1, 3, 3)
    sizes = np.array([(c.width, c.height) for c in cameras], np.float64).reshape(-1, 2)
    return Ground(up, level, centres, rays, sizes)


def footprints(cameras: list, points: np.ndarray, up: np.ndarray, margin: float = 0.0,
               ground: float | None = None) -> list[np.ndarray]:
    """:meth:`Ground.footprints` of :func:`ground_of` ``(cameras, points, up)`` (``ground``: the plane's height)."""
    return ground_of(cameras, points, up).footprints(margin, ground)


def ground_points(cameras: list, points: np.ndarray, up: np.ndarray, margin: float = 0.0,
                  ground: float | None = None) -> np.ndarray | None:
    """:meth:`Ground.points` of :func:`ground_of` ``(cameras, points, up)`` (``ground``: the plane's height)."""
    return ground_of(cameras, points, up).points(margin, ground)
