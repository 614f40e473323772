"""A map worked through in bands of rows (momentum_gs.maps.bands): every row once, whatever the threads, an error in
a band raised, and a bar of the bands done where asked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentum_gs.maps.bands import in_bands
from momentum_gs.maps.despike import despike
from momentum_gs.maps.guide import guided_median


@pytest.mark.parametrize("rows", [1, 4, 7, 50])
def test_every_row_is_worked_once(rows):
    counts = np.zeros(23, int)

    def work(start):
        counts[start:start + rows] += 1

    in_bands(work, 23, rows, "test", "--none")
    assert (counts == 1).all()


def test_an_error_in_a_band_is_raised():
    def work(start):
        if start == 8:
            raise ValueError("band at row 8")

    with pytest.raises(ValueError, match="band at row 8"):
        in_bands(work, 20, 4, "test", "--none")


def test_the_threads_do_not_change_the_heights():
    rng = np.random.default_rng(0)
    dsm = rng.normal(0, 1, (90, 70)).astype(np.float32)
    dsm[rng.random(dsm.shape) < 0.05] += 20  # spikes
    colour = rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)
    spread = rng.uniform(0, 3, dsm.shape).astype(np.float32)
    threads = torch.get_num_threads()
    try:
        found = []
        for count in (1, 3):
            torch.set_num_threads(count)
            despiked, _ = despike(dsm, 0.5, band=8)
            found.append((despiked, guided_median(despiked, colour, spread, 0.5, band_cells=5 * 70)))
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(a, b) for a, b in zip(*found))
    assert not np.array_equal(found[0][0], dsm) and not np.array_equal(found[0][1], found[0][0])


def test_a_bar_counts_the_bands_where_asked(capsys):
    dsm = np.zeros((40, 30), np.float32)
    despike(dsm, 1.0, band=8, show_progress=True)
    guided_median(dsm, np.zeros((40, 30, 3), np.uint8), np.zeros((40, 30), np.float32), 1.0, band_cells=10 * 30,
                  show_progress=True)
    said = capsys.readouterr().err
    assert "despike" in said and "5/5" in said and "guide" in said and "4/4" in said
    despike(dsm, 1.0, band=8)
    assert capsys.readouterr().err == ""
