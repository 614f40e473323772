"""The surface model's heights settled on the orthophoto and on the photos' agreement: each height becomes the
weighted median of the heights of the (2 :data:`REACH` + 1)² cells around it, each weighted by how alike its colour in
the orthophoto is to the cell's own and by how well the photos agree on its height.

What is left wrong in a DSM after the despike lies mostly within a few cells of its height steps: the ground beside a
building drawn at the roof's height, a roof's edge drawn down, a few cells wide. The photos that see such a cell
place it at heights apart (its spread, :mod:`momentum_gs.maps.spread`, is wide), and the orthophoto draws the edge
where it is. A neighbour's weight is exp(−d² / (2 :data:`COLOUR`²)), for d the distance of the two cells' colours
(RGB, 0-255), times 1 / (1 + (s / (:data:`SPREAD` cells))²), for s its spread; a cell without a spread (fewer than
two photos see it) counts as one whose spread is :data:`SPREAD` cells. A weighted median picks one of the heights
there: it makes up no height between a roof and the ground, as a mean would. docs/benchmarks/maps.md measures what
it changes, against the synthetic city's truth and against brighton_beach's SfM points that the training never saw.

Cells without a height (:data:`~momentum_gs.maps.ortho.NODATA`) stay so and take no part. The map is worked through
in bands of about :data:`BAND_CELLS` cells (:mod:`momentum_gs.maps.bands`). Each thread holds its band's windows:
for each cell, each neighbour's height, weight and place in the order (float32, float32, int64).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from momentum_gs.maps.bands import in_bands
from momentum_gs.maps.ortho import NODATA

REACH = 3  # cells each way of the window
WINDOW = 2 * REACH + 1  # cells a side of the window, as maps.json records it
COLOUR = 30.0  # the colour distance (RGB, 0-255) at which a neighbour's weight falls to exp(-1/2)
SPREAD = 8.0  # pixels' size of spread at which a neighbour's weight halves
BAND_CELLS = 1 << 16  # cells of the map worked on at once, by each thread


def guided_median(dsm: np.ndarray, colour: np.ndarray, spread: np.ndarray, cell: float, reach: int = REACH,
                  band_cells: int = BAND_CELLS, show_progress: bool = False) -> np.ndarray:
    """The heights of ``dsm`` ([H, W], :data:`~momentum_gs.maps.ortho.NODATA` where none) at the weighted medians of
    their windows (module notes). ``colour``: [H, W, 3] the orthophoto's; ``spread``: [H, W] each height's spread
    over the photos (NODATA where fewer than two see it); ``cell``: a pixel's size in the heights' units;
    ``show_progress``: a bar of the bands done."""
    trust = spread_trust(dsm, spread, cell)
    found = dsm.copy()
    rows = max(1, band_cells // max(dsm.shape[1], 1))
    work = partial(_band, dsm, colour, trust, found, rows=rows, reach=reach)
    in_bands(work, dsm.shape[0], rows, "guide", "--no-guide", show_progress)  # each band writes its rows of found
    return found


def spread_trust(dsm: np.ndarray, spread: np.ndarray, cell: float) -> np.ndarray:
    """[H, W] float32 how far each height of ``dsm`` is trusted, from its ``spread`` over the photos (module notes):
    1 / (1 + (s / (:data:`SPREAD` cells))²); 0.5 without a spread (NODATA); 0 where ``dsm`` has no height."""
    trust = np.where(spread == NODATA, 0.5, 1.0 / (1.0 + (spread / (SPREAD * cell)) ** 2)).astype(np.float32)
    trust[dsm == NODATA] = 0.0  # a cell without a height gives none
    return trust


def _band(dsm: np.ndarray, colour: np.ndarray, trust: np.ndarray, found: np.ndarray, start: int, rows: int,
          reach: int) -> None:
    """:func:`guided_median` on the rows ``start`` to ``start + rows`` of ``dsm``, read with the window's reach
    around them (no weight past the map's border), written into the same rows of ``found``."""
    height, width = dsm.shape
    end = min(start + rows, height)
    if not (dsm[start:end] != NODATA).any():
        return
    down, across = np.arange(start - reach, end + reach), np.arange(-reach, width + reach)  # with the window's reach
    near, wide = np.clip(down, 0, height - 1), np.clip(across, 0, width - 1)
    heights, colours, trusts = (a[near][:, wide] for a in (dsm, colour, trust))
    colours = colours.astype(np.float32)
    trusts = trusts * ((down == near)[:, None] & (across == wide)[None, :])  # past the border: no weight
    own = colour[start:end].astype(np.float32)
    side = 2 * reach + 1
    values = np.empty((end - start, width, side * side), np.float32)
    weights = np.empty_like(values)
    for k in range(side * side):
        dy, dx = divmod(k, side)
        window = (slice(dy, dy + end - start), slice(dx, dx + width))
        values[..., k] = heights[window]
        distance = ((colours[window] - own) ** 2).sum(-1)
        weights[..., k] = np.exp(distance * (-0.5 / COLOUR**2)) * trusts[window]
    order = np.argsort(values, axis=-1)
    values = np.take_along_axis(values, order, -1)
    weights = np.cumsum(np.take_along_axis(weights, order, -1), axis=-1)
    middle = (weights < weights[..., -1:] / 2).sum(-1, keepdims=True)  # the first height past half the weight
    median = np.take_along_axis(values, np.minimum(middle, side * side - 1), -1)[..., 0]
    mine = dsm[start:end]
    found[start:end] = np.where((mine != NODATA) & (weights[..., -1] > 0), median, mine)
