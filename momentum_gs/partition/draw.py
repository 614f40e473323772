"""A top-down map of a partition: cells, points and cameras coloured by block, and a legend of counts.

The map is drawn in contracted coordinates seen from above, where every cell is a rectangle, stretched
back by the box size so that the scene box (thin black frame) is to scale in world units; outside the box
distances shrink towards the edge of the contracted cube. It is zoomed on the cameras and most points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.scene import SceneData
from momentum_gs.draw import (MapWindow, blank, distinct_colors, dot, map_window, put_pixels, put_text, save_png,
                              scale_bar, wrap_text)
from momentum_gs.errors import UserError
from momentum_gs.data.up import camera_arrays
from momentum_gs.partition.frame import map_axes
from momentum_gs.partition.partition import Partition

LINE_PX = 20  # legend line height
MAX_POINTS = 200_000  # enough dots for a map


@dataclass(frozen=True)
class _Layout:
    """What the map shows and where: map coordinates are contracted coordinates along the two map axes,
    stretched by the box size (world-like units)."""

    axes: list[int]  # the grid axes drawn right and up
    vertical: int  # the third grid axis (stacked cells)
    scale: np.ndarray  # [2] contracted → map units along the map axes
    window: MapWindow  # map units → pixels of the size × size map
    u_cams: np.ndarray  # [C, 2] camera centres, map units
    R: np.ndarray  # [C, 3, 3] world-to-camera rotations
    u_points: np.ndarray  # [P, 3] contracted SfM points (at most MAX_POINTS of them)


def draw_partition(partition: Partition, scene: SceneData, path: str | Path, size: int = 800) -> None:
    """Write a PNG map of ``partition`` over ``scene``: ``size`` pixels wide, a ``size`` × ``size`` map and a
    legend strip below it (header lines, then one line per block in ``size // 330`` columns).

    Cells are tinted by block and labelled with their id; SfM points are dots and camera centres are circles,
    both coloured by the cell they lie in; each camera has a short line along its viewing direction (shorter
    the steeper it looks down) and a ring in the colour of every further block it trains (added by coverage).
    A scale bar in world units holds inside the scene box (the black square), where the map is linear.
    """
    if size < 64:
        raise UserError(f"the partition map needs at least 64 pixels, got {size}")
    layout = _layout(partition, scene, size)
    colors = distinct_colors(partition.num_blocks)
    canvas, cells = _draw_cells(partition, layout, colors, size)
    _draw_points(canvas, partition, layout, colors)
    _draw_cameras(canvas, partition, layout, colors, size)
    _draw_scale_bar(canvas, _box_pixels_per_unit(partition, layout), size)
    _draw_labels(canvas, partition, cells, layout.vertical, size)
    save_png(path, np.concatenate([canvas, _legend(partition, colors, size)], 0))


def _layout(partition: Partition, scene: SceneData, size: int) -> _Layout:
    """The map axes, the cameras and (a sample of) the points in map units, and the window around them."""
    right, forward = map_axes(partition.rotation, partition.up, partition.block_dim)
    axes = [right, forward]
    centres, R = camera_arrays(scene.train)
    points = np.asarray(scene.points, np.float64).reshape(-1, 3)
    if len(points) > MAX_POINTS:
        points = points[np.random.default_rng(0).choice(len(points), MAX_POINTS, replace=False)]
    scale = (partition.box_max - partition.box_min)[axes]  # contracted → world-like map units
    u_cams = partition.contract(centres)[:, axes] * scale if len(centres) else np.zeros((0, 2))
    u_points = partition.contract(points) if len(points) else np.zeros((0, 3))
    window = map_window(u_cams, u_points[:, axes] * scale, size - 1)
    return _Layout(axes, 3 - right - forward, scale, window, u_cams, R, u_points)


def _draw_cells(partition: Partition, layout: _Layout, colors: np.ndarray, size: int) -> tuple[np.ndarray, list]:
    """The map's background: cells tinted by block with grey borders, and the scene box as a black frame.
    Returns the [size, size, 3] canvas and each block's cell as (x0, y0, x1, y1) pixels."""
    axes, scale = layout.axes, layout.scale
    canvas = blank(size, size)
    tint = canvas.copy()
    cells = []
    for b in range(partition.num_blocks):
        lo, hi = partition.cell_bounds(b)
        (x0, y1), (x1, y0) = layout.window.pixels(np.array([lo[axes], hi[axes]]) * scale)
        cells.append((x0, y0, x1, y1))
        cv2.rectangle(tint, (int(x0), int(y0)), (int(x1), int(y1)), colors[b].tolist(), -1)
    canvas = cv2.addWeighted(tint, 0.22, canvas, 0.78, 0)
    for x0, y0, x1, y1 in cells:
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), (90, 90, 90), 1)
    (bx0, by1), (bx1, by0) = layout.window.pixels(np.array([[0.25, 0.25], [0.75, 0.75]]) * scale)
    cv2.rectangle(canvas, (int(bx0), int(by0)), (int(bx1), int(by1)), (0, 0, 0), 1)
    return canvas, cells


def _draw_points(canvas: np.ndarray, partition: Partition, layout: _Layout, colors: np.ndarray) -> None:
    """SfM points as single pixels, a darker shade of the colour of the cell they lie in."""
    if len(layout.u_points):
        xy = layout.window.pixels(layout.u_points[:, layout.axes] * layout.scale)
        block = partition.cell_of_contracted(layout.u_points)
        put_pixels(canvas, xy, (colors[block] * 0.6).astype(np.uint8))


