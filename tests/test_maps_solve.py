"""The DSM's heights settled over the map (momentum_gs.maps.solve): a roof drawn past its edge, wider than the guided
median reaches, where the photos disagree and the orthophoto shows the ground, comes back; the roof across the
colour's edge stays; every height is one the map had around it; heights the photos agree on stay; cells without a
height stay so; the summary says what moved."""

from __future__ import annotations

import numpy as np

from momentum_gs.maps.guide import REACH, SPREAD, guided_median
from momentum_gs.maps.make import summary_lines
from momentum_gs.maps.ortho import NODATA
from momentum_gs.maps.solve import solved_heights
from tests.helpers.dsm_building import CELL, a_building


def test_a_roof_drawn_past_the_guides_reach_comes_back():
    truth, colour, spread = a_building(15)
    drawn = truth.copy()
    drawn[35:41, 25:55] = 12.0  # the roof drawn 6 cells too far south, where the orthophoto shows the ground
    spread[35:41, 25:55] = 4 * SPREAD * CELL  # and the photos disagree on those cells
    guided = guided_median(drawn, colour, spread, CELL)
    assert (guided[35:41, 30:50] == 12.0).any()  # a 7 x 7 median brings half of it down
    found = solved_heights(guided, colour, spread, CELL)
    np.testing.assert_array_equal(found, truth)  # all of it down, the roof and the ground where they were


def test_every_height_is_one_the_map_had_around_it():
    rng = np.random.default_rng(1)
    dsm, colour, spread = a_building(15)
    dsm = dsm + rng.normal(0.0, 0.3 * CELL, dsm.shape).astype(np.float32)
    spread[:] = rng.uniform(0.0, 3 * SPREAD * CELL, dsm.shape)  # agreed on here and there
    found = solved_heights(dsm, colour, spread, CELL)
    padded = np.pad(dsm, REACH, constant_values=np.nan)
    around = np.stack([padded[dy:dy + 60, dx:dx + 80] for dy in range(2 * REACH + 1) for dx in range(2 * REACH + 1)])
    assert (around == found).any(0).all()


def test_heights_the_photos_agree_on_stay_and_a_flat_map_stays_flat():
    rng = np.random.default_rng(0)
    dsm, colour, spread = a_building(15)
    noisy = dsm + rng.normal(0.0, 0.2 * CELL, dsm.shape).astype(np.float32)
    found = solved_heights(noisy, colour, spread, CELL)
    assert np.abs(found - noisy).max() < CELL  # agreed on: within a cell of its own height
    assert (found[dsm == 12.0] > 6.0).all() and (found[dsm == 0.0] < 6.0).all()  # the roof's edge where it was
    flat = np.full((20, 30), 3.25, np.float32)
    np.testing.assert_array_equal(solved_heights(flat, colour[:20, :30], spread[:20, :30], CELL), flat)


def test_cells_without_a_height_stay_so():
    dsm, colour, spread = a_building(15)
    dsm[0:5, :] = NODATA  # the north edge of the map undrawn
    spread[0:5, :] = NODATA
    dsm[25, 45] = NODATA  # a hole in the roof
    spread[5:10, :] = NODATA  # seen by fewer than two photos: half the confidence, still its own height
    found = solved_heights(dsm, colour, spread, CELL)
    np.testing.assert_array_equal(found, dsm)
    assert (solved_heights(np.full((4, 4), NODATA, np.float32), colour[:4, :4], spread[:4, :4], CELL) == NODATA).all()


def test_mgs_ortho_says_what_the_solve_moved():
    summary = {"out": "maps", "crs": "EPSG:32632", "gsd_from": "0.05 m", "gaussians": 10, "bake": "baked",
               "dropped": "", "covered": 0.9, "width": 10, "height": 10, "files": "GeoTIFF", "seconds": 1.0}
    said = summary_lines({**summary, "dsm_guided": 0.25, "guide_window": 7, "dsm_solved": 0.031})
    assert any(line.startswith("3.1 % then moved by more than a pixel's size, settled over the map") for line in said)
    said = summary_lines({**summary, "dsm_guided": None, "guide_window": 7, "dsm_solved": None})
    assert not any("settled over the map" in line for line in said)


def test_the_map_solved_in_bands_is_the_map_solved_whole():
    rng = np.random.default_rng(2)
    dsm, colour, spread = a_building(15)
    dsm = np.tile(dsm, (3, 1)) + rng.normal(0.0, 0.5 * CELL, (180, 80)).astype(np.float32)
    colour, spread = np.tile(colour, (3, 1, 1)), rng.uniform(0.0, 4 * SPREAD * CELL, (180, 80)).astype(np.float32)
    whole = solved_heights(dsm, colour, spread, CELL)
    banded = solved_heights(dsm, colour, spread, CELL, band_cells=20 * 80)  # 9 bands of 20 rows
    assert (banded == whole).mean() > 0.999
