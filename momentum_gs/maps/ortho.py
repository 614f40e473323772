"""A true orthophoto and a surface model from standard Gaussians: splatted by a camera looking straight down along
parallel rays (``render(..., orthographic=True)``), tile by tile over the map's grid.

Each pixel is the Gaussians' colour seen from straight above, composited front to back: roofs cover what is under
them and facades take no pixels, with no surface model and no occlusion test. Its median depth (where the
transmittance crosses one half; or the expected depth, ``depth`` / alpha) gives the surface's height on the same
grid; pixels with alpha under :data:`SOLID` have none (nodata). A
tile renders only the Gaussians whose 3σ reach touches it, so memory is bounded by the tile, not the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.estimate import sized
from momentum_gs.data.map_frame import MapFrame
from momentum_gs.model.standard import StandardGaussians, eval_sh
from momentum_gs.render import render

TILE = 1024  # pixels a side rendered at once
SOLID = 0.5  # alpha from which a pixel has a height
MIN_SIDE = 8  # the map's longer side in pixels at least: a coarser --gsd would map nothing a user could read
MAX_PIXELS = 1 << 30  # the map's pixels at most (a 32768² map): past it, a larger --gsd
CLEARANCE = 0.05  # the camera above the highest Gaussian, in shares of the map's extent
NODATA = -9999.0  # the DSM's value where nothing was drawn
DEPTHS = ("mean", "median")  # what the DSM is made from (splat_map)


@dataclass(frozen=True)
class MapGrid:
    """The raster: ``x0``, ``y0`` the map coordinates of its top-left corner, ``gsd`` map units a pixel (rows go
    south), ``width`` × ``height`` pixels."""

    x0: float
    y0: float
    gsd: float
    width: int
    height: int

    def centre(self) -> np.ndarray:
        """[2] map (x, y) of the raster's centre."""
        return np.array([self.x0 + 0.5 * self.width * self.gsd, self.y0 - 0.5 * self.height * self.gsd])


def grid_over(lo: np.ndarray, hi: np.ndarray, gsd: float) -> MapGrid:
    """The raster of pixel ``gsd`` whose corners lie on multiples of it and that covers map (x, y) ``lo``-``hi``;
    a UserError when it would pass :data:`MAX_PIXELS` or be under :data:`MIN_SIDE` pixels across."""
    x0, y0 = math.floor(lo[0] / gsd) * gsd, math.ceil(hi[1] / gsd) * gsd
    width, height = max(1, math.ceil((hi[0] - x0) / gsd)), max(1, math.ceil((y0 - lo[1]) / gsd))
    if max(width, height) < MIN_SIDE:
        fits = max(hi[0] - lo[0], hi[1] - lo[1]) / MIN_SIDE
        raise UserError(f"--gsd {gsd:.4g} makes a map of {width} × {height} pixels over the "
                        f"{hi[0] - lo[0]:.4g} × {hi[1] - lo[1]:.4g} the photos see, under {MIN_SIDE} pixels across; "
                        f"give --gsd {fits:.3g} or less")
    if width * height > MAX_PIXELS:
        fits = gsd * math.sqrt(width * height / MAX_PIXELS)
        raise UserError(f"--gsd {gsd:.4g} makes a map of {width:,} × {height:,} pixels, more than {MAX_PIXELS:,}; "
                        f"give --gsd {fits:.3g} or more")
    return MapGrid(x0, y0, gsd, width, height)


@dataclass
class Rasters:
    """``rgba`` [H, W, 4] uint8 (colour not premultiplied, alpha the coverage), ``dsm`` [H, W] float32 heights
    (:data:`NODATA` where alpha < :data:`SOLID`), ``spread`` [H, W] float32, the DSM's spread over the training
    photos, and ``support`` [H, W] uint16, the photos that see a surface at each height (:mod:`momentum_gs.maps.spread`;
    None: not measured)."""

    rgba: np.ndarray
    dsm: np.ndarray
    spread: np.ndarray | None = None
    support: np.ndarray | None = None


