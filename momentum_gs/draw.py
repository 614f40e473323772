"""The drawing kit shared by the project's pictures (the partition map, ``mgs sfm``'s ``cameras.png``, the plots
of ``mgs table``): a blank canvas, colours, text, dots and points, a top-down map window with its scale bar,
plot axes with round ticks, and writing a PNG.

A picture is an [H, W, 3] uint8 array in OpenCV's BGR order. Pixel coordinates are (x right, y down) from the
top-left pixel; map coordinates are (x right, y up) in world units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes

FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, WHITE, GRID = (0, 0, 0), (255, 255, 255), (225, 225, 225)
TAB10 = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
         (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]  # matplotlib's tab10, BGR
MAP_MARGIN = 1.1  # a map window is this much wider than what it must show

Pixel = tuple[int, int]


# --- canvas, colours, saving -------------------------------------------------------------------------------

def blank(width: int, height: int) -> np.ndarray:
    """A white [height, width, 3] uint8 picture."""
    return np.full((height, width, 3), 255, np.uint8)


def distinct_colors(n: int) -> np.ndarray:
    """[n, 3] uint8 BGR colours, hues spread by the golden angle (neighbours in order look unlike)."""
    hsv = np.stack([(np.arange(n) * 0.618034 % 1.0) * 180, np.full(n, 190), np.full(n, 230)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an [H, W, 3] uint8 BGR picture as a PNG through a temporary file and a rename (folders made);
    a picture that cannot be written is a UserError naming the file."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"could not encode the picture {path} as a PNG")
    atomic_write_bytes(path, data.tobytes())


# --- text ----------------------------------------------------------------------------------------------------

def put_text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.42, color=BLACK,
             align: str = "left", outline: int = 0) -> None:
    """Draw ``text`` (font scale ``scale``, 1 pixel strokes) with its baseline at pixel row ``y``, starting at
    (``align="left"``), centred on ("center") or ending at ("right") pixel column ``x``; with ``outline`` > 0,
    over a white outline that many pixels thick, readable over any tint or point."""
    width = cv2.getTextSize(text, FONT, scale, 1)[0][0]
    x -= {"left": 0, "center": width // 2, "right": width}[align]
    if outline:
        cv2.putText(image, text, (int(x), int(y)), FONT, scale, WHITE, outline, cv2.LINE_AA)
    cv2.putText(image, text, (int(x), int(y)), FONT, scale, color, 1, cv2.LINE_AA)


def wrap_text(parts: Sequence[str], width: int, scale: float, separator: str = "; ") -> list[str]:
    """Join ``parts`` with ``separator`` into as few lines as fit in ``width`` pixels (less a 12 pixel
    margin) at font scale ``scale``; a part is never split."""
    lines = [parts[0]]
    for part in parts[1:]:
        joined = f"{lines[-1]}{separator}{part}"
        if cv2.getTextSize(joined, FONT, scale, 1)[0][0] <= width - 12:
            lines[-1] = joined
        else:
            lines.append(part)
    return lines


# --- dots and points -----------------------------------------------------------------------------------------

def dot(image: np.ndarray, xy: Pixel, radius: int, color, rim=None) -> None:
    """A filled, anti-aliased disc of ``radius`` pixels centred on pixel ``xy``, with a 1 pixel ``rim``
    of another colour when given."""
    cv2.circle(image, xy, radius, color, -1, cv2.LINE_AA)
    if rim is not None:
        cv2.circle(image, xy, radius, rim, 1, cv2.LINE_AA)


def put_pixels(image: np.ndarray, xy: np.ndarray, colors) -> None:
    """Set the pixels ``xy`` ([M, 2] int, x right, y down) to ``colors`` ([M, 3] uint8 BGR, or one colour);
    those outside the picture are skipped, and a later point covers an earlier one."""
    xy = np.asarray(xy).reshape(-1, 2)
    height, width = image.shape[:2]
    ok = (xy >= 0).all(1) & (xy[:, 0] < width) & (xy[:, 1] < height)
    colors = np.asarray(colors)
    image[xy[ok, 1], xy[ok, 0]] = colors[ok] if colors.ndim == 2 else colors


# --- round numbers -------------------------------------------------------------------------------------------

def round_number(value: float, up: bool = False) -> float:
    """The largest 1, 2 or 5 × 10^k at most ``value`` > 0, or with ``up`` the smallest one at least ``value``."""
    power = 10.0 ** math.floor(math.log10(value))
    if up:
        return power * next(m for m in (1, 2, 5, 10) if value <= power * m)
    return max((m * power for m in (1, 2, 5, 10) if m * power <= value), default=power)


# --- a top-down map ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MapWindow:
    """A square window of the map plane (x right, y up, world units) laid onto pixels (x right, y down): its
    left edge on pixel column 0 and its right edge ``span`` pixels further, its top edge on pixel row 0 and its
    bottom edge on row ``span`` (``span`` = the picture's size - 1 puts both edges on pixels)."""

    corner: np.ndarray  # [2] the lower-left corner, world units
    side: float  # the side, world units
    span: float  # pixels from one edge to the opposite one

    @property
    def pixels_per_unit(self) -> float:
        """Pixels per world unit."""
        return self.span / self.side

    def pixels(self, uv: np.ndarray) -> np.ndarray:
        """[M, 2] map coordinates (world units) → [M, 2] int64 pixel coordinates (x right, y down), rounded."""
        t = (np.asarray(uv, np.float64).reshape(-1, 2) - self.corner) / self.side * self.span
        return np.round(np.stack([t[:, 0], self.span - t[:, 1]], 1)).astype(np.int64)


def map_window(u_cams: np.ndarray, u_points: np.ndarray, span: float) -> MapWindow:
    """The square window around the cameras ([C, 2] map coordinates) and most of the points ([P, 2]: their
    1st to 99th percentile along each axis), centred on them and :data:`MAP_MARGIN` times wider, laid onto
    ``span`` pixels; the unit square when there is neither."""
    parts = [u_cams] if len(u_cams) else []
    if len(u_points):
        parts.append(np.percentile(u_points, [1, 99], axis=0))
    lo = np.min([p.min(0) for p in parts], axis=0) if parts else np.zeros(2)
    hi = np.max([p.max(0) for p in parts], axis=0) if parts else np.ones(2)
    side = max(float((hi - lo).max()) * MAP_MARGIN, 1e-3)
    return MapWindow((lo + hi) / 2 - side / 2, side, span)


def scale_bar(pixels_per_unit: float, map_size: int) -> tuple[float, int]:
    """(length in world units, length in pixels) of a bar of a round length (1, 2 or 5 × 10^k) near a fifth
    of the map's width (``map_size`` pixels)."""
    units = round_number(map_size / 5 / max(pixels_per_unit, 1e-12))
    return float(units), int(round(units * pixels_per_unit))


# --- plots ---------------------------------------------------------------------------------------------------

def ticks(lo: float, hi: float, count: int = 6) -> tuple[np.ndarray, int]:
    """Round tick values inside [lo, hi] (about ``count`` of them) and the decimals their labels need."""
    step = round_number((hi - lo) / count, up=True)
    return np.arange(math.ceil(lo / step) * step, hi + step * 1e-6, step), max(0, -math.floor(math.log10(step)))


def padded_limits(values: Sequence[float]) -> tuple[float, float]:
    """A data range padded by 5 % (a unit range around a single value, [0, 1] without data)."""
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 if hi > lo else max(abs(lo) * 0.05, 0.5)
    return lo - pad, hi + pad


def draw_axes(image: np.ndarray, box: tuple[int, int, int, int], xs: Sequence[float], ys: Sequence[float],
              xlabel: str, ylabel: str, title: str) -> Callable[[float, float], Pixel]:
    """Frame, grid, ticks and labels of a plot of data ``xs``/``ys`` in ``box`` (left, top, right, bottom
    pixels; the y label sits in pixel columns 8 to 32); returns the (x, y) data → pixel (int, int) mapping."""
    (x0, x1), (y0, y1) = padded_limits(xs), padded_limits(ys)
    left, top, right, bottom = box

    def to_px(x: float, y: float) -> Pixel:
        """Data (x, y) → pixel (x right, y down)."""
        return (round(left + (x - x0) / (x1 - x0) * (right - left)),
                round(bottom - (y - y0) / (y1 - y0) * (bottom - top)))

    values, digits = ticks(x0, x1)
    for t in values:
        px = to_px(t, y0)[0]
        cv2.line(image, (px, top), (px, bottom), GRID, 1)
        put_text(image, f"{t:.{digits}f}", px, bottom + 16, align="center")
    values, digits = ticks(y0, y1)
    for t in values:
        py = to_px(x0, t)[1]
        cv2.line(image, (left, py), (right, py), GRID, 1)
        put_text(image, f"{t:.{digits}f}", left - 5, py + 4, align="right")
    cv2.rectangle(image, (left, top), (right, bottom), BLACK, 1)
    put_text(image, xlabel, (left + right) // 2, bottom + 40, 0.5, align="center")
    put_text(image, title, (left + right) // 2, top - 15, 0.55, align="center")
    label = blank(bottom - top, 24)  # the y label, drawn flat and turned upright
    put_text(label, ylabel, label.shape[1] // 2, 17, 0.5, align="center")
    image[top:bottom, 8:32] = np.minimum(image[top:bottom, 8:32], cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE))
    return to_px
