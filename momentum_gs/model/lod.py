"""Coarser copies of standard Gaussians by merging: the levels of detail of the 3D Tiles export
(:mod:`momentum_gs.export.tiles.lod`) and of the live viewer (:mod:`momentum_gs.view.levels`).

Gaussians that fall in one cell of a grid sized for the budget are replaced by one whose mean and covariance
are the weighted mean and covariance of the group (moment matching), weights opacity × surface (the product of
the two largest scales), the colour coefficients averaged with the same weights, and the opacity chosen so that
the merged Gaussian covers about what the group covered (its summed opacity × surface over the merged surface,
capped at 1). The error of a merge, in world units, is the 90th percentile over the members of how far each
lies from the merged Gaussian that replaces it (centre distance plus the change of its largest scale).
"""

from __future__ import annotations

import numpy as np
import torch

from momentum_gs.data.colmap.model import rotmat_to_qvec
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.render.projection import quat_to_rotmat


def merge_to(gaussians: StandardGaussians, budget: int) -> tuple[StandardGaussians, float]:
    """(``gaussians`` merged to at most ``budget`` Gaussians, the 90th percentile of the members' error). The
    groups are the occupied cells of the finest cubic grid whose occupied cells fit the budget, its cell size
    found by bisection."""
    if len(gaussians) <= budget:
        return gaussians, 0.0
    means = gaussians.means.numpy().astype(np.float64)
    high = float(np.ptp(means, 0).max()) * 1.001 + 1e-9  # one cell holds everything
    low, groups = high / (2 * budget), np.zeros(len(means), np.int64)
    for _ in range(30):
        size = (low + high) / 2
        labels = _cells(means, size)
        if labels.max() + 1 <= budget:
            high, groups = size, labels
        else:
            low = size
        if high - low < 0.01 * high:
            break
    return moment_match(gaussians, groups)


def _cells(means: np.ndarray, size: float) -> np.ndarray:
    """Each point's cell of the cubic grid of ``size``, numbered 0..cells-1 in key order."""
    cells = np.floor((means - means.min(0)) / size).astype(np.int64)
    n = cells.max(0) + 1
    keys = (cells[:, 0] * n[1] + cells[:, 1]) * n[2] + cells[:, 2]
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


def moment_match(gaussians: StandardGaussians, groups: np.ndarray) -> tuple[StandardGaussians, float]:
    """One Gaussian per group (labels 0..G-1) with the group's weighted mean and covariance (weights opacity ×
    surface), its weighted mean colour coefficients and the opacity that keeps its coverage; and the 90th
    percentile of the members' error (centre distance plus the change of the largest scale)."""
    means = gaussians.means.numpy().astype(np.float64)
    scales = gaussians.scales.numpy().astype(np.float64)
    opacity = gaussians.opacities.numpy().astype(np.float64)
    rot = quat_to_rotmat(gaussians.quats.double()).numpy()
    count = int(groups.max()) + 1
    surface = np.sort(scales, 1)[:, 1:].prod(1)
    w = opacity * surface + 1e-30
    total = np.bincount(groups, w, count)
    sums = lambda values: np.stack([np.bincount(groups, w * v, count) for v in values.reshape(len(w), -1).T], 1)  # noqa: E731
    mean = sums(means) / total[:, None]
    d = means - mean[groups]
    cov = np.einsum("mij,mj,mkj->mik", rot, scales**2, rot) + d[:, :, None] * d[:, None, :]
    cov = (sums(cov) / total[:, None]).reshape(count, 3, 3)
    values, vectors = np.linalg.eigh(cov)
    new_scales = np.sqrt(np.clip(values, 1e-20, None))
    vectors[:, :, 2] *= np.sign(np.linalg.det(vectors))[:, None]  # a rotation, not a reflection
    sh = gaussians.sh.numpy().astype(np.float64)
    new_sh = (sums(sh) / total[:, None]).reshape(count, *sh.shape[1:])
    new_surface = np.sort(new_scales, 1)[:, 1:].prod(1)
    new_opacity = np.clip(np.bincount(groups, opacity * surface, count) / new_surface, 1 / 255, 1.0)
    error = np.linalg.norm(d, axis=1) + np.abs(new_scales.max(1)[groups] - scales.max(1))
    merged = StandardGaussians(*(torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in
                                 (mean, rotmat_to_qvec(vectors), new_scales, new_opacity, new_sh)))
    return merged, float(np.percentile(error, 90))


def extent(gaussians: StandardGaussians) -> np.ndarray:
    """[2, 3] min and max corners of the Gaussians' 3-sigma spheres (largest scale)."""
    means = gaussians.means.numpy()
    reach = 3 * gaussians.scales.numpy().max(1, keepdims=True)
    return np.stack([(means - reach).min(0), (means + reach).max(0)]).astype(np.float64)
