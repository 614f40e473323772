"""The cameras' attitude by place (``checks.bend``): a folded model is refused under a GPS too noisy to show the
fold, while a gimbal's photos, whatever their pattern, heading, pitch or mount, see one vertical everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.sfm import checks as C
from momentum_gs.data.sfm.flight_matrix import distortions, matrix, run_case
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import PATTERNS, distort, make_flight


def _views(pattern: str, fold: bool = False, **kwargs) -> Views:
    flight = make_flight(pattern, **kwargs)
    if fold:
        flight = distort(flight, "fold")
    return Views(flight.rotations, flight.centres, flight.seen, flight.points)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("pitch, roll, fixed_wing", [(0, 0, True), (20, 90, False), (45, 0, True), (-20, 270, False)])
def test_a_gimbals_photos_see_one_vertical_whatever_the_flight(pattern, pitch, roll, fixed_wing):
    angle, _ = C.attitude_by_place(_views(pattern, pitch_deg=pitch, mount_roll_deg=roll, fixed_wing=fixed_wing))
    assert angle < 1.0  # the gimbal's error is 1° at most a photo


@pytest.mark.parametrize("pattern", ["crosshatch", "corridor", "lawnmower", "strip"])
def test_a_fold_turns_one_ends_vertical_against_the_others(pattern):
    """A corridor flown both ways too: the fold turns the world, so each heading sees it another way in its frame."""
    angle, where = C.attitude_by_place(_views(pattern, fold=True))
    assert angle > 2 * C.BEND_DEG and where == "the two ends"


def test_photos_that_turn_in_a_few_places_move_no_thirds_vertical():
    flight = make_flight("lawnmower")
    turned = flight.rotations.copy()
    turned[::9] = turned[::9] @ np.array([[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]])
    angle, _ = C.attitude_by_place(Views(turned, flight.centres, flight.seen, flight.points))
    assert angle < 2.0  # one photo in 9 banked 23°: the median keeps each third's vertical


def test_too_few_photos_are_not_measured():
    views = _views("lawnmower")
    few = Views(views.rotations[:14], views.centres[:14], views.seen[:14], views.points)
    assert C.attitude_by_place(few) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_a_noisy_gps_cannot_show_are_refused(seed):
    """15 m of GPS noise: the folded crosshatch and corridor were placed tilted 15-31° before this check."""
    cases = [c for c in distortions(seed) if c.distortion == "fold" and c.noise == 15.0]
    rows = [run_case(c) for c in cases]
    assert all(r["outcome"] == "refused" for r in rows), [r for r in rows if r["outcome"] != "refused"]
    assert any("check 'bend' failed" in r["why"] for r in rows)


@pytest.mark.slow
def test_the_check_refuses_no_good_flight():
    """A slice of the base matrix through the whole placement: every pattern, mount, pitch and GPS noise."""
    rows = [run_case(c) for c in matrix(0)[::37]]
    assert not [r for r in rows if "bend" in (r["why"] or "")]
    assert sum(r["outcome"] == "right" for r in rows) >= 0.8 * len(rows)


def test_photos_at_eye_level_are_not_held_to_a_gimbal():
    """A handheld capture tilts as the hand does: the check does not run on photos that stand among what they see."""
    views = _views("lawnmower", fold=True)
    placed = C.Placed(views, None, views.centres, views.centres)
    assert not C.bend(placed).passed  # from above: refused
    level = Views(views.rotations, views.centres, views.centres + [5.0, 0.0, 0.0], views.points)  # what each sees
    # lies level with it, 5 m away
    assert C.bend(C.Placed(level, None, views.centres, views.centres)) is None
