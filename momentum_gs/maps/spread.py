"""How far the surface model may be off, pixel by pixel: the heights the training photos' own depths give a pixel,
against the DSM's height there.

Each training photo is rendered from where it was taken with its median depth (where a pixel turns opaque, as the
DSM is made from above). Each pixel of it drawn solid (alpha ≥ :data:`~momentum_gs.maps.ortho.SOLID`) is a point
on the surface that photo sees; it lands in one cell of the map's grid with a height. A cell's *spread* is the root
mean square of those heights minus the DSM's, over the photos whose points land there, where at least
:data:`MIN_PHOTOS` do. Where the trained surface is one that every photo agrees on, the spread is small; where the
photos each place it elsewhere (roof edges, trees, surfaces seen only at a slant), the spread is large, and the
DSM's error with it (docs/benchmarks/maps.md measures how far it follows the true error).

The same pass holds the DSM within the heights the photos see (:class:`PhotoHeights`' ``dsm``): where the view from
above puts a cell's height above the highest or below the lowest that any photo's own depth puts there, the
nearest of those is taken, and the spread is measured against it. The view from above sees the Gaussians at an
angle no training photo saw them at, so it can draw a height that no photo agrees with (docs/benchmarks/maps.md
measures what it changes).

The sums are kept per cell, a photo at a time: memory is 22 bytes a cell of the map, whatever the photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from momentum_gs.data.map_frame import MapFrame
from momentum_gs.estimate import sized
from momentum_gs.maps.ortho import NODATA, SOLID, MapGrid
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.render import render

MIN_PHOTOS = 2  # photos whose points land in a cell for it to have a spread


@dataclass
class PhotoHeights:
    """What the training photos' own depths say of a DSM: ``spread`` [H, W] (module notes; :data:`NODATA` where
    fewer than :data:`MIN_PHOTOS` photos see a cell or the DSM has no height) and ``dsm`` [H, W], the DSM held within
    the heights the photos see, and ``held``, the share of the DSM's measured heights that moved."""

    spread: np.ndarray
    dsm: np.ndarray
    held: float


@torch.no_grad()
def photo_spread(gaussians: StandardGaussians, cameras: list, frame: MapFrame, grid: MapGrid, dsm: np.ndarray,
                 show_progress: bool = True) -> PhotoHeights:
    """The DSM's spread over ``cameras`` (the training views, world frame) and the DSM held within their heights
    (module notes), in the DSM's units. Rendered by the builtin rasterizer on any device, the one that draws the
    median depth (as ``mgs mesh`` renders it)."""
    heights = dsm.astype(np.float64).ravel()
    drawn = heights != NODATA
    sums, squares = np.zeros(heights.size, np.float32), np.zeros(heights.size, np.float32)
    lowest, highest = np.full(heights.size, np.inf, np.float32), np.full(heights.size, -np.inf, np.float32)
    points, photos = np.zeros(heights.size, np.int32), np.zeros(heights.size, np.uint16)
    means = gaussians.means.detach()
    grey = means.new_zeros(len(means), 3)  # only the depth is read
    for camera in sized(cameras, len(cameras), "spread", "photo", "--no-spread", disable=not show_progress):
        camera = camera.to(means.device)
        out = render(means, gaussians.quats.detach(), gaussians.scales.detach(), gaussians.opacities.detach(), grey,
                     camera.world_to_cam.to(means.dtype), camera.K.to(means.dtype), camera.width, camera.height,
                     backend="builtin", extras=("median_depth",))
        cells, height = _cells(_surface_points(out.alpha[..., 0], out.median_depth[..., 0], camera), frame, grid)
        seen = drawn[cells]
        cells, difference = cells[seen], height[seen] - heights[cells[seen]]
        touched, each = np.unique(cells, return_inverse=True)  # sums over the cells this photo reaches alone
        sums[touched] += np.bincount(each, difference).astype(np.float32)
        squares[touched] += np.bincount(each, difference * difference).astype(np.float32)
        np.minimum.at(lowest, cells, difference.astype(np.float32))
        np.maximum.at(highest, cells, difference.astype(np.float32))
        points[touched] += np.bincount(each).astype(np.int32)
        photos[touched] += 1
    measured = drawn & (photos >= MIN_PHOTOS)
    shift = np.where(measured, np.clip(0.0, lowest, highest), 0.0)  # from the DSM to the nearest photo's height
    count = np.maximum(points, 1)
    spread = np.sqrt(np.maximum(squares / count - 2 * shift * sums / count + shift * shift, 0.0))
    held = (heights + shift).reshape(dsm.shape).astype(dsm.dtype)  # shift is 0 wherever a cell is not measured
    return PhotoHeights(np.where(measured, spread, NODATA).reshape(dsm.shape).astype(np.float32), held,
                        float((shift[measured] != 0).mean()) if measured.any() else 0.0)


def _surface_points(alpha: torch.Tensor, depth: torch.Tensor, camera) -> np.ndarray:
    """[M, 3] world points of the pixels of a render drawn solid: each pixel's centre at its (z) depth."""
    rows, cols = torch.nonzero(alpha >= SOLID, as_tuple=True)
    z = depth[rows, cols].double()
    K = camera.K.double()
    x = (cols.double() + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (rows.double() + 0.5 - K[1, 2]) / K[1, 1] * z
    to_world = torch.linalg.inv(camera.world_to_cam.double())
    world = torch.stack([x, y, z], -1) @ to_world[:3, :3].T + to_world[:3, 3]
    return world.cpu().numpy()


def _cells(world: np.ndarray, frame: MapFrame, grid: MapGrid) -> tuple[np.ndarray, np.ndarray]:
    """([K] flat cell index on ``grid``, [K] height) of the [M, 3] world points that land on it."""
    placed = frame.to_map(world)
    col = np.floor((placed[:, 0] - grid.x0) / grid.gsd).astype(np.int64)
    row = np.floor((grid.y0 - placed[:, 1]) / grid.gsd).astype(np.int64)
    inside = (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
    return row[inside] * grid.width + col[inside], frame.heights(world[inside])
