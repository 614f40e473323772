"""A top-down map of a partition: cells, points and cameras coloured by block, and a legend of counts.

The map is drawn in contracted coordinates seen from above, where every cell is a rectangle, stretched
back by the box size so that the scene box (thin black frame) is to scale in world units; outside the box
distances shrink towards the edge of the contracted cube. It is zoomed on the cameras and most points.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.scene import SceneData
from momentum_gs.errors import UserError
from momentum_gs.partition.frame import camera_arrays, map_axes
from momentum_gs.partition.partition import Partition

LINE_PX = 20  # legend line height
FONT = cv2.FONT_HERSHEY_SIMPLEX


def block_colors(n: int) -> np.ndarray:
    """[n, 3] uint8 BGR colours, hues spread by the golden angle."""
    hsv = np.stack([(np.arange(n) * 0.618034 % 1.0) * 180, np.full(n, 190), np.full(n, 230)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]


def map_window(u_cams: np.ndarray, u_points: np.ndarray) -> tuple[np.ndarray, float]:
    """(lower-left corner [2], side) of a square map window around the cameras and most of the points."""
    parts = [u_cams] if len(u_cams) else []
    if len(u_points):
        parts.append(np.percentile(u_points, [1, 99], axis=0))
    lo = np.min([p.min(0) for p in parts], axis=0) if parts else np.zeros(2)
    hi = np.max([p.max(0) for p in parts], axis=0) if parts else np.ones(2)
    side = max(float((hi - lo).max()) * 1.1, 1e-3)
    return (lo + hi) / 2 - side / 2, side


def _wrap(parts: list[str], width: int, scale: float) -> list[str]:
    """Join ``parts`` with "; " into as few lines as fit in ``width`` pixels."""
    lines = [parts[0]]
    for part in parts[1:]:
        joined = f"{lines[-1]}; {part}"
        if cv2.getTextSize(joined, FONT, scale, 1)[0][0] <= width - 12:
            lines[-1] = joined
        else:
            lines.append(part)
    return lines


def _legend(partition: Partition, colors: np.ndarray, width: int) -> np.ndarray:
    """The legend strip: header lines, then one entry per block (cameras, centred cameras, points)."""
    points, centred = partition.cell_counts()
    columns = max(1, width // 330)
    rows = -(-partition.num_blocks // columns)
    header = _wrap([f"{partition.num_blocks} blocks, grid {'x'.join(map(str, partition.block_dim))}, "
                    f"{partition.splits} cuts", f"cameras by {partition.camera_rule}: dot = the cell of the centre, "
                    "rings = further blocks the camera trains",
                    "black frame: the box (to scale inside, squashed outside)"], width, 0.45)
    strip = np.full(((rows + len(header)) * LINE_PX + 8, width, 3), 255, np.uint8)
    for i, line in enumerate(header):
        cv2.putText(strip, line, (6, (i + 1) * LINE_PX - 5), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for b in range(partition.num_blocks):
        x, y = 6 + (b // rows) * (width // columns), (b % rows + len(header) + 1) * LINE_PX - 5
        cv2.rectangle(strip, (x, y - 11), (x + 12, y + 1), colors[b].tolist(), -1)
        text = (f"{b}: {len(partition.block_cameras[b])} cams ({centred[b]} in cell), "
                f"{len(partition.block_points[b])} pts")
        cv2.putText(strip, text, (x + 18, y), FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


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
    right, forward = map_axes(partition.rotation, partition.up, partition.block_dim)
    axes = [right, forward]
    colors = block_colors(partition.num_blocks)
    centres, R = camera_arrays(scene.train)
    points = np.asarray(scene.points, np.float64).reshape(-1, 3)
    if len(points) > 200_000:  # enough dots for a map
        points = points[np.random.default_rng(0).choice(len(points), 200_000, replace=False)]
    scale = (partition.box_max - partition.box_min)[axes]  # contracted → world-like map units
    u_cams = partition.contract(centres)[:, axes] * scale if len(centres) else np.zeros((0, 2))
    u_points = partition.contract(points) if len(points) else np.zeros((0, 3))
    corner, side = map_window(u_cams, u_points[:, axes] * scale)

    def pix(uv: np.ndarray) -> np.ndarray:
        """[M, 2] map coordinates → [M, 2] int pixel (x right, y down) coordinates."""
        t = (uv - corner) / side * (size - 1)
        return np.round(np.stack([t[:, 0], size - 1 - t[:, 1]], 1)).astype(np.int64)

    canvas = np.full((size, size, 3), 255, np.uint8)
    tint = canvas.copy()
    cells = []
    for b in range(partition.num_blocks):
        lo, hi = partition.cell_bounds(b)
        (x0, y1), (x1, y0) = pix(np.array([lo[axes], hi[axes]]) * scale)
        cells.append((x0, y0, x1, y1))
        cv2.rectangle(tint, (int(x0), int(y0)), (int(x1), int(y1)), colors[b].tolist(), -1)
    canvas = cv2.addWeighted(tint, 0.22, canvas, 0.78, 0)
    for x0, y0, x1, y1 in cells:
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), (90, 90, 90), 1)
    (bx0, by1), (bx1, by0) = pix(np.array([[0.25, 0.25], [0.75, 0.75]]) * scale)
    cv2.rectangle(canvas, (int(bx0), int(by0)), (int(bx1), int(by1)), (0, 0, 0), 1)
    if len(points):
        xy, block = pix(u_points[:, axes] * scale), partition.cell_of_contracted(u_points)
        ok = (xy >= 0).all(1) & (xy < size).all(1)
        canvas[xy[ok, 1], xy[ok, 0]] = (colors[block[ok]] * 0.6).astype(np.uint8)
    _draw_cameras(canvas, partition, pix(u_cams), R, axes, colors, size)
    centre = (partition.box_min + partition.box_max) / 2
    step = np.zeros(3)
    step[axes[0]] = 0.1 * (partition.box_max - partition.box_min)[axes[0]]
    ends = pix(partition.contract(np.stack([centre, centre + step]))[:, axes] * scale)
    _draw_scale_bar(canvas, float(np.linalg.norm(ends[1] - ends[0])) / max(step[axes[0]], 1e-12), size)
    _draw_labels(canvas, partition, cells, 3 - right - forward, size)
    image = np.concatenate([canvas, _legend(partition, colors, size)], 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise UserError(f"could not write the partition map {path}")


def _draw_cameras(canvas, partition, xy, R, axes, colors, size) -> None:
    """Camera centres (filled circles with a dark rim) and viewing-direction ticks."""
    if len(xy) == 0:
        return
    view = (R[:, 2, :] @ partition.rotation.T)[:, axes]  # viewing direction, grid frame, map axes
    tick, radius = size / 40.0, max(2, size // 200)
    blocks = partition.camera_block if partition.camera_block is not None else np.zeros(len(xy), np.int64)
    extra = coverage_blocks(partition, len(xy))
    for (x, y), d, b, others in zip(xy, view, blocks, extra):
        end = (int(round(x + tick * d[0])), int(round(y - tick * d[1])))
        cv2.line(canvas, (int(x), int(y)), end, (40, 40, 40), 1, cv2.LINE_AA)
        for ring, other in enumerate(others, 1):  # one ring per further block the camera trains, in its colour
            cv2.circle(canvas, (int(x), int(y)), radius + 2 * ring, colors[other].tolist(), 2, cv2.LINE_AA)
        cv2.circle(canvas, (int(x), int(y)), radius, colors[b].tolist(), -1, cv2.LINE_AA)
        cv2.circle(canvas, (int(x), int(y)), radius, (30, 30, 30), 1, cv2.LINE_AA)


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


def scale_bar(pixels_per_unit: float, map_size: int) -> tuple[float, int]:
    """(length in world units, length in pixels) of a bar of a round length (1, 2 or 5 × 10^k) near a fifth
    of the map's width."""
    target = map_size / 5 / max(pixels_per_unit, 1e-12)
    power = 10.0 ** np.floor(np.log10(target))
    units = max((m * power for m in (1, 2, 5, 10) if m * power <= target), default=power)
    return float(units), int(round(units * pixels_per_unit))


