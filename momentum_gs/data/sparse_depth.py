"""The SfM points each training photo saw, as depths in it: what the sparse-depth term
(``geometry.lambda_sparse_depth``, :func:`momentum_gs.losses.sparse_depth_loss`) pulls the rendered depth towards.

A photo's points are those its own keypoints triangulated (the model's tracks), so a point hidden from the photo
behind a roof is never one of its depths. Each is weighed by how well the SfM fixed it: by its track's length (a
point seen by more photos is triangulated from wider rays), up to ``TRACK_FULL``, and by its reprojection error,
1 / (1 + (error / ``ERROR_PX``)²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from momentum_gs.errors import UserError

TRACK_FULL = 3  # photos a point's track needs for its full weight
ERROR_PX = 1.0  # a point's reprojection error at which its weight halves


@dataclass
class SparseDepth:
    """One photo's SfM depths: [n, 2] int64 pixel (x, y), [n] depth along the camera's z, [n] weight."""

    pixels: torch.Tensor
    depths: torch.Tensor
    weights: torch.Tensor

    def to(self, device: torch.device | str) -> "SparseDepth":
        return SparseDepth(self.pixels.to(device), self.depths.to(device), self.weights.to(device))


def held_out(count: int, every: int) -> np.ndarray:
    """[count] bool: the SfM points kept out of the depths, every ``every``-th row from the first (0: none)."""
    rows = np.arange(count)
    return rows % every == 0 if every > 0 else np.zeros(count, bool)


def sparse_depths(cameras: list, points: np.ndarray, errors: np.ndarray, observed: dict[str, np.ndarray],
                  near: float, holdout: int = 0) -> list[SparseDepth]:
    """Per camera (at its loaded size), the points of ``points`` [P, 3] that its photo observed (``observed``: image
    name → point rows), projected into it: those in front of ``near`` and inside the image, but for the rows
    :func:`held_out` keeps out (``holdout``: every n-th, 0 none)."""
    counts = np.bincount(np.concatenate([*observed.values(), np.zeros(0, np.int64)]), minlength=len(points))
    weight = np.minimum(counts, TRACK_FULL) / TRACK_FULL / (1.0 + (np.asarray(errors) / ERROR_PX) ** 2)
    kept = ~held_out(len(points), holdout)
    out = []
    for camera in cameras:
        rows = np.unique(observed.get(camera.name, np.zeros(0, np.int64)))
        rows = rows[kept[rows]]
        world_to_cam = camera.world_to_cam.double().numpy()
        local = points[rows].astype(np.float64) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        z = local[:, 2]
        pixel = local @ camera.K.double().numpy().T
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.floor(pixel[:, :2] / z[:, None])
        inside = (z > near) & (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < camera.width) & (xy[:, 1] < camera.height)
        out.append(SparseDepth(torch.from_numpy(xy[inside].astype(np.int64)), torch.from_numpy(z[inside]).float(),
                               torch.from_numpy(weight[rows][inside]).float()))
    return out


def scene_depths(scene, cfg, device: torch.device) -> list[SparseDepth]:
    """:func:`sparse_depths` of a scene's training cameras (loaded with ``observations=True``), on ``device``, with
    ``cfg``'s near plane and held-out points (``geometry.sparse_depth_holdout``); a UserError when no training photo
    has a point it saw (a model written without its tracks)."""
    if not any(len(rows) for rows in scene.observed.values()):
        raise UserError(f"geometry.lambda_sparse_depth needs the SfM points each photo saw, but the COLMAP model of "
                        f"{scene.root} lists none for its training photos (written without keypoints or tracks); "
                        "give the model as the mapper wrote it, or set geometry.lambda_sparse_depth=0")
    return [known.to(device) for known in sparse_depths(scene.train, scene.points, scene.errors, scene.observed,
                                                         cfg.render.near, cfg.geometry.sparse_depth_holdout)]
