"""The global grid of ``mgs mesh`` over the scene's region, in the partition's grid frame (z up), world units.

Every block fuses a piece of this one grid, so the pieces name their vertices by its grid points and stitch
without seams (:mod:`momentum_gs.mesh.marching`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momentum_gs.errors import UserError

# The largest scene grid (points), whose cubes are visited once to find each block's range.
MAX_GRID_POINTS = 1 << 36


@dataclass
class SceneGrid:
    """The global grid over the scene's region, in the partition's grid frame (z up), world units."""

    lo: np.ndarray  # [3] the region's low corner
    hi: np.ndarray  # [3] its high corner
    voxel: float
    origin: np.ndarray  # [3] the grid's point (0, 0, 0)
    dims: np.ndarray  # [3] int64 grid points per axis
    rotation: np.ndarray  # [3, 3] world → grid frame

    def cube_centres(self, first: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """[X·Y·Z, 3] world centres of the cubes first + (0..X-1, 0..Y-1, 0..Z-1)."""
        index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3) + first
        return (self.origin + self.voxel * (index + 0.5)) @ self.rotation

    def centre(self) -> np.ndarray:
        """[3] world centre of the region."""
        return (self.lo + self.hi) / 2 @ self.rotation


def region_of(positions: np.ndarray, rotation: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """([3] lo, [3] hi) grid-frame box around the anchor ``positions`` [N, 3] (world), robust to strays."""
    grid = positions @ rotation.T
    return np.percentile(grid, percentile, axis=0), np.percentile(grid, 100 - percentile, axis=0)


def default_voxel(lo: np.ndarray, hi: np.ndarray) -> float:
    """The region's longest horizontal side / 400."""
    return float(max(hi[:2] - lo[:2])) / 400.0


def grid_over(lo: np.ndarray, hi: np.ndarray, voxel: float, rotation: np.ndarray) -> SceneGrid:
    """The grid of ``voxel`` over the grid-frame region ``lo``…``hi`` [3], one voxel beyond it on every side;
    a UserError when it would be too large or the region is empty."""
    with np.errstate(over="ignore"):  # counted in float64 before any cast: a tiny voxel overflows int64
        points = np.prod((hi - lo) / voxel + 4)
    if not points <= MAX_GRID_POINTS:
        raise UserError(f"voxel {voxel:.4g} makes a grid of {points:.3g} points over the scene's region (sides "
                        f"{np.round(hi - lo, 4).tolist()} world units); give a larger --voxel (the default here is "
                        f"{default_voxel(lo, hi):.4g})")
    origin = np.floor(lo / voxel) * voxel - voxel
    dims = np.ceil((hi - origin) / voxel).astype(np.int64) + 2
    if (dims < 2).any():
        raise UserError(f"the scene's region {lo.tolist()}…{hi.tolist()} is empty; is the run trained?")
    return SceneGrid(lo, hi, voxel, origin, dims, rotation)
