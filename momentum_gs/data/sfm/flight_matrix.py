"""The georeference against a matrix of generated flights: every pattern, camera mount, gimbal pitch, altitude
drift, GPS noise, with and without EXIF altitude, fixed-wing and multirotor. Every case must end right side up
(level, not mirrored, the GPS fitted within twice its noise with most fixes used) or refused; none written
wrong. ``scripts/sfm_flight_matrix.py`` runs the whole matrix; the tests run a subset.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.placement import inlier_floor, place_on_gps
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import PATTERNS, make_flight, to_model_frame

ROLLS, PITCHES, DRIFTS, NOISES = (0, 90, 180, 270), (-20, 0, 20, 45), (0.0, 120.0, -120.0), (1.0, 5.0, 15.0)
LEVEL_DEG, RESIDUAL_NOISES, FIXES_USED = 2.0, 2.0, 0.9  # what "right side up" means


@dataclass(frozen=True)
class Case:
    """One generated flight."""

    pattern: str
    roll: float
    pitch: float
    drift: float
    noise: float
    altitude_in_exif: bool
    fixed_wing: bool
    seed: int = 0


def matrix(seed: int = 0) -> list[Case]:
    """Every combination (5 × 4 × 4 × 3 × 3 × 2 × 2 = 2880 cases)."""
    return [Case(*c, seed=seed) for c in itertools.product(PATTERNS, ROLLS, PITCHES, DRIFTS, NOISES,
                                                            (True, False), (True, False))]


def run_case(case: Case, mode: str = "auto") -> dict:
    """The case's outcome: ``right`` (level within ``LEVEL_DEG``, residual within ``RESIDUAL_NOISES`` times
    the noise, ``FIXES_USED`` of the fixes used), ``refused`` (with the line) or ``wrong`` (with why)."""
    flight = make_flight(case.pattern, mount_roll_deg=case.roll, pitch_deg=case.pitch, fixed_wing=case.fixed_wing,
                         drift_m=case.drift, gps_noise_m=case.noise, altitude_in_exif=case.altitude_in_exif,
                         seed=case.seed)
    model, true_up = to_model_frame(flight, case.seed)
    threshold, _ = inlier_floor(flight.gps)
    views = Views(model.rotations, model.centres, model.seen, model.points)
    placement = place_on_gps(views, model.centres, flight.gps, mode, threshold, case.seed)
    row = {**asdict(case), "outcome": "refused", "why": placement.problem, "up_from": placement.up_from}
    if placement.fit is None:
        return row
    fit = placement.fit
    tilt = L.angle_deg(fit.up(), true_up)
    residual = float(np.sqrt((fit.residuals[fit.inliers, :2] ** 2).sum(1).mean()))
    used = float(fit.inliers.mean())
    row.update(tilt_deg=round(tilt, 2), residual_m=round(residual, 2), fixes_used=round(used, 3), fit=fit.name,
               claims=placement.claims)
    wrong = [why for bad, why in ((tilt > LEVEL_DEG, f"tilted {tilt:.1f}°"),
                                  (residual > RESIDUAL_NOISES * case.noise, f"residual {residual:.1f} m"),
                                  (used < FIXES_USED, f"{used:.0%} of the fixes used")) if bad]
    row.update(outcome="wrong" if wrong else "right", why="; ".join(wrong) or None)
    return row
