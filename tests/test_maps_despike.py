"""The DSM's spikes (momentum_gs.maps.despike): a height far off the median of the window around it takes that
median; a slope, a building's straight edges and the cells without a height stay; the map worked in bands is the
map worked whole; a window without a middle cell is one line."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.errors import UserError
from momentum_gs.maps.despike import STEP, WINDOW, despike
from momentum_gs.maps.ortho import NODATA

CELL = 0.5  # a pixel's size, in the heights' units


def _slope_and_a_building() -> np.ndarray:
    """[90, 120] heights: ground rising 0.1 a cell to the east, a 30 × 40-cell building 12 above it."""
    rows, cols = np.mgrid[0:90, 0:120]
    dsm = 0.1 * cols.astype(np.float32)
    dsm[30:60, 40:80] += 12.0
    return dsm


def test_spikes_take_the_median_and_a_slope_and_straight_edges_stay():
    dsm = _slope_and_a_building()
    spiked = dsm.copy()
    spiked[10, 10] += 8.0  # one cell of ground drawn high
    spiked[15:18, 95:98] += 6.0  # a 3 × 3 patch
    spiked[75:77, 20:22] -= 5.0  # a 2 × 2 pit
    spiked[45, 60] -= 9.0  # a cell of the roof dug down
    spiked[[5, 80, 84], [100, 5, 60]] = NODATA  # cells without a height
    found, changed = despike(spiked, CELL)
    planted = np.zeros(dsm.shape, bool)
    planted[10, 10] = planted[45, 60] = True
    planted[15:18, 95:98] = planted[75:77, 20:22] = True
    assert changed[planted].all()
    np.testing.assert_allclose(found[planted], dsm[planted], atol=0.21)  # the slope, within two cells' rise
    assert (found[[5, 80, 84], [100, 5, 60]] == NODATA).all() and not changed[[5, 80, 84], [100, 5, 60]].any()
    corners = np.zeros(dsm.shape, bool)
    for row, col in ((30, 40), (30, 79), (59, 40), (59, 79)):
        corners[max(row - 6, 0):row + 7, max(col - 6, 0):col + 7] = True
    assert not changed[~planted & ~corners].any()  # the slope and the building's edges away from its corners
    assert np.array_equal(found[~changed], spiked[~changed])
    assert 0 < changed[corners].sum() <= 4 * 20  # each corner's last few cells are rounded off
    unchanged, none = despike(spiked, CELL, window=0)
    assert np.array_equal(unchanged, spiked) and not none.any()


def test_a_height_within_the_step_stays():
    dsm = _slope_and_a_building()
    dsm[20, 20] += 0.99 * STEP * CELL
    found, changed = despike(dsm, CELL)
    assert not changed[:25].any() and found[20, 20] == dsm[20, 20]  # (the rows away from the building's corners)
    dsm[20, 20] += 0.02 * STEP * CELL
    found, changed = despike(dsm, CELL)
    assert changed[:25].sum() == 1 and found[20, 20] == pytest.approx(2.0)


def test_the_bands_give_the_map_worked_whole():
    rng = np.random.default_rng(0)
    dsm = _slope_and_a_building() + rng.normal(0, 0.3, (90, 120)).astype(np.float32)
    dsm[rng.random(dsm.shape) < 0.02] += 10.0
    dsm[rng.random(dsm.shape) < 0.01] = NODATA
    whole, spikes = despike(dsm, CELL, band=10**6)
    banded, banded_spikes = despike(dsm, CELL, band=7)
    assert spikes.sum() > 100 and np.array_equal(banded, whole) and np.array_equal(banded_spikes, spikes)
    assert banded.dtype == dsm.dtype


@pytest.mark.parametrize("window", [1, 2, 14])
def test_a_window_without_a_middle_cell_is_one_line(window):
    with pytest.raises(UserError, match=f"--despike {window}: .* odd number of pixels, at least 3"):
        despike(_slope_and_a_building(), CELL, window=window)
    assert WINDOW % 2 == 1
