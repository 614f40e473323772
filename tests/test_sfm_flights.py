"""The georeference on generated flights as varied as real ones (patterns, camera mounts, gimbal pitch, altitude
drift, GPS noise, with and without EXIF altitude, fixed-wing and multirotor): right side up or refused, never
written wrong; every claim made only from a check that ran. The whole matrix is scripts/sfm_flight_matrix.py."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.sfm import checks as C
from momentum_gs.data.sfm import up as U
from momentum_gs.data.sfm.flight_matrix import Case, consumer_gps, distortions, matrix, misregistrations, run_case
from momentum_gs.data.sfm.placement import inlier_floor, place_on_gps
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import make_flight, to_model_frame, wander

SUBSET = matrix()[::48]  # 60 cases spread over every dimension of the matrix


def placed_flight(case: Case):
    """(the flight's views in the model frame, their centres, the GPS, the inlier floor, the true up)."""
    flight = make_flight(case.pattern, mount_roll_deg=case.roll, pitch_deg=case.pitch, fixed_wing=case.fixed_wing,
                         drift_m=case.drift, gps_noise_m=case.noise, altitude_in_exif=case.altitude_in_exif,
                         seed=case.seed)
    model, true_up = to_model_frame(flight, case.seed)
    views = Views(model.rotations, model.centres, model.seen, model.points)
    return views, model.centres, flight.gps, inlier_floor(flight.gps)[0], true_up


@pytest.mark.parametrize("case", SUBSET, ids=lambda c: f"{c.pattern}-r{c.roll:g}-p{c.pitch:g}-d{c.drift:g}-"
                         f"n{c.noise:g}-{'alt' if c.altitude_in_exif else 'noalt'}-{'fw' if c.fixed_wing else 'mr'}")
def test_every_flight_is_right_side_up_or_refused(case):
    row = run_case(case)
    assert row["outcome"] in ("right", "refused"), row
    if row["outcome"] == "refused":
        assert row["why"] and "\n" not in row["why"]
    else:
        up, placed = row["claims"]
        assert up.startswith("z up: cameras") and "GPS fixes within" in placed


@pytest.mark.slow
def test_most_of_the_matrix_is_placed_not_refused():
    rows = [run_case(c) for c in SUBSET]
    refused = [r for r in rows if r["outcome"] == "refused"]
    assert len(refused) <= len(rows) // 5  # the refusals are oblique single strips, which cannot show level
    assert all(r["pattern"] == "strip" for r in refused), [(r["pattern"], r["why"]) for r in refused]


@pytest.mark.parametrize("pattern", ["lawnmower", "crosshatch", "orbit", "corridor"])
def test_a_camera_mounted_upside_down_comes_out_right_side_up(pattern):
    case = Case(pattern, roll=180, pitch=45 if pattern == "orbit" else 0, drift=120.0, noise=5.0,
                altitude_in_exif=True, fixed_wing=pattern != "orbit")
    row = run_case(case)
    assert row["outcome"] == "right" and row["tilt_deg"] < 2.0, row


def test_the_sign_the_image_up_vectors_gave_is_not_trusted_for_a_survey():
    """A survey flown in several headings whose gimbal leans back: the mean image-up points slightly down, so
    signing the level rows' axis by it (the old rule) turned the scene upside down; the cameras stand above
    what they see, and that signs it."""
    views, centres, gps, floor, true_up = placed_flight(Case("crosshatch", 0, -20, 120.0, 5.0, True, True))
    axis = U._level_axis(views.rotations[:, 0, :])
    assert axis is not None
    by_image_up = axis * np.sign(views.image_up() @ axis)
    assert np.degrees(np.arccos(by_image_up @ true_up)) > 170  # the old rule: upside down
    ups, _ = U.find_up(views)
    assert U.angle_deg(ups[0].axis, true_up) < 1.0 and "standing above" in ups[0].signed_by
    placement = place_on_gps(views, centres, gps, "auto", floor)
    assert placement.fit is not None and U.angle_deg(placement.fit.up(), true_up) < 1.0


def test_a_wrong_sign_is_caught_by_the_checks_and_refused(monkeypatch):
    views, centres, gps, floor, true_up = placed_flight(Case("lawnmower", 0, 0, 0.0, 5.0, False, False))
    flipped = U.sign
    monkeypatch.setattr(U, "sign", lambda v, axis: ((lambda up, how: (None if up is None else -up, how))
                                                    (*flipped(v, axis))))
    placement = place_on_gps(views, centres, gps, "auto", floor)
    assert placement.fit is None
    assert placement.problem.startswith("check 'above' failed: the cameras stand") and "below" in placement.problem
    assert any(line.startswith("check 'mirror' failed: the plan is mirrored") for line in placement.lines)


@pytest.mark.parametrize("removed", ["above", "looking", "fixes", "mirror"])
def test_without_a_check_its_claim_is_not_made(monkeypatch, removed):
    views, centres, gps, floor, _ = placed_flight(Case("crosshatch", 90, 20, 0.0, 5.0, True, True))
    placement = place_on_gps(views, centres, gps, "auto", floor)
    assert placement.fit is not None and all(placement.claims)
    said = next(c.said for c in placement.checks if c.name == removed)
    monkeypatch.delitem(C.CHECKS, removed)
    placement = place_on_gps(views, centres, gps, "auto", floor)
    assert placement.fit is None and "could not be verified" in placement.problem
    assert not any(said in (claim or "") for claim in placement.claims)


def test_a_noisy_gps_keeps_its_fixes():
    """15 m of GPS noise: a threshold of 5 % of the extent would drop most fixes; the noise the residuals show
    sets it."""
    row = run_case(Case("lawnmower", 0, 0, 0.0, 15.0, True, True))
    assert row["outcome"] == "right" and row["fixes_used"] >= 0.9 and row["residual_m"] < 30


SHEARED = [c for c in distortions() if c.distortion == "shear" and c.pattern != "strip"]  # a strip's cameras
# lie on the line a shear moves along: its cameras are not out of shape


@pytest.mark.parametrize("case", SHEARED[::2], ids=lambda c: f"{c.pattern}-n{c.noise:g}")
def test_a_sheared_model_is_refused_whatever_the_gps_noise(case):
    row = run_case(case)
    assert row["outcome"] == "refused" and row["why"].startswith("check 'shape' failed: the model is out of shape")


def test_a_linear_map_sees_shear_not_a_wandering_gps():
    rng = np.random.default_rng(0)
    placed = np.c_[np.tile(np.linspace(-100, 100, 10), 6), np.repeat(np.linspace(-60, 60, 6), 10)]
    noise = rng.normal(0, 5.0, placed.shape)
    sheared = placed + np.c_[0.2 * placed[:, 1], np.zeros(len(placed))]
    deviation, error = C.linear_map(placed, sheared + noise)
    assert deviation == pytest.approx(0.2, abs=0.03) and deviation > C.SHAPE_SIGMAS * error
    wandering = placed + wander(len(placed), 15.0, rng) + noise  # a slow 15 m error in capture order
    deviation, error = C.linear_map(placed, wandering)
    assert deviation <= C.SHAPE_MAX or deviation <= C.SHAPE_SIGMAS * error


@pytest.mark.parametrize("case", consumer_gps()[::16], ids=lambda c: f"{c.pattern}-r{c.roll:g}-p{c.pitch:g}")
def test_a_wandering_consumer_gps_is_still_placed(case):
    """5 m of noise and 15 m of slow wander (about 17 m RMS): placed right, or refused only for a level a single
    strip cannot show; never refused as out of shape (by the linear map or the residuals' field)."""
    row = run_case(case)
    assert row["outcome"] in ("right", "refused"), row
    assert row["outcome"] == "right" or (row["pattern"] in ("strip", "corridor") and "out of shape" not in row["why"])


@pytest.mark.parametrize("case", [c for c in misregistrations() if c.noise <= 5.0],
                         ids=lambda c: f"{c.pattern}-n{c.noise:g}-w{c.wander:g}")
def test_photos_registered_far_from_their_gps_are_taken_out(case):
    """4 photos registered 115-415 m from where they were taken: taken out of the model (the GPS left out of the
    fit would keep them in the scene, in the wrong place), the rest placed right."""
    row = run_case(case)
    assert row["outcome"] == "right" and len(row["taken_out"]) == 4, row


def test_under_15_m_of_noise_the_photo_moved_least_is_taken_out_too():
    """15 m of GPS noise: the others disagree with their GPS by about 21 m RMS, and the photo moved 115 m lies 5.5
    times that from its fix (6 times the spread kept it in, written wrong)."""
    rows = [run_case(c) for c in misregistrations(2) if c.noise == 15.0]  # seed 2: the 2 kept in at 6 times
    assert all(r["outcome"] == "right" and len(r["taken_out"]) == 4 for r in rows), rows


STRETCHED = [Case("corridor", 0, 0, 0.0, 5.0, True, True, seed=s, distortion="stretch") for s in (0, 1, 2)]


@pytest.mark.parametrize("case", STRETCHED, ids=lambda c: f"seed{c.seed}")
def test_a_stretch_the_gps_cannot_tell_from_its_noise_is_undone_by_the_photos(case):
    """A corridor stretched along its axis under 5 m of GPS noise passes every check of the placement (the GPS
    cannot tell the stretch from its own error: written wrong); adjusted on its photos and GPS, as `mgs sfm` adjusts
    a placed model, it is right."""
    placed, adjusted = run_case(case), run_case(case, adjusted=True)
    assert placed["outcome"] == "wrong", placed
    assert adjusted["outcome"] == "right" and adjusted["truth_m"] < placed["truth_m"] / 2, adjusted


@pytest.mark.parametrize("case", consumer_gps()[8::64], ids=lambda c: f"{c.pattern}-r{c.roll:g}-p{c.pitch:g}")
def test_the_adjustment_keeps_a_wandering_consumer_gps_right(case):
    """The adjustment on a consumer GPS (15 m of slow wander): the photos hold the shape, so what was placed right
    stays right."""
    placed, adjusted = run_case(case), run_case(case, adjusted=True)
    assert adjusted["outcome"] == placed["outcome"] and placed["outcome"] in ("right", "refused"), adjusted
