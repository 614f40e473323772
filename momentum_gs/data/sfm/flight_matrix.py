"""The georeference against a matrix of generated flights: every pattern, camera mount, gimbal pitch, altitude
drift, GPS noise, with and without EXIF altitude, fixed-wing and multirotor. Every case must end right side up
(level, not mirrored, the GPS fitted within twice its noise with most fixes used, the cameras within twice the
GPS's error of where they truly are) or refused; none written wrong. ``scripts/sfm_flight_matrix.py`` runs the
whole matrix; the tests run a subset.

Two more matrices: :func:`distortions`, reconstructions out of shape (sheared, drifting in scale, stretched, folded)
that must be refused, and :func:`consumer_gps`, a GPS wandering slowly by 15 m as a consumer receiver's does, that
must still be placed.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

from momentum_gs.data.sfm import checks as C
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.adjust import adjust_views, gps_std_from
from momentum_gs.data.sfm.placement import inlier_floor, place_on_gps
from momentum_gs.data.sfm.up import Views
from momentum_gs.data.synthetic.survey import (DISTORTIONS, HFOV_DEG, PATTERNS, Flight, distort, in_frame,
                                               make_flight, to_model_frame)

ROLLS, PITCHES, DRIFTS, NOISES = (0, 90, 180, 270), (-20, 0, 20, 45), (0.0, 120.0, -120.0), (1.0, 5.0, 15.0)
LEVEL_DEG, RESIDUAL_NOISES, FIXES_USED = 2.0, 2.0, 0.9  # what "right side up" means
PHOTO_WIDTH_PX, MARK_NOISE_PX, TIE_TRACKS = 4000, 0.5, 1000  # the photos of an adjusted case: 12 MP at 4:3


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
    wander: float = 0.0  # metres RMS of the GPS's slow horizontal error
    distortion: str = ""  # how the reconstruction is out of shape (survey.DISTORTIONS), or not
    misregistered: int = 0  # photos registered far from where they were taken


def matrix(seed: int = 0) -> list[Case]:
    """Every combination (5 × 4 × 4 × 3 × 3 × 2 × 2 = 2880 cases)."""
    return [Case(*c, seed=seed) for c in itertools.product(PATTERNS, ROLLS, PITCHES, DRIFTS, NOISES,
                                                            (True, False), (True, False))]


def distortions(seed: int = 0) -> list[Case]:
    """Every pattern out of shape each way, with 1, 5 and 15 m of GPS noise, fixed-wing and multirotor (120 cases)."""
    return [Case(p, 0, 0, 0.0, noise, True, wing, seed=seed, distortion=kind)
            for p, kind, noise, wing in itertools.product(PATTERNS, DISTORTIONS, NOISES, (True, False))]


def consumer_gps(seed: int = 0) -> list[Case]:
    """Every pattern, mount and pitch with a consumer GPS: 5 m of noise and 15 m of slow wander (about 17 m RMS)."""
    return [Case(p, roll, pitch, 0.0, 5.0, alt, wing, seed=seed, wander=15.0)
            for p, roll, pitch, alt, wing in itertools.product(PATTERNS, ROLLS, PITCHES, (True, False), (True, False))]


def misplaced(case: Case, flight: Flight) -> tuple[Flight, np.ndarray]:
    """The flight with ``case.misregistered`` photos registered 115-415 m from where they were taken (cameras and
    what they see moved together, in a random direction), and their indices."""
    rng = np.random.default_rng([case.seed, 9])
    moved = np.linspace(0, len(flight.centres) - 1, case.misregistered + 2)[1:-1].astype(int)
    angle = rng.uniform(0, 2 * np.pi, len(moved))
    shift = rng.uniform(115, 415, len(moved))[:, None] * np.c_[np.cos(angle), np.sin(angle), np.zeros(len(moved))]
    centres, seen = flight.centres.copy(), flight.seen.copy()
    centres[moved] += shift
    seen[moved] += shift
    return Flight(flight.rotations, centres, flight.points, seen, flight.gps), moved


def misregistrations(seed: int = 0) -> list[Case]:
    """Every pattern with 4 photos of 60 registered 115-415 m off, with 1, 5 and 15 m of GPS noise (30 cases)."""
    return [Case(p, 0, 0, 0.0, noise, True, True, seed=seed, misregistered=4)
            for p, noise in itertools.product(PATTERNS, NOISES)] + \
        [Case(p, 0, 0, 0.0, 5.0, True, True, seed=seed, misregistered=4, wander=15.0) for p in PATTERNS]


def build(case: Case) -> tuple[Flight, Flight, np.ndarray, np.ndarray]:
    """(the flight as flown, the reconstruction in its model frame, the true up in that frame, the misregistered
    photos' indices) of ``case``."""
    flight = make_flight(case.pattern, mount_roll_deg=case.roll, pitch_deg=case.pitch, fixed_wing=case.fixed_wing,
                         drift_m=case.drift, gps_noise_m=case.noise, altitude_in_exif=case.altitude_in_exif,
                         seed=case.seed, gps_wander_m=case.wander)
    built, moved = misplaced(case, flight)
    model, true_up = to_model_frame(distort(built, case.distortion) if case.distortion else built, case.seed)
    return flight, model, true_up, moved


def tie_observations(flight: Flight, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """What the photos of ``flight`` see (``PHOTO_WIDTH_PX`` wide, each mark ``MARK_NOISE_PX`` off): (camera index
    [M], point index [M], normalized xy [M, 2], focal length in pixels) of the ``TIE_TRACKS`` longest tracks."""
    cam, point, xy = [], [], []
    for i, (rotation, centre) in enumerate(zip(flight.rotations, flight.centres)):
        local, inside = in_frame(rotation, centre, flight.points)
        inside = np.flatnonzero(inside)
        cam.append(np.full(len(inside), i))
        point.append(inside)
        xy.append(local[inside, :2] / local[inside, 2:])
    cam, point, xy = map(np.concatenate, (cam, point, xy))
    longest = np.argsort(-np.bincount(point, minlength=len(flight.points)), kind="stable")[:TIE_TRACKS]
    keep = np.isin(point, longest)
    focal = PHOTO_WIDTH_PX / 2 / np.tan(np.radians(HFOV_DEG) / 2)
    return cam[keep], point[keep], xy[keep] + np.random.default_rng([seed, 5]).normal(0, MARK_NOISE_PX / focal,
                                                                                      (keep.sum(), 2)), focal


def adjusted_centres(flight: Flight, model: Flight, fit: L.Fit, kept: np.ndarray, seed: int) -> np.ndarray:
    """[K, 3] ENU centres of the ``kept`` cameras once ``model``, placed by ``fit``, is adjusted on its photos
    (:func:`tie_observations` of ``flight``) and its horizontal GPS, weighted as `mgs sfm` weighs it
    (:func:`momentum_gs.data.sfm.control.adjust_on_gps`)."""
    cam, point, xy, focal = tie_observations(flight, seed)
    mine = np.isin(cam, kept)
    cam, point, xy = cam[mine], point[mine], xy[mine]
    index, points = np.full(len(flight.centres), -1), np.unique(point)
    index[kept] = np.arange(len(kept))
    centres, gps = fit.apply(model.centres[kept]), np.c_[flight.gps[kept, :2], np.full(len(kept), np.nan)]
    _, adjusted, _ = adjust_views(model.rotations[kept] @ fit.rotation.T, centres, fit.apply(model.points[points]),
                                  (index[cam], np.searchsorted(points, point), xy), focal, gps,
                                  gps_std_from(np.linalg.norm(centres[:, :2] - gps[:, :2], axis=1)))
    return adjusted


def run_case(case: Case, mode: str = "auto", adjusted: bool = False) -> dict:
    """The case's outcome: ``right`` (level within ``LEVEL_DEG``, residual within ``RESIDUAL_NOISES`` times
    the noise, ``FIXES_USED`` of the fixes used, the cameras within ``RESIDUAL_NOISES`` times the GPS's error of
    the truth, the misregistered photos taken out), ``refused`` (with the line) or ``wrong`` (with why).
    ``adjusted``: a placed model is adjusted on its photos and GPS (:func:`adjusted_centres`) and measured after."""
    flight, model, true_up, moved = build(case)
    threshold, _ = inlier_floor(flight.gps)
    views = Views(model.rotations, model.centres, model.seen, model.points)
    placement = place_on_gps(views, model.centres, flight.gps, mode, threshold, case.seed)
    row = {**asdict(case), "outcome": "refused", "why": placement.problem, "up_from": placement.up_from}
    if placement.fit is None:
        return row
    fit = placement.fit
    kept = np.setdiff1d(np.arange(len(flight.centres)), list(placement.misregistered))
    tilt = L.angle_deg(fit.up(), true_up)
    residual = float(np.sqrt((fit.residuals[fit.inliers, :2] ** 2).sum(1).mean()))
    used = float(fit.inliers[kept].mean())
    centres = fit.apply(model.centres[kept])
    if adjusted:
        centres = adjusted_centres(flight, model, fit, kept, case.seed)
        inside = fit.inliers[kept]
        residual = float(np.sqrt(((centres - flight.gps[kept])[inside, :2] ** 2).sum(1).mean()))
        moved_by = (centres - fit.apply(model.centres[kept]))[:, :2]
        row["moved_m"] = round(float(np.sqrt((moved_by ** 2).sum(1).mean())), 2)
    truth = float(np.sqrt(((centres - flight.centres[kept])[:, :2] ** 2).sum(1).mean()))
    error = np.hypot(case.noise, case.wander)
    row.update(tilt_deg=round(tilt, 2), residual_m=round(residual, 2), fixes_used=round(used, 3), fit=fit.name,
               claims=placement.claims, truth_m=round(truth, 2), taken_out=sorted(placement.misregistered))
    wrong = [why for bad, why in ((tilt > LEVEL_DEG, f"tilted {tilt:.1f}°"),
                                  (residual > RESIDUAL_NOISES * error, f"residual {residual:.1f} m"),
                                  (truth > RESIDUAL_NOISES * error + 1.0, f"cameras {truth:.1f} m from the truth"),
                                  (set(moved) != set(placement.misregistered),
                                   f"took out {sorted(placement.misregistered)}, misregistered {moved.tolist()}"),
                                  (used < (FIXES_USED if not case.wander else C.FIXES_MIN),
                                   f"{used:.0%} of the fixes used")) if bad]
    row.update(outcome="wrong" if wrong else "right", why="; ".join(wrong) or None)
    return row