def _draw_scale_bar(canvas: np.ndarray, pixels_per_unit: float, size: int) -> None:
    """A scale bar in the lower left: true inside the scene box (the drawn square), where the map is linear."""
    units, length = scale_bar(pixels_per_unit, size)
    x0, y = 12, size - 14
    for color, thick in (((255, 255, 255), 5), ((0, 0, 0), 2)):
        cv2.line(canvas, (x0, y), (x0 + length, y), color, thick)
        for x in (x0, x0 + length):
            cv2.line(canvas, (x, y - 5), (x, y + 5), color, thick)
    text = f"{units:g} units (inside the box)"
    _outlined_text(canvas, text, (x0, y - 10), 0.45, 3)


def _draw_labels(canvas, partition, cells, vertical, size) -> None:
    """Each block's id at the middle of the visible part of its cell (stacked cells offset downwards)."""
    for b, (x0, y0, x1, y1) in enumerate(cells):
        layer = partition.cell_index(b)[vertical]
        cx = (np.clip(x0, 0, size - 1) + np.clip(x1, 0, size - 1)) // 2
        cy = (np.clip(y0, 0, size - 1) + np.clip(y1, 0, size - 1)) // 2 + 18 * layer
        _outlined_text(canvas, str(b), (int(cx) - 8, int(cy) + 6), 0.7, 4)


def _outlined_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, outline: int) -> None:
    """Black text in a white outline ``outline`` pixels thick, readable over any tint or point."""
    for color, thick in (((255, 255, 255), outline), ((0, 0, 0), 1)):
        cv2.putText(canvas, text, origin, FONT, scale, color, thick, cv2.LINE_AA)
