"""The DSM's heights guided by the orthophoto and the photos' agreement (momentum_gs.maps.guide): ground drawn at a
roof's height beside the roof, where the photos disagree and the orthophoto shows the ground, goes back down; the
edge stays where the colours put it; only heights already there are chosen; the cells without a height stay and
count for nothing, as nothing past the map's border does; the map worked in bands is the map worked whole."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.maps.guide import SPREAD, guided_median
from momentum_gs.maps.make import summary_lines
from momentum_gs.maps.ortho import NODATA
from tests.helpers.dsm_building import CELL, GROUND, a_building


def test_ground_drawn_at_the_roofs_height_beside_it_goes_back_down():
    truth, colour, spread = a_building()
    drawn = truth.copy()
    drawn[40:43, 25:55] = 12.0  # the roof drawn 3 cells too far south, where the orthophoto shows the ground
    spread[40:43, 25:55] = 12.0  # and the photos put those cells at heights 12 apart
    found = guided_median(drawn, colour, spread, CELL)
    np.testing.assert_array_equal(found, truth)  # the overhang down, the roof and its edges where they are
    agreed = guided_median(drawn, colour, np.full(drawn.shape, 0.1 * CELL, np.float32), CELL)
    assert (agreed[40:43, 30:50] == 12.0).all()  # where the photos agree on the overhang, it stays


def test_a_wide_spread_gives_way_to_the_heights_the_photos_agree_on():
    dsm, colour, spread = a_building()
    colour[:] = GROUND  # no colour to tell roof from ground
    dsm[5:10, 5:10] = 4.0  # a 5 × 5 patch drawn high: its middle's window holds 25 of its cells and 24 others
    spread[5:10, 5:10] = 2 * SPREAD * CELL  # which the photos disagree on
    found = guided_median(dsm, colour, spread, CELL)
    assert (found[5:10, 5:10] == 0.0).all()
    spread[5:10, 5:10] = 0.1 * CELL  # agreed on, the patch's middle keeps its height: a majority of its window
    assert guided_median(dsm, colour, spread, CELL)[7, 7] == 4.0


def test_only_heights_that_are_there_are_chosen_and_the_cells_without_one_stay():
    rng = np.random.default_rng(0)
    dsm, colour, spread = a_building()
    dsm += rng.normal(0, 0.2, dsm.shape).astype(np.float32)
    colour = np.clip(colour + rng.normal(0, 20, colour.shape), 0, 255).astype(np.uint8)
    spread = rng.uniform(0, 20 * CELL, dsm.shape).astype(np.float32)
    spread[rng.random(dsm.shape) < 0.1] = NODATA  # seen by fewer than two photos
    holes = rng.random(dsm.shape) < 0.05
    dsm[holes] = NODATA
    found = guided_median(dsm, colour, spread, CELL)
    assert (found[holes] == NODATA).all() and (found[~holes] != NODATA).all()
    rows, cols = np.nonzero(~holes)
    for row, col in zip(rows[::97], cols[::97]):  # each height is one of its window's
        window = dsm[max(row - 3, 0):row + 4, max(col - 3, 0):col + 4]
        assert found[row, col] in window[window != NODATA]
    between = (found > 1.5) & (found < 10.5)  # nothing made up between the ground and the roof
    assert not between.any()
    island = np.full((20, 20), NODATA, np.float32)  # nine heights among cells without one, spread or not
    island[9:12, 9:12] = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    found = guided_median(island, np.zeros((20, 20, 3), np.uint8), np.full((20, 20), CELL, np.float32), CELL)
    assert found[10, 10] == 5.0 and (found[island == NODATA] == NODATA).all()


def test_past_the_maps_border_nothing_counts():
    dsm = np.zeros((30, 30), np.float32)
    dsm[0] = 4.0  # the border row drawn apart: inside the map, its cells' windows hold 7 of it and 21 others
    found = guided_median(dsm, np.zeros((30, 30, 3), np.uint8), np.zeros((30, 30), np.float32), CELL)
    assert (found[0, 3:-3] == 0.0).all() and (found[1:] == 0.0).all()


def test_the_bands_give_the_map_worked_whole():
    rng = np.random.default_rng(1)
    dsm, colour, spread = a_building()
    dsm += rng.normal(0, 0.3, dsm.shape).astype(np.float32)
    spread = rng.uniform(0, 10 * CELL, dsm.shape).astype(np.float32)
    dsm[rng.random(dsm.shape) < 0.02] = NODATA
    whole = guided_median(dsm, colour, spread, CELL, band_cells=10**7)
    banded = guided_median(dsm, colour, spread, CELL, band_cells=3 * 80)
    assert not np.array_equal(whole, dsm) and np.array_equal(banded, whole) and banded.dtype == dsm.dtype


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (9, 1)])
def test_maps_smaller_than_the_window(shape):
    dsm = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    found = guided_median(dsm, np.zeros((*shape, 3), np.uint8), np.zeros(shape, np.float32), CELL)
    assert found.shape == shape and np.isin(found, dsm).all()


def test_mgs_ortho_says_the_window_and_when_the_guide_could_not_run(tmp_path):
    summary = {"out": str(tmp_path), "crs": "EPSG:32632", "gsd_from": "0.05 m", "gaussians": 10, "bake": "baked",
               "dropped": "", "covered": 0.9, "width": 10, "height": 10, "files": "GeoTIFF", "seconds": 1.0}
    assert not any("guided" in line or "weighted by" in line for line in summary_lines(summary))  # not asked for
    said = summary_lines({**summary, "dsm_guided": 0.25, "guide_window": 9})
    assert any(line.startswith("25.0 % of its heights then took the median of the 9 × 9 pixels") for line in said)
    said = summary_lines({**summary, "dsm_guided": None, "guide_window": 7})
    assert any("not guided by the orthophoto" in line and "--no-spread" in line for line in said)


def test_mgs_ortho_says_the_share_of_heights_the_dsm_vouches_for(tmp_path):
    summary = {"out": str(tmp_path), "crs": "EPSG:32632", "gsd_from": "0.05 m", "gaussians": 10, "bake": "baked",
               "dropped": "", "covered": 0.9, "width": 10, "height": 10, "files": "GeoTIFF", "seconds": 1.0,
               "spread_median": 0.02, "spread_within_pixel": 0.44, "spread_measured": 0.86, "dsm_held": 0.2}
    line = next(line for line in summary_lines(summary) if "spread over the photos" in line)
    assert "44 % of its heights within a pixel's size (86 % measured" in line and "measured on" not in line
    line = next(line for line in summary_lines({**summary, "spread_within_vouched": 0.92})
                if "spread over the photos" in line)
    assert "44 % of its heights within a pixel's size and 92 % within 5 pixels' (86 %" in line
    assert not any("measure on" in line for line in summary_lines(summary))  # no support counted
    said = summary_lines({**summary, "support_median": 7.0, "support_needed": 4, "support_vouched": 0.981})
    line = next(line for line in said if "measure on" in line)
    assert line.startswith("98 % of the surface model's heights are seen there by at least 4 photos") and \
        str(tmp_path / "dsm_support.tif") in line
