"""Spikes out of the surface model: a height that stands more than :data:`STEP` pixels' size off the median of the
:data:`WINDOW` × :data:`WINDOW` cells around it takes that median.

What the trained Gaussians get wrong in a DSM away from its height steps is mostly small patches: a few cells of the
ground beside a building or a tree drawn at the roof's or the crown's height, or a cell dug below the ground. Such a
patch is a minority of its window, so the window's median is the surface around it. A step's straight edge keeps
its heights (on either side of it most of the window lies on the cell's own side), and so does any surface that
varies by less than :data:`STEP` pixels' size over the window, slopes included. What gives way is a true feature that
fills less than half the window: something under about nine pixels across (13 / √2), or a line thinner than six, and
a right-angled corner's last 17 cells, rounded off. docs/benchmarks/maps.md measures what it changes, against
the synthetic city's truth and against perfect geometry.

Cells without a height (:data:`~momentum_gs.maps.ortho.NODATA`) stay so, and take no part: for the median each is
given the nearest height within its band. The map is worked through in bands of :data:`BAND` rows (each with the
window's reach above and below; :mod:`momentum_gs.maps.bands`), one a thread: about 30 bytes a cell of a band
(float32 heights, int32 nearest cells) a thread, whatever the map's length.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import ndimage

from momentum_gs.errors import UserError
from momentum_gs.maps.bands import in_bands
from momentum_gs.maps.ortho import NODATA

WINDOW = 13  # cells a side of the window whose median a spike takes (odd)
STEP = 3.0  # pixels' size off that median from which a height is a spike
BAND = 256  # rows of the map worked on at once, by each thread


def despike(dsm: np.ndarray, cell: float, window: int = WINDOW, step: float = STEP,
            band: int = BAND, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(the DSM with its spikes at their windows' medians, [H, W] bool: the cells changed). ``dsm``: [H, W] heights
    (:data:`~momentum_gs.maps.ortho.NODATA` where none); ``cell``: a pixel's size in the heights' units; ``window``:
    odd, at least 3, or 0 for none; ``step``: pixels' size; ``show_progress``: a bar of the bands done."""
    check_window(window)
    if window == 0:
        return dsm.copy(), np.zeros(dsm.shape, bool)
    found, spikes = dsm.copy(), np.zeros(dsm.shape, bool)
    work = partial(_band, dsm, found, spikes, band=band, window=window, off=step * cell)
    in_bands(work, dsm.shape[0], band, "despike", "--despike 0", show_progress)  # each band writes its own rows
    return found, spikes


def check_window(window: int) -> None:
    """A UserError (one line) unless ``window`` is 0 (none) or odd and at least 3: a window with a middle cell."""
    if window != 0 and (window < 3 or window % 2 == 0):
        raise UserError(f"--despike {window}: the window has a middle cell only with an odd number of pixels, at "
                        "least 3; give one (or 0 to keep every height)")


def _band(dsm: np.ndarray, found: np.ndarray, spikes: np.ndarray, start: int, band: int, window: int,
          off: float) -> None:
    """:func:`despike` on the rows ``start`` to ``start + band`` of ``dsm``, read with the window's reach around
    them, written into the same rows of ``found`` (the heights) and ``spikes``."""
    end = min(start + band, dsm.shape[0])
    top, bottom = max(start - window // 2, 0), min(end + window // 2, dsm.shape[0])
    rows, core = slice(start, end), slice(start - top, end - top)
    heights = dsm[top:bottom].astype(np.float32)
    valid = heights != NODATA
    if not valid.any():
        return
    nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    median = ndimage.median_filter(heights[tuple(nearest)], size=window, mode="nearest")
    spike = (valid & (np.abs(heights - median) > off))[core]
    found[rows][spike] = median[core][spike]
    spikes[rows] = spike