def _draw_cameras(canvas, partition, layout: _Layout, colors, size) -> None:
    """Camera centres (filled circles with a dark rim) and viewing-direction ticks."""
    if len(layout.u_cams) == 0:
        return
    xy = layout.window.pixels(layout.u_cams)
    view = (layout.R[:, 2, :] @ partition.rotation.T)[:, layout.axes]  # viewing direction, grid frame, map axes
    tick, radius = size / 40.0, max(2, size // 200)
    blocks = partition.camera_block if partition.camera_block is not None else np.zeros(len(xy), np.int64)
    extra = coverage_blocks(partition, len(xy))
    for (x, y), d, b, others in zip(xy, view, blocks, extra):
        end = (int(round(x + tick * d[0])), int(round(y - tick * d[1])))
        cv2.line(canvas, (int(x), int(y)), end, (40, 40, 40), 1, cv2.LINE_AA)
        for ring, other in enumerate(others, 1):  # one ring per further block the camera trains, in its colour
            cv2.circle(canvas, (int(x), int(y)), radius + 2 * ring, colors[other].tolist(), 2, cv2.LINE_AA)
        dot(canvas, (int(x), int(y)), radius, colors[b].tolist(), rim=(30, 30, 30))


def coverage_blocks(partition: Partition, num_cameras: int) -> list[list[int]]:
    """For each camera, the blocks it trains besides the one its centre lies in (added by coverage, or by the
    coarse model's SSIM rule), in block order."""
    home = partition.camera_block if partition.camera_block is not None else np.full(num_cameras, -1)
    extra: list[list[int]] = [[] for _ in range(num_cameras)]
    for b, cameras in enumerate(partition.block_cameras):
        for c in np.asarray(cameras, np.int64).tolist():
            if c < num_cameras and home[c] != b:
                extra[c].append(b)
    return extra


def _box_pixels_per_unit(partition: Partition, layout: _Layout) -> float:
    """Map pixels per world unit inside the scene box (where the contraction is linear), along the map's x."""
    axis = layout.axes[0]
    centre = (partition.box_min + partition.box_max) / 2
    step = np.zeros(3)
    step[axis] = 0.1 * (partition.box_max - partition.box_min)[axis]
    ends = layout.window.pixels(partition.contract(np.stack([centre, centre + step]))[:, layout.axes] * layout.scale)
    return float(np.linalg.norm(ends[1] - ends[0])) / max(step[axis], 1e-12)


def _draw_scale_bar(canvas: np.ndarray, pixels_per_unit: float, size: int) -> None:
    """A scale bar in the lower left: true inside the scene box (the drawn square), where the map is linear."""
    units, length = scale_bar(pixels_per_unit, size)
    x0, y = 12, size - 14
    for color, thick in (((255, 255, 255), 5), ((0, 0, 0), 2)):
        cv2.line(canvas, (x0, y), (x0 + length, y), color, thick)
        for x in (x0, x0 + length):
            cv2.line(canvas, (x, y - 5), (x, y + 5), color, thick)
    put_text(canvas, f"{units:g} units (inside the box)", x0, y - 10, 0.45, outline=3)


def _draw_labels(canvas, partition, cells, vertical, size) -> None:
    """Each block's id at the middle of the visible part of its cell (stacked cells offset downwards)."""
    for b, (x0, y0, x1, y1) in enumerate(cells):
        layer = partition.cell_index(b)[vertical]
        cx = (np.clip(x0, 0, size - 1) + np.clip(x1, 0, size - 1)) // 2
        cy = (np.clip(y0, 0, size - 1) + np.clip(y1, 0, size - 1)) // 2 + 18 * layer
        put_text(canvas, str(b), int(cx) - 8, int(cy) + 6, 0.7, outline=4)


def _legend(partition: Partition, colors: np.ndarray, width: int) -> np.ndarray:
    """The legend strip: header lines, then one entry per block (cameras, centred cameras, points)."""
    points, centred = partition.cell_counts()
    columns = max(1, width // 330)
    rows = -(-partition.num_blocks // columns)
    header = wrap_text([f"{partition.num_blocks} blocks, grid {'x'.join(map(str, partition.block_dim))}, "
                        f"{partition.splits} cuts", f"cameras by {partition.camera_rule}: dot = the cell of the "
                        "centre, rings = further blocks the camera trains",
                        "black frame: the box (to scale inside, squashed outside)"], width, 0.45)
    strip = blank(width, (rows + len(header)) * LINE_PX + 8)
    for i, line in enumerate(header):
        put_text(strip, line, 6, (i + 1) * LINE_PX - 5, 0.45)
    for b in range(partition.num_blocks):
        x, y = 6 + (b // rows) * (width // columns), (b % rows + len(header) + 1) * LINE_PX - 5
        cv2.rectangle(strip, (x, y - 11), (x + 12, y + 1), colors[b].tolist(), -1)
        text = (f"{b}: {len(partition.block_cameras[b])} cams ({centred[b]} in cell), "
                f"{len(partition.block_points[b])} pts")
        put_text(strip, text, x + 18, y, 0.42)
    return strip