def splat_map(gaussians: StandardGaussians, frame: MapFrame, grid: MapGrid, backend: str = "builtin",
              show_progress: bool = True, depth: str = "median") -> Rasters:
    """Render ``gaussians`` (world frame) onto ``grid`` of ``frame``, tile by tile, with a progress bar;
    ``depth``: the DSM from the depth where the transmittance crosses 0.5 ("median", as ``mgs mesh`` fuses) or
    from the expected depth ("mean")."""
    if depth not in DEPTHS:
        raise ValueError(f"depth {depth!r}: one of {DEPTHS}")
    means = gaussians.means.detach()
    down = -torch.as_tensor(frame.rotation[2], dtype=means.dtype, device=means.device)
    colours = eval_sh(gaussians.sh.detach(), down.expand_as(means).contiguous()).clamp(0, 1)
    world = means.double().cpu().numpy()
    world_z = world[:, 2]
    placed = frame.to_map(world)
    reach = 3 * gaussians.scales.detach().amax(-1).double().cpu().numpy() * frame.scale  # map units
    top = float(placed[:, 2].max()) + CLEARANCE * max(grid.width, grid.height) * grid.gsd / frame.scale
    rgba = np.zeros((grid.height, grid.width, 4), np.uint8)
    dsm = np.full((grid.height, grid.width), NODATA, np.float32)
    tiles = [(row, col) for row in range(0, grid.height, TILE) for col in range(0, grid.width, TILE)]
    for row, col in sized(tiles, len(tiles), "orthophoto", "tile", "--gsd", disable=not show_progress):
        h, w = min(TILE, grid.height - row), min(TILE, grid.width - col)
        left, upper = grid.x0 + col * grid.gsd, grid.y0 - row * grid.gsd
        near = ((placed[:, 0] + reach > left) & (placed[:, 0] - reach < left + w * grid.gsd)
                & (placed[:, 1] - reach < upper) & (placed[:, 1] + reach > upper - h * grid.gsd))
        if not near.any():
            continue
        keep = torch.from_numpy(np.flatnonzero(near)).to(means.device)
        tile = frame.local(np.array([left, upper - h * grid.gsd]), np.array([left + w * grid.gsd, upper]),
                           float(np.median(world_z[near])))  # each tile on the grid as PROJ puts its points
        corner = tile.to_world(np.array([[left, upper]]), np.array([top]))[0]
        out = render(means[keep], gaussians.quats.detach()[keep], gaussians.scales.detach()[keep],
                     gaussians.opacities.detach()[keep], colours[keep], _looking_down(tile, corner, means),
                     _pixels_per_unit(tile, grid, means), w, h, backend=backend, near=0.0, orthographic=True,
                     extras=("median_depth",) if depth == "median" else ("depth",))
        _store(out, rgba, dsm, row, col, tile, grid, top, depth)
    return Rasters(rgba, dsm)


def _looking_down(frame: MapFrame, corner: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """[4, 4] world → camera of the map's camera at world point ``corner``: x along the map's x, y along its
    south, z down (OpenCV axes)."""
    rotation = np.stack([frame.rotation[0], -frame.rotation[1], -frame.rotation[2]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, -rotation @ corner
    return torch.as_tensor(pose, dtype=like.dtype, device=like.device)


def _pixels_per_unit(frame: MapFrame, grid: MapGrid, like: torch.Tensor) -> torch.Tensor:
    """[3, 3] K of the map's camera: pixels per world unit on both axes, the corner at pixel (0, 0)."""
    f = frame.scale / grid.gsd
    return torch.tensor([[f, 0.0, 0.0], [0.0, f, 0.0], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device)


def _store(out, rgba: np.ndarray, dsm: np.ndarray, row: int, col: int, frame: MapFrame, grid: MapGrid,
           top: float, kind: str) -> None:
    """Put one tile's render into the rasters: colour unpremultiplied, heights where alpha ≥ :data:`SOLID`
    (``kind`` "median": the median depth; "mean": the expected depth)."""
    alpha = out.alpha[..., 0].double().cpu().numpy()
    image = out.image.double().cpu().numpy()
    if kind == "median":
        depth = out.median_depth[..., 0].double().cpu().numpy()
    else:
        depth = out.depth[..., 0].double().cpu().numpy() / np.maximum(alpha, 1e-12)
    h, w = alpha.shape
    colour = np.clip(image / np.maximum(alpha, 1e-12)[..., None], 0, 1)
    rgba[row:row + h, col:col + w, :3] = np.round(255 * colour * (alpha[..., None] > 1e-6))
    rgba[row:row + h, col:col + w, 3] = np.round(255 * np.clip(alpha, 0, 1))
    solid = alpha >= SOLID
    if solid.any():
        rows, cols = np.nonzero(solid)
        xy = np.column_stack([grid.x0 + (col + cols + 0.5) * grid.gsd, grid.y0 - (row + rows + 0.5) * grid.gsd])
        world = frame.to_world(xy, top - depth[rows, cols])
        dsm[row + rows, col + cols] = frame.heights(world)
