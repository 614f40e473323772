"""The DSM's spread over the training photos (momentum_gs.maps.spread): zero where the Gaussians lie on the surface
the map gives, nodata where fewer than two photos or no height; a map moved off the surface is held back within the
heights the photos see, and a height the photos see through is taken down to what they see; each height's support
counts the photos that see a surface there."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from momentum_gs.config import DataConfig
from momentum_gs.data import map_frame as frames
from momentum_gs.data.scene import load_scene
from momentum_gs.data.synthetic import city_of
from momentum_gs.data.synthetic.render import cast_camera
from momentum_gs.maps.ortho import NODATA, MapGrid, splat_map
from momentum_gs.maps.spread import photo_spread, support_needed
from momentum_gs.model.standard import StandardGaussians
from tests.helpers.generated_city import look_at
from tests.helpers.map_truth import HIDDEN, cell_centres, laid_on_the_city, photos_seeing, true_maps

SHARPER = 4  # the tiny city's 48 × 36 photos rendered this many times larger: pixels finer than the map's


@pytest.fixture(scope="module")
def laid(tiny_scene):
    """(Gaussians laid on the tiny city, its map frame, grid, DSM, training cameras, true heights)."""
    city, metres = city_of(tiny_scene)
    grid = MapGrid(-3.6, 3.6, 0.1, 72, 72)  # model units: the 72 × 72 m city in 1 m pixels
    gaussians = laid_on_the_city(city, metres, grid)
    frame = frames.own_frame(np.array([0.0, 0.0, 1.0]), "z")
    dsm = splat_map(gaussians, frame, grid, show_progress=False).dsm
    cameras = [camera.scaled(SHARPER * camera.width, SHARPER * camera.height)
               for camera in load_scene(DataConfig(path=str(tiny_scene)), images=False).train]
    return gaussians, frame, grid, dsm, cameras, true_maps(tiny_scene, grid)[1]


def test_the_spread_is_nil_on_the_surface(laid):
    gaussians, frame, grid, dsm, cameras, truth = laid
    found = photo_spread(gaussians, cameras, frame, grid, dsm, show_progress=False)
    spread, measured = found.spread, found.spread != NODATA
    assert measured.mean() > 0.8  # the rest: seen by fewer than two photos
    ground = measured & (truth == 0)
    assert np.median(spread[ground]) < 0.3 * grid.gsd  # every photo puts the open ground where the map does
    assert np.percentile(spread[measured], 90) > 2 * grid.gsd  # roof edges: the photos' pixels straddle them
    assert np.median(np.abs(found.dsm - dsm)[ground]) < 0.3 * grid.gsd  # on the surface, the DSM stays


def test_a_map_off_the_surface_is_held_within_the_photos_heights(laid):
    gaussians, frame, grid, dsm, cameras, truth = laid
    found = photo_spread(gaussians, cameras, frame, grid, dsm + 5 * grid.gsd, show_progress=False)
    ground = (found.spread != NODATA) & (truth == 0)
    assert np.median(np.abs(found.dsm - dsm)[ground]) < 0.5 * grid.gsd  # 5 pixels above every photo: held back
    assert np.median(found.spread[ground]) < 0.5 * grid.gsd  # and measured against the height it was held at
    assert found.held > 0.5
    kept = found.spread == NODATA
    assert np.array_equal(found.dsm[kept], (dsm + 5 * grid.gsd)[kept])  # no second photo: nothing to hold it to


def test_no_spread_without_a_height_or_a_second_photo(laid):
    gaussians, frame, grid, dsm, cameras, _ = laid
    holed = dsm.copy()
    holed[:, :36] = NODATA
    spread = photo_spread(gaussians, cameras, frame, grid, holed, show_progress=False).spread
    assert (spread[:, :36] == NODATA).all() and (spread[:, 36:] != NODATA).mean() > 0.8
    alone = photo_spread(gaussians, cameras[:1], frame, grid, dsm, show_progress=False).spread
    assert (alone == NODATA).all()


def _ground_and_a_faint_column() -> StandardGaussians:
    """Opaque flat Gaussians on the ground z = 0 over [-1.5, 1.5]², and above its centre a column of faint ones (z 0.3
    to 0.9): a straight-down ray crosses every one of them and stops in the column, a slanted ray one or two and goes
    on to the ground."""
    side = np.arange(-1.5, 1.5, 0.015) + 0.0075
    x, y = np.meshgrid(side, side)
    ground = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    column = np.column_stack([np.zeros(13), np.zeros(13), np.linspace(0.3, 0.9, 13)])
    means = np.concatenate([ground, column])
    scales = np.concatenate([np.tile([0.009, 0.009, 1e-4], (len(ground), 1)), np.tile([0.03, 0.03, 0.02], (13, 1))])
    opacities = np.concatenate([np.full(len(ground), 0.99), np.full(13, 0.2)])
    n = len(means)
    return StandardGaussians(torch.tensor(means), torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4).contiguous(),
                             torch.tensor(scales), torch.tensor(opacities), torch.zeros(n, 1, 3, dtype=torch.float64))


CENTRE = (slice(24, 26), slice(24, 26))  # the map's cells under the faint column


def _column_seen() -> tuple:
    """(:func:`_ground_and_a_faint_column`, its map frame, a 50 × 50 grid over its centre, the DSM from above, a photo
    from straight above, four slanted photos around it)."""
    gaussians = _ground_and_a_faint_column()
    frame = frames.own_frame(np.array([0.0, 0.0, 1.0]), "z")
    grid = MapGrid(-0.5, 0.5, 0.02, 50, 50)
    dsm = splat_map(gaussians, frame, grid, show_progress=False).dsm
    down = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), 200, 200, 400.0)
    slanted = [look_at((2.0 * math.cos(a), 2.0 * math.sin(a), 2.0), (0.0, 0.0, 0.0), 200, 200, 400.0)
               for a in np.linspace(0.0, 2 * math.pi, 4, endpoint=False)]
    return gaussians, frame, grid, dsm, down, slanted


def test_a_height_that_photos_see_through_is_taken_down_to_the_ground():
    gaussians, frame, grid, dsm, down, slanted = _column_seen()
    centre = CENTRE
    assert dsm[centre].min() > 0.3  # from above, the column is drawn
    found = photo_spread(gaussians, [down, *slanted], frame, grid, dsm, show_progress=False)
    assert np.abs(found.dsm[centre]).max() < 0.05  # four photos see the ground through it: the ground's height
    assert found.through > 0
    elsewhere = np.ones(dsm.shape, bool)
    elsewhere[20:30, 20:30] = False
    assert np.abs(found.dsm[elsewhere] - dsm[elsewhere]).max() < 0.02  # the open ground stays
    alone = photo_spread(gaussians, [down, *slanted[:1]], frame, grid, dsm, show_progress=False)
    assert alone.dsm[centre].min() > 0.3  # one photo through it against one at it: it stays


def test_the_support_counts_the_photos_that_see_a_surface_at_each_height():
    gaussians, frame, grid, dsm, down, slanted = _column_seen()
    centre = CENTRE
    elsewhere = np.ones(dsm.shape, bool)
    elsewhere[20:30, 20:30] = False
    found = photo_spread(gaussians, [down, *slanted], frame, grid, dsm, show_progress=False)
    assert found.support.dtype == np.uint16 and found.support.shape == dsm.shape
    assert (found.support[elsewhere] == 5).all()  # the open ground: every photo sees it where the DSM puts it
    assert (found.support[centre] == 4).all()  # taken down to the ground: the slanted photos see it, not the one above
    alone = photo_spread(gaussians, [down, *slanted[:1]], frame, grid, dsm, show_progress=False)
    assert (alone.support[elsewhere] == 2).all()
    assert alone.support[centre].max() <= 1  # the column's height kept: only the photo from above sees it there


def test_the_support_needed_is_half_the_median_of_the_heights_two_photos_see():
    assert support_needed(np.array([0, 1, 1, 7, 7, 8, 9])) == 4  # median 7.5 of 7, 7, 8, 9: 3.75, rounded up
    assert support_needed(np.array([0, 1, 2, 2, 3])) == 2  # half of 2 is 1: never fewer than two photos
    assert support_needed(np.array([0, 1, 1])) == 2 and support_needed(np.zeros(0, np.uint16)) == 2
    assert support_needed(np.array([14] * 5 + [1] * 100)) == 7  # the outskirts seen once do not lower it


def test_the_photos_that_see_a_true_surface_are_those_no_building_hides_it_from(laid, tiny_scene):
    """The check's count of the photos that see each cell's true surface (tests/helpers/map_truth.py): never more than
    the photos that frame it; all of those on the tallest roof; fewer beside the buildings; and for each photo and
    cell, the same answer as a ray cast from the photo through the point's exact place in it."""
    _, _, grid, _, cameras, truth = laid
    city, metres = city_of(tiny_scene)
    count = photos_seeing(city, metres, grid, truth, cameras)
    points = np.column_stack([cell_centres(grid) * metres, truth.ravel()])
    framed, agree, asked = np.zeros(points.shape[0], np.int32), 0, 0
    rng = np.random.default_rng(0)
    for camera in cameras:
        to_cam = camera.world_to_cam.double().numpy().copy()
        to_cam[:3, 3] *= metres
        K = camera.K.double().numpy()
        local = points @ to_cam[:3, :3].T + to_cam[:3, 3]
        pix = local[:, :2] / local[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
        inside = (local[:, 2] > 0) & (pix >= 0).all(1) & (pix < [camera.width, camera.height]).all(1)
        framed += inside
        some = rng.choice(np.flatnonzero(inside), 40, replace=False)
        hits, o, _ = cast_camera(city, K, to_cam, pix[some])
        open_line = hits.t >= np.linalg.norm(points[some] - o, axis=1) * (1 - HIDDEN) - 0.05
        alone = photos_seeing(city, metres, grid, truth, [camera]).ravel()[some] == 1
        agree, asked = agree + (open_line == alone).sum(), asked + len(some)
    framed = framed.reshape(count.shape)
    assert (count <= framed).all()
    tallest = truth > truth.max() - 0.01
    assert (count == framed)[tallest].mean() > 0.95  # its edges: a pixel's centre may pass beside the roof
    hidden = (truth == 0) & (count < framed)
    assert hidden.mean() > 0.1  # the walls hide ground beside them from the photos on their other side
    assert agree / asked > 0.95, (agree, asked)


def test_the_check_says_in_a_line_when_a_scene_has_no_truth(tmp_path, monkeypatch, capsys):
    """``scripts/ortho_check.py --floor --seen`` on a scene that is not synthetic: one line for each option on
    stderr, the other scores printed."""
    from types import SimpleNamespace

    from tests.helpers.script_module import load_script

    script = load_script("ortho_check")
    summary = {"top_left": [0.0, 4.0], "gsd": 1.0, "width": 4, "height": 4, "covered": 1.0, "seconds": 0.0,
               "crs": "none"}
    monkeypatch.setattr(script, "read_maps", lambda folder: (np.zeros((4, 4, 4), np.uint8),
                                                             np.zeros((4, 4), np.float32), summary))
    monkeypatch.setattr(script, "load_config", lambda path: SimpleNamespace(data=SimpleNamespace(path=tmp_path)))
    monkeypatch.setattr("sys.argv", ["ortho_check.py", str(tmp_path), "--floor", "--seen"])
    script.main()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["--floor", "--seen"]
    assert all("not a synthetic scene" in line for line in lines)
    assert '"covered": 1.0' in out


def test_the_check_gives_the_error_where_the_spread_vouches_for_it():
    """``scripts/ortho_check.py``'s error away from steps by the DSM's spread: each row over the pixels whose spread
    is at most its figure, the pixels near a step left out."""
    from tests.helpers.script_module import load_script

    script = load_script("ortho_check")
    error = np.array([1.0, 1.0, 10.0, 10.0, 50.0])
    band = np.array([0.5, 1.5, 20.0, 3.0, 0.2])
    away = np.array([True, True, True, True, False])  # the last pixel is near a step
    rows = script._away_by_spread(error, band, away)
    assert [row["spread_at_most_px"] for row in rows] == list(script.VOUCHED_PX)
    assert [row["share"] for row in rows] == [0.25, 0.5, 0.75, 0.75]
    assert [round(row["rmse_px"], 6) for row in rows[:3]] == [1.0, 1.0, round(math.sqrt(102 / 3), 6)]
    assert [round(row["squared_error_in_the_rest"], 6) for row in rows[:3]] == [
        round(201 / 202, 6), round(200 / 202, 6), round(100 / 202, 6)]


def test_the_check_splits_the_held_out_points_by_the_spread():
    """``scripts/ortho_check.py``'s held-out SfM points by the DSM's spread at them: the points within each spread
    and beyond it, the points without a spread left out."""
    from tests.helpers.script_module import load_script

    script = load_script("ortho_check")
    nodata = script.NODATA
    difference = np.array([0.1, -0.1, 0.2, 3.0, -5.0, 9.0])
    band = np.array([0.5, 0.5, 1.5, 4.0, 30.0, 0.0]) * 0.2  # the spread in metres, pixels of 0.2 m
    band[-1] = nodata
    rows = script._points_by_spread(difference, band, 0.2)
    assert [row["spread_at_most_px"] for row in rows] == [1, 2, 5, 10]  # none has every point within
    assert [row["share"] for row in rows] == [0.4, 0.6, 0.8, 0.8]
    assert rows[0]["within"]["dsm_points_median_abs_m"] == pytest.approx(0.1)
    assert rows[2]["beyond"]["dsm_points_median_abs_m"] == pytest.approx(5.0)  # the point without a spread is out
    assert rows[1]["beyond"]["dsm_minus_points_median_m"] == pytest.approx(-1.0)
