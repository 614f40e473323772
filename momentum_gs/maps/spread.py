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

A second pass looks through the photos again for what they see past (:func:`seen_through`). Each held height is a
point in space; a photo that looks at it and sees its own surface farther away, by more than :data:`THROUGH` of the
distance, sees through it: nothing is there for that photo. Where at least :data:`MIN_THROUGH` photos see through a
height and more see through it than see a surface there, the height is one that the view from above alone draws, and
the lowest height a photo puts in that cell is taken. Such heights lie inside the photos' range, where the hold
cannot reach them: on the synthetic flight, courtyards and alleys between buildings drawn at a roof's height
(docs/benchmarks/maps.md measures what it changes).

Given a window (``mgs ortho --despike``), the heights these passes chose are then despiked
(:mod:`momentum_gs.maps.despike`). Given the orthophoto's colours, each height then takes the median of the heights
around it weighted by colour and by their spread (:mod:`momentum_gs.maps.guide`), and the heights are then settled
over the whole map by the same (:mod:`momentum_gs.maps.solve`; ``mgs ortho --no-guide`` leaves both out). The spread
is measured from the heights that ends with.

A last pass counts, for each height the DSM ends with, the photos that see a surface there (its *support*, as the
second pass counts them). Where the support is low, the height is one that few photos confirm: ground deep between
tall buildings, which almost no photo sees, or a wall seen from one side drawn out as an awning. The spread cannot
mark every such height, since the few photos that see it may agree. The DSM vouches for a height whose support is at
least :func:`support_needed`: :data:`SUPPORT_SHARE` of the median support of the heights that :data:`MIN_PHOTOS`
photos or more see, and never fewer than that many, so that it keeps its meaning on a denser flight. On the synthetic
flight the heights below it were 2 % of those away from height steps and held over half of their squared error
(docs/benchmarks/maps.md, "What the photos confirm").

The sums are kept per cell, a photo at a time: memory is 32 bytes a cell of the map, whatever the photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from momentum_gs.data.map_frame import MapFrame
from momentum_gs.estimate import sized
from momentum_gs.maps.despike import despike
from momentum_gs.maps.guide import guided_median
from momentum_gs.maps.ortho import NODATA, SOLID, MapGrid
from momentum_gs.maps.solve import solved_heights
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.render import render

MIN_PHOTOS = 2  # photos whose points land in a cell for it to have a spread
THROUGH = 0.03  # a photo whose surface lies this share of the distance beyond a height sees through it
MIN_THROUGH = 2  # photos that see through a height, and more than see a surface there, for it to be taken down
SUPPORT_SHARE = 0.5  # of the median support: the least a height the DSM vouches for has (module notes)


@dataclass
class PhotoHeights:
    """What the training photos' own depths say of a DSM: ``spread`` [H, W] (module notes; :data:`NODATA` where
    fewer than :data:`MIN_PHOTOS` photos see a cell or the DSM has no height) and ``dsm`` [H, W], the DSM held within
    the heights the photos see and below what they see through, then despiked (:mod:`momentum_gs.maps.despike`),
    ``held``, the share of the DSM's measured heights that moved into the photos' range, ``through``, the share taken
    down after, where photos see through them, ``despiked``, the share of all its heights that the despike
    moved, ``guided``, the share of all its heights that the guided median moved (:mod:`momentum_gs.maps.guide`),
    ``solved``, the share that the solve over the map then moved by more than a cell
    (:mod:`momentum_gs.maps.solve`), and ``support`` [H, W] uint16, the photos that see a surface at each of the
    heights ``dsm`` ends with (0 where it has none; None: not counted)."""

    spread: np.ndarray
    dsm: np.ndarray
    held: float
    through: float = 0.0
    despiked: float = 0.0
    guided: float = 0.0
    solved: float = 0.0
    support: np.ndarray | None = None


