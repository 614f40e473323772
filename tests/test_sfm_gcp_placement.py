"""`mgs sfm --gcp`: a generated survey placed on five ground control points, whose true positions the generator
knows, in place of a GPS 15 m off; the checks a GPS fit passes hold for it too."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.cli import main
from momentum_gs.data.sfm.gcp import triangulate_with_reason
from momentum_gs.data.sfm.placement import inlier_floor, place_on_gcps, place_on_gcps_level, place_on_gps
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import HFOV_DEG, make_flight, to_model_frame

PHOTO_WIDTH = 4000  # px: a 12 MP photo


def marks(rotations: np.ndarray, centres: np.ndarray, point: np.ndarray, rng, pixel_noise: float = 0.5):
    """(indices of the cameras that see ``point`` inside their frame, [K, 2] its normalized image coordinates
    there with ``pixel_noise`` px of marking error on a 12 MP photo)."""
    cam = np.einsum("nij,nj->ni", rotations, point - centres)
    xy = cam[:, :2] / cam[:, 2:3]
    half = np.tan(np.radians(HFOV_DEG) / 2)
    inside = (cam[:, 2] > 0) & (np.abs(xy[:, 0]) < half) & (np.abs(xy[:, 1]) < half * 3 / 4)
    focal = PHOTO_WIDTH / 2 / half
    return np.flatnonzero(inside), xy[inside] + rng.normal(0, pixel_noise / focal, (inside.sum(), 2))


def gcp_survey(seed: int = 0, count: int = 5):
    """A lawnmower survey with a 15 m GPS drifting 120 m in altitude, in a random model frame, and ``count``
    ground control points (corners and centre of the flight) triangulated in it: (the flight, the model, name →
    model point, name → ENU truth)."""
    flight = make_flight("lawnmower", drift_m=120.0, gps_noise_m=15.0, seed=seed)
    model, _ = to_model_frame(flight, seed)
    lo, hi = np.percentile(flight.centres[:, :2], [10, 90], axis=0)  # near the corners and the centre, as
    spots = [(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1]), ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)]
    ground = flight.points[flight.points[:, 2] < 1.0]  # surveyors lay them out, on the ground
    rng = np.random.default_rng([seed, 5])
    points, truth = {}, {}
    for i, (x, y) in enumerate(spots[:count]):
        true = ground[np.argmin(np.linalg.norm(ground[:, :2] - [x, y], axis=1))]
        seen, xy = marks(flight.rotations, flight.centres, true, rng)
        rays = [(np.c_[model.rotations[j], -model.rotations[j] @ model.centres[j]], p) for j, p in zip(seen, xy)]
        points[f"gcp{i}"], _ = triangulate_with_reason(rays)
        truth[f"gcp{i}"] = true
    return flight, model, points, truth


def test_five_gcps_place_a_survey_within_5_cm_where_a_15_m_gps_cannot():
    flight, model, points, truth = gcp_survey()
    views = Views(model.rotations, model.centres, model.seen, model.points)
    placement = place_on_gcps(views, points, truth, {})
    assert placement.fit is not None, placement.problem
    error = np.linalg.norm(placement.fit.apply(model.centres) - flight.centres, axis=1)
    assert error.max() < 0.05  # metres, every camera
    assert placement.claims[0].startswith("z up: cameras") and "5 ground control points within" in placement.claims[1]
    assert len(placement.lines) == 5 and all(line.startswith("GCP gcp") for line in placement.lines)
    gps = place_on_gps(views, model.centres, flight.gps, "auto", inlier_floor(flight.gps)[0])
    assert np.linalg.norm(gps.fit.apply(model.centres) - flight.centres, axis=1).max() > 1.0  # the GPS alone


def test_gcps_without_heights_place_a_survey_horizontally():
    flight, model, points, truth = gcp_survey()
    views = Views(model.rotations, model.centres, model.seen, model.points)
    enu = {n: np.r_[p[:2], np.nan] for n, p in truth.items()}
    assert place_on_gcps(views, points, enu, {}).fit is None  # a 3-D fit needs their heights
    placement = place_on_gcps_level(views, points, enu, {})
    assert placement.fit is not None, placement.problem
    placed = placement.fit.apply(model.centres)
    # the photos' up, not the GCPs, levels it: a tenth of a degree off leans cameras 80 m up by 0.14 m
    assert np.abs(placed[:, :2] - flight.centres[:, :2]).max() < 0.15  # metres, every camera
    ground = np.median([p[2] for p in truth.values()])  # z = 0 at the GCPs' median height
    assert np.abs(placed[:, 2] - (flight.centres[:, 2] - ground)).max() < 0.3  # the same lean over 230 m
    assert placement.claims[0].startswith("z up: cameras") and "5 ground control points within" in placement.claims[1]
    assert all(line.endswith("no height)") for line in placement.lines)


def test_a_gcp_marked_wrong_fails_the_gcp_check():
    flight, model, points, truth = gcp_survey()
    truth["gcp2"] = truth["gcp2"] + [6.0, 0.0, 0.0]  # typed 6 m off
    views = Views(model.rotations, model.centres, model.seen, model.points)
    placement = place_on_gcps(views, points, truth, {})
    assert placement.fit is None and placement.problem.startswith("check 'gcp' failed: 5 ground control points")
    assert "gcp2" in placement.problem and "gcp_list.txt" in placement.problem


def test_too_few_usable_gcps_are_refused_in_one_line():
    flight, model, points, truth = gcp_survey(count=3)
    points["gcp1"] = None
    views = Views(model.rotations, model.centres, model.seen, model.points)
    placement = place_on_gcps(views, points, truth, {"gcp1": "seen in 1 registered photo, 2 or more needed"})
    assert placement.fit is None and "2 of 3 ground control points can be used" in placement.problem
    assert "\n" not in placement.problem


@pytest.mark.parametrize("content, message", [
    ("EPSG:4326\n8.5 47.3 400 10 20\n", "5 fields"),
    ("NOT A PROJECTION\n8.5 47.3 400 10 20 a.jpg\n", "projection"),
    ("EPSG:4326\n8.5 47.3 400 ten 20 a.jpg\n", "line 2"),
])
def test_mgs_sfm_refuses_a_malformed_gcp_file_before_any_work(tmp_path, capsys, content, message):
    pytest.importorskip("pycolmap")
    photos = tmp_path / "photos"
    photos.mkdir()
    (tmp_path / "gcp_list.txt").write_text(content)
    code = main(["sfm", str(photos), "--out", str(tmp_path / "scene"), "--gcp", str(tmp_path / "gcp_list.txt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and "gcp_list.txt" in err[0]
    assert not (tmp_path / "scene").exists()
