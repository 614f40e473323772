"""A model drifting in scale as SfM drifts (every offset scaled together, heights above the ground too) is refused:
placed level to its GPS, its cameras look square onto ground that slopes (check ``square``); placed level to the
photos, its cameras rise against their GPS altitudes (the ``field`` check's tilt). Good flights over sloping
ground, and altitudes that drift in time, are not."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.sfm import checks as C
from momentum_gs.data.sfm import field as F
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.flight_matrix import distortions, run_case
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import distort, make_flight
from tests.helpers.gps_residuals import residuals, rows


def placed(flight, enu: np.ndarray) -> C.Placed:
    """The flight placed by the robust similarity to ``enu`` [N, 3] with altitudes, as a GPS fit places it."""
    fit = L.gps_fit(flight.centres, enu, 3.0, 0)
    views = Views(flight.rotations, flight.centres, flight.seen, flight.points)
    return C.Placed(C.place(views, fit), fit, flight.centres, enu)


def test_every_scale_drift_is_refused_or_placed_right():
    """Seed 2, whose drifts were written wrong most often before these checks (placed tilted, or metres off)."""
    cases = [c for c in distortions(2) if c.distortion == "scale_drift"]
    outcomes = [run_case(c) for c in cases]
    assert [r for r in outcomes if r["outcome"] == "wrong"] == []
    assert sum(r["outcome"] == "refused" for r in outcomes) >= 0.8 * len(cases)


def test_level_cameras_square_onto_a_slope_are_a_drift():
    flight = make_flight("lawnmower", seed=0)
    found = C.square(placed(distort(flight, "scale_drift"), flight.centres))
    assert found is not None and not found.passed and "drifts in scale" in found.line()
    assert C.square(placed(flight, flight.centres)).passed  # as flown: level ground, cameras looking straight down


def _tilt(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@pytest.mark.parametrize("pattern", ["lawnmower", "crosshatch", "orbit"])
@pytest.mark.parametrize("slope, gimbal", [(10.0, 0.0), (7.0, 3.0)])
def test_a_level_flight_over_a_slope_is_not_a_drift(pattern, slope, gimbal):
    """Photos flown level over ground that slopes: nadir, or with the gimbal a few degrees off towards the slope
    (4° from square onto 7°), the cameras do not look square onto it."""
    flight = make_flight(pattern, seed=1)
    centre = flight.points.mean(0)
    points, seen = (flight.points - centre) @ _tilt(slope).T + centre, (flight.seen - centre) @ _tilt(slope).T + centre
    sloped = type(flight)(flight.rotations @ _tilt(gimbal).T, flight.centres, points, seen, flight.gps)
    found = C.square(placed(sloped, flight.centres))
    assert found is not None and found.passed, found.line()
    assert f"sloping {slope:g}" in found.line() and f"{slope - gimbal:.0f}." in found.line()


def test_cameras_rising_against_their_altitudes_beyond_a_drift_are_refused():
    plan = rows()
    drifting = residuals(plan, 5.0, 2)
    drifting[:, 2] += 120 * np.linspace(0, 1, len(plan))  # a barometric drift in time: not a tilt of the model
    assert F.problem(F.measure(plan, drifting)) is None
    rising = drifting.copy()
    rising[:, 2] += np.tan(np.radians(8.0)) * plan[:, 0]  # the cameras 8° up along x against their altitudes
    found = F.measure(plan, rising)
    assert found.tilt_deg == pytest.approx(8.0, abs=1.0) and "rise" in F.problem(found)