@torch.no_grad()
def photo_spread(gaussians: StandardGaussians, cameras: list, frame: MapFrame, grid: MapGrid, dsm: np.ndarray,
                 show_progress: bool = True, despike_window: int = 0, colour: np.ndarray | None = None) -> PhotoHeights:
    """The DSM's spread over ``cameras`` (the training views, world frame) and the DSM held within their heights
    (module notes), in the DSM's units; with ``despike_window`` (cells, 0: none), the held DSM despiked; with
    ``colour`` ([H, W, 3], the orthophoto's), its heights then guided by it and by their spread
    (:mod:`momentum_gs.maps.guide`) and settled over the map (:mod:`momentum_gs.maps.solve`); the spread measured
    from the heights it ends with, and their support (module notes). Rendered by the builtin rasterizer on any
    device, the one that draws the median depth (as ``mgs mesh`` renders it)."""
    heights = dsm.astype(np.float64).ravel()
    drawn = heights != NODATA
    sums, squares = np.zeros(heights.size, np.float32), np.zeros(heights.size, np.float32)
    lowest, highest = np.full(heights.size, np.inf, np.float32), np.full(heights.size, -np.inf, np.float32)
    points, photos = np.zeros(heights.size, np.int32), np.zeros(heights.size, np.uint16)
    boxes = []  # each photo's rows and columns of the map, for the second pass
    device = gaussians.means.device
    for camera in sized(cameras, len(cameras), "spread", "photo", "--no-spread", disable=not show_progress):
        camera = camera.to(device)  # _surface_points reads it beside the render
        out = _median_depth(gaussians, camera)
        cells, height = _cells(_surface_points(out.alpha[..., 0], out.median_depth[..., 0], camera), frame, grid)
        boxes.append(_box(cells, grid))
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
    moved = shift != 0
    through, there = seen_through(gaussians, cameras, frame, grid, heights + shift, measured, boxes, show_progress)
    down = measured & (through >= MIN_THROUGH) & (through > there) & (lowest < shift)
    shift[down] = lowest[down]  # the lowest height a photo puts in the cell
    spiked = np.zeros(heights.size, bool)
    if despike_window:
        held, spiked = despike((heights + shift).reshape(dsm.shape), grid.gsd, despike_window,
                               show_progress=show_progress)
        spiked = spiked.ravel()
        shift[spiked] = held.ravel()[spiked] - heights[spiked]
    spread = partial(_spread, sums, squares, points, measured, dsm.shape)
    guided, solved = np.zeros(heights.size, bool), np.zeros(heights.size, bool)
    if colour is not None:
        before = (heights + shift).reshape(dsm.shape).astype(np.float32)
        agreement = spread(shift)
        after = guided_median(before, colour, agreement, grid.gsd, show_progress=show_progress)
        guided = drawn & (after.ravel() != before.ravel())
        settled = solved_heights(after, colour, agreement, grid.gsd, show_progress=show_progress).ravel()
        solved = drawn & (np.abs(settled - after.ravel()) > grid.gsd)
        shift[drawn] = settled[drawn] - heights[drawn]
    held = (heights + shift).reshape(dsm.shape).astype(dsm.dtype)  # shift is 0 wherever a cell has no height
    _, support = seen_through(gaussians, cameras, frame, grid, heights + shift, drawn, boxes, show_progress,
                              "support")
    share = (lambda mask: float(mask.sum() / measured.sum()) if measured.any() else 0.0)
    return PhotoHeights(spread(shift), held, share(measured & moved), share(down),
                        *(float(moved.sum() / max(drawn.sum(), 1)) for moved in (spiked, guided, solved)),
                        support=support.reshape(dsm.shape))


def support_needed(support: np.ndarray) -> int:
    """The least support of a height the DSM vouches for (module notes), from ``support`` (the photos that see a
    surface at each height, of the heights there are): :data:`SUPPORT_SHARE` of the median of those of at least
    :data:`MIN_PHOTOS`, rounded up, and at least :data:`MIN_PHOTOS`."""
    seen = support[support >= MIN_PHOTOS]
    return max(MIN_PHOTOS, math.ceil(SUPPORT_SHARE * float(np.median(seen)))) if seen.size else MIN_PHOTOS


def _spread(sums: np.ndarray, squares: np.ndarray, points: np.ndarray, measured: np.ndarray, shape: tuple,
            shift: np.ndarray) -> np.ndarray:
    """[H, W] float32: the root mean square of the photos' heights minus the DSM's moved by ``shift``, from the
    per-cell ``sums`` and ``squares`` of their differences to the DSM over ``points`` points (:data:`NODATA` where
    not ``measured``)."""
    count = np.maximum(points, 1)
    spread = np.sqrt(np.maximum(squares / count - 2 * shift * sums / count + shift * shift, 0.0))
    return np.where(measured, spread, NODATA).reshape(shape).astype(np.float32)


