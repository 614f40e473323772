"""The surface model's heights settled over the whole map: where the photos disagree on a height, it is drawn from
the heights around it that they agree on, across the cells of the orthophoto's colour, and not across its edges.

The guided median (:mod:`momentum_gs.maps.guide`) reaches 3 cells each way. Ground drawn at a roof's height beside a
tall building, or an alley bridged at the roofs' height, is wider than that, and the photos that see it place it at
heights apart: its spread (:mod:`momentum_gs.maps.spread`) is wide. This step finds the heights x that minimise

    Σᵢ cᵢ (xᵢ − hᵢ)² + :data:`WEIGHT` Σᵢⱼ wᵢⱼ (xᵢ − xⱼ)²

over the cells i with a height h (the second sum over the pairs of cells side by side or one above the other), the
edge-aware smoothing of Farbman et al. (2008) with a confidence per cell, as the fast bilateral solver of Barron
and Poole (2016) refines a depth map. A cell's confidence c is the guided median's trust in it,
1 / (1 + (s / (:data:`~momentum_gs.maps.guide.SPREAD` cells))²) for s its spread (one without a spread, seen by
fewer than two photos, counts as one whose spread is that many cells); a pair's weight w is
exp(−d² / (2 :data:`COLOUR`²)), for d the distance of their colours in the orthophoto (RGB, 0-255). Where the photos
agree (c near 1) a height stays within a fraction of a pixel of its own; where they do not, it takes the heights that
colour-alike cells around it hold, from as far as that colour reaches.
The solved heights blend a roof's into the ground's where the photos disagree on a cell; each then takes the nearest
of the heights the map had in the :data:`~momentum_gs.maps.guide.REACH` cells each way around it, as the guided
median picks one of them: no height is made up between a roof and the ground. docs/benchmarks/maps.md measures what
it changes, against the synthetic city's truth and against brighton_beach's SfM points that the training never saw.

The linear system (c + WEIGHT · L) x = c h, L the weighted graph Laplacian of the cells, is symmetric positive
definite; it is solved by SciPy's conjugate gradients, preconditioned by its diagonal, its product taken from the
map's arrays (shifted by a cell each way) rather than a sparse matrix. The map is solved in bands of about
:data:`BAND_CELLS` cells, one a thread (:mod:`momentum_gs.maps.bands`), each with :data:`MARGIN` rows more on
either side whose heights it solves but does not keep: some fifteen float32 arrays of a band's size a thread. Cells
without a height (:data:`~momentum_gs.maps.ortho.NODATA`) stay so and take no part.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from momentum_gs.maps.bands import in_bands
from momentum_gs.maps.guide import REACH, spread_trust
from momentum_gs.maps.ortho import NODATA

WEIGHT = 1.0  # the smoothness against a confidence of 1: a cell the photos agree on moves little
COLOUR = 7.0  # the colour distance (RGB, 0-255) at which a pair's weight falls to exp(-1/2)
ITERATIONS = 400  # conjugate-gradient iterations at most
TOLERANCE = 1e-6  # the residual, relative to the right-hand side's, at which they stop
BAND_CELLS = 1 << 20  # cells of the map a thread solves at once, besides its margins
MARGIN = 48  # rows solved on each side of a band's own, which a band's heights hardly feel past a few cells


def solved_heights(dsm: np.ndarray, colour: np.ndarray, spread: np.ndarray, cell: float, iterations: int = ITERATIONS,
                   band_cells: int = BAND_CELLS, show_progress: bool = False) -> np.ndarray:
    """The heights of ``dsm`` ([H, W], :data:`~momentum_gs.maps.ortho.NODATA` where none) settled over the map (module
    notes). ``colour``: [H, W, 3] the orthophoto's; ``spread``: [H, W] each height's spread over the photos (NODATA
    where fewer than two see it); ``cell``: a pixel's size in the heights' units; ``show_progress``: a bar of the
    bands done."""
    found = dsm.copy()
    rows = max(1, band_cells // max(dsm.shape[1], 1))
    work = partial(_band, dsm, colour, spread, cell, found, rows, iterations)
    in_bands(work, dsm.shape[0], rows, "solve", "--no-guide", show_progress)  # each band writes its rows of found
    return found


def _band(dsm: np.ndarray, colour: np.ndarray, spread: np.ndarray, cell: float, found: np.ndarray, rows: int,
          iterations: int, start: int) -> None:
    """The rows ``start`` to ``start + rows`` of ``found``: :func:`_solved` on them and on :data:`MARGIN` rows each
    side."""
    end = min(start + rows, dsm.shape[0])
    low, high = max(0, start - MARGIN), min(dsm.shape[0], end + MARGIN)
    part = _solved(dsm[low:high], colour[low:high], spread[low:high], cell, iterations)
    found[start:end] = part[start - low:end - low]


def _solved(dsm: np.ndarray, colour: np.ndarray, spread: np.ndarray, cell: float, iterations: int) -> np.ndarray:
    """:func:`solved_heights` of a band, solved whole."""
    drawn = dsm != NODATA
    if not drawn.any():
        return dsm.copy()
    confidence = spread_trust(dsm, spread, cell)
    across = WEIGHT * _pair_weights(colour, drawn, 1)  # [H, W - 1], each cell with the one east of it
    down = WEIGHT * _pair_weights(colour, drawn, 0)  # [H - 1, W], each cell with the one south of it
    diagonal = confidence + np.float32(1e-6)  # a cell cut off from all others keeps its height
    diagonal[:, :-1] += across
    diagonal[:, 1:] += across
    diagonal[:-1] += down
    diagonal[1:] += down
    base = float(np.median(dsm[drawn]))  # solved about the median height: float32 keeps its fraction of a cell
    heights = np.where(drawn, dsm - np.float32(base), np.float32(0.0)).astype(np.float32)
    rhs = (confidence * heights).ravel()
    del confidence
    term = np.empty(dsm.shape, np.float32)  # the product's neighbours, reused

    def product(x: np.ndarray) -> np.ndarray:
        x = x.reshape(dsm.shape)
        out = diagonal * x
        for weights, here, there in ((across, np.s_[:, :-1], np.s_[:, 1:]), (down, np.s_[:-1], np.s_[1:])):
            for one, other in ((here, there), (there, here)):
                np.multiply(weights, x[other], out=term[one])
                out[one] -= term[one]
        return out.ravel()

    size = dsm.size
    system = LinearOperator((size, size), matvec=product, dtype=np.float32)
    inverse = (1.0 / diagonal).ravel()
    jacobi = LinearOperator((size, size), matvec=lambda x: inverse * x.ravel(), dtype=np.float32)
    found, _ = cg(system, rhs, x0=heights.ravel(), rtol=TOLERANCE, maxiter=iterations, M=jacobi)
    del system, jacobi, inverse, diagonal, rhs, heights, term
    found = found.reshape(dsm.shape)
    found += np.float32(base)
    return np.where(drawn, _nearest_around(found, dsm), NODATA).astype(dsm.dtype, copy=False)


def _nearest_around(solved: np.ndarray, dsm: np.ndarray, reach: int = REACH) -> np.ndarray:
    """[H, W] each of the ``solved`` heights moved to the nearest of the ``dsm``'s heights in the (2 ``reach`` + 1)²
    cells around it (NODATA ones left out): a height the map had, never one between a roof and the ground."""
    height, width = dsm.shape
    padded = np.pad(dsm, reach, constant_values=NODATA)
    nearest, gap = dsm.copy(), np.full(dsm.shape, np.inf, np.float32)
    for dy in range(2 * reach + 1):
        for dx in range(2 * reach + 1):
            there = padded[dy:dy + height, dx:dx + width]
            apart = np.where(there == NODATA, np.inf, np.abs(there - solved)).astype(np.float32)
            closer = apart < gap
            nearest[closer], gap[closer] = there[closer], apart[closer]
    return nearest


def _pair_weights(colour: np.ndarray, drawn: np.ndarray, axis: int) -> np.ndarray:
    """exp(−d² / (2 COLOUR²)) for d the distance of each cell's colour (``colour`` [H, W, 3], RGB) to the next one's
    along ``axis``, 0 where either has no height (``drawn`` False): [H, W - 1] across, [H - 1, W] down."""
    first, second = [np.s_[:], np.s_[:]], [np.s_[:], np.s_[:]]
    first[axis], second[axis] = np.s_[:-1], np.s_[1:]
    first, second = tuple(first), tuple(second)
    distance = np.zeros(drawn[first].shape, np.float32)
    for channel in range(3):  # a channel at a time: no float copy of the whole orthophoto
        step = colour[first + (channel,)].astype(np.float32) - colour[second + (channel,)]
        distance += step * step
    weights = np.exp(distance * np.float32(-0.5 / COLOUR**2))
    weights[~(drawn[first] & drawn[second])] = 0.0
    return weights