@torch.no_grad()
def seen_through(gaussians: StandardGaussians, cameras: list, frame: MapFrame, grid: MapGrid, heights: np.ndarray,
                 measured: np.ndarray, boxes: list, show_progress: bool = True,
                 what: str = "seen through") -> tuple[np.ndarray, np.ndarray]:
    """([H * W] photos that see through, [H * W] photos that see a surface at) the point of each ``measured`` cell of
    ``grid`` at its height of ``heights`` (both flat; the DSM's units). A photo that sees the point's pixel drawn
    solid sees through it where its median depth there lies beyond the point's by more than :data:`THROUGH` of the
    point's, and sees a surface at it within that. Each photo is rendered once more, as :func:`photo_spread` renders
    it, and tests the cells in and near its ``boxes`` entry, a band of rows at a time: memory is 8 bytes a cell.
    ``what``: the progress bar's name."""
    through, there = np.zeros(heights.size, np.uint16), np.zeros(heights.size, np.uint16)
    if not measured.any():  # nothing to test: no photo is rendered again
        return through, there
    up = _ups(frame, grid, heights, measured)
    device = gaussians.means.device
    for camera, box in zip(sized(cameras, len(cameras), what, "photo", "--no-spread",
                                 disable=not show_progress), boxes):
        if box is None:
            continue
        camera = camera.to(device)
        out = _median_depth(gaussians, camera)
        for cells in _bands(grid, box, measured):
            world = torch.from_numpy(frame.to_world(_centres(grid, cells), up[cells])).to(device)
            to_cam, K = camera.world_to_cam.to(world), camera.K.to(world)
            local = world @ to_cam[:3, :3].T + to_cam[:3, 3]
            z = local[:, 2]
            u = K[0, 0] * local[:, 0] / z + K[0, 2]
            v = K[1, 1] * local[:, 1] / z + K[1, 2]
            inside = (z > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
            col, row = u.clamp(0, camera.width - 1).long(), v.clamp(0, camera.height - 1).long()
            solid = inside & (out.alpha[row, col, 0] >= SOLID)
            depth = out.median_depth[row, col, 0].to(world)
            through[cells] += (solid & (depth > z * (1 + THROUGH))).cpu().numpy()
            there[cells] += (solid & ((depth - z).abs() <= z * THROUGH)).cpu().numpy()
    return through, there


def _median_depth(gaussians: StandardGaussians, camera):
    """The render of ``gaussians`` from ``camera`` (on their device) with its median depth, by the builtin rasterizer,
    the one that draws it on any device (as ``mgs mesh`` renders it); its colours are not read."""
    means = gaussians.means.detach()
    return render(means, gaussians.quats.detach(), gaussians.scales.detach(), gaussians.opacities.detach(),
                  means.new_zeros(len(means), 3), camera.world_to_cam.to(means.dtype), camera.K.to(means.dtype),
                  camera.width, camera.height, backend="builtin", extras=("median_depth",))


BAND_CELLS = 1 << 20  # cells a photo tests at once in the second pass
BOX_MARGIN = 0.25  # a photo's box widened by this share of its size each way: points above the ground it sees


def _box(cells: np.ndarray, grid: MapGrid) -> tuple[int, int, int, int] | None:
    """(first row, last row, first column, last column) of the flat ``cells`` a photo's points land in, widened by
    :data:`BOX_MARGIN` within the grid; None for none."""
    if cells.size == 0:
        return None
    rows, cols = np.divmod(cells, grid.width)
    (r0, r1), (c0, c1) = (rows.min(), rows.max()), (cols.min(), cols.max())
    dr, dc = int((r1 - r0) * BOX_MARGIN) + 2, int((c1 - c0) * BOX_MARGIN) + 2
    return max(0, r0 - dr), min(grid.height - 1, r1 + dr), max(0, c0 - dc), min(grid.width - 1, c1 + dc)


def _bands(grid: MapGrid, box: tuple[int, int, int, int], measured: np.ndarray):
    """The flat indices of the ``measured`` cells inside ``box``, about :data:`BAND_CELLS` at a time."""
    r0, r1, c0, c1 = box
    rows = max(1, BAND_CELLS // (c1 - c0 + 1))
    plane = measured.reshape(grid.height, grid.width)
    for top in range(r0, r1 + 1, rows):
        r, c = np.nonzero(plane[top:min(top + rows, r1 + 1), c0:c1 + 1])
        if r.size:
            yield (r + top) * grid.width + c + c0


def _centres(grid: MapGrid, cells: np.ndarray) -> np.ndarray:
    """[K, 2] map (x, y) of the centres of the flat ``cells`` of ``grid``."""
    rows, cols = np.divmod(cells, grid.width)
    return np.column_stack([grid.x0 + (cols + 0.5) * grid.gsd, grid.y0 - (rows + 0.5) * grid.gsd])


def _ups(frame: MapFrame, grid: MapGrid, heights: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """[H * W] float32: each ``measured`` cell's height of ``heights`` (:meth:`MapFrame.heights`' units: above the
    datum in a georeferenced frame) as world units along the map's up, 0 elsewhere, by two steps of Newton's method
    (exact in a scene's own frame, where they are world units already), :data:`BAND_CELLS` at a time."""
    up = np.zeros(heights.size, np.float32)
    cells = np.flatnonzero(measured)
    for start in range(0, cells.size, BAND_CELLS):
        part = cells[start:start + BAND_CELLS]
        xy, guess = _centres(grid, part), np.zeros(part.size)
        for _ in range(2):
            at = frame.heights(frame.to_world(xy, guess))
            rate = frame.heights(frame.to_world(xy, guess + 1.0)) - at  # heights a world unit up adds
            guess = guess + (heights[part] - at) / rate
        up[part] = guess
    return up


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
