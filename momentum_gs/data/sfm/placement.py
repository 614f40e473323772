"""The georeference's choice, in arrays: up from the photos, the fits to the GPS, the checks, and a refit from
the next up when a fit fails them. :mod:`momentum_gs.data.sfm.georeference` feeds it a pycolmap model; the
flight-matrix tests feed it generated flights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momentum_gs.data.sfm import checks as C
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.checks import Check, Placed, claims, place, shape, verify
from momentum_gs.data.sfm.gcp import fit_gcps
from momentum_gs.data.sfm.up import Up, Views, find_up
from momentum_gs.errors import UserError

MISREGISTERED_NOISES, MISREGISTERED_MIN_M = 5.0, 10.0  # a photo this far from its GPS (times the RMS by which the
# others disagree with theirs, and metres) was registered in the wrong place: a GPS that good is not that wrong once
INLIER_MIN_M, INLIER_FRACTION = 5.0, 0.05  # horizontal inlier threshold's floor: max(5 m, 5 % of the extent)


@dataclass
class Placement:
    """What the georeference found: the fit to write (None when refused), how its up was found, its checks
    and claims, the problem that refuses it, and the figures that compare the fits."""

    fit: L.Fit | None
    up_from: str
    checks: list[Check] = field(default_factory=list)
    claims: tuple[str | None, str | None] = (None, None)
    problem: str | None = None
    lines: list[str] = field(default_factory=list)  # what was tried before, for the console
    up: Up | None = None  # the photos' up the fit was made with (None: GPS altitudes alone)
    gps: L.Fit | None = None  # the fit to the GPS with altitudes, for the tilt
    level: L.Fit | None = None  # the level fit of the chosen up, for the drift and the vertical residual
    gcp_residuals: dict[str, np.ndarray] | None = None  # GCP name → [3] ENU residual, for a fit to GCPs
    gcp_skipped: dict[str, str] = field(default_factory=dict)  # GCP name → why it is not in the fit
    misregistered: dict[int, float] = field(default_factory=dict)  # photo (index) → metres from its GPS, taken out

    @property
    def tilt(self) -> float | None:
        return L.angle_deg(self.gps.up(), self.up.axis) if self.gps is not None and self.up is not None else None


def inlier_floor(target: np.ndarray) -> tuple[float, float]:
    """(the inlier threshold's floor, the capture's horizontal extent: its 5th to 95th percentile), metres, of
    the photos' ENU positions [U, 3]."""
    extent = float(np.linalg.norm(np.percentile(target[:, :2], 95, 0) - np.percentile(target[:, :2], 5, 0)))
    return max(INLIER_MIN_M, INLIER_FRACTION * extent), extent


def place_on_gps(views: Views, centres: np.ndarray, target: np.ndarray, mode: str, threshold: float,
                 seed: int = 0) -> Placement:
    """Fit the model (``views``, its frame) to the photos' ENU ``target`` [U, 3] (their model-frame
    ``centres`` [U, 3]), with ``--gps-altitude mode``; inliers within ``threshold`` metres or the GPS noise's
    threshold.

    Each up the photos suggest is tried, best first (:func:`~momentum_gs.data.sfm.up.find_up`); the first
    whose fit passes every check (:mod:`~momentum_gs.data.sfm.checks`) and makes both claims is taken. When
    none does, the first's failures refuse the run."""
    gps = L.gps_fit(centres, target, threshold, seed) if mode != "ignore" else None
    votes = [(gps.up(), "the GPS altitudes")] if gps is not None else []
    ups, found = find_up(views, votes, seed)
    tried: list[Placement] = []
    for up in ups or [None]:
        level = L.level_fit(centres, target, up.axis, threshold, seed) if up is not None else None
        attempt = Placement(None, found if up is None else up.describe(), up=up, gps=gps, level=level)
        try:
            fit, attempt.up_from = L.choose(mode, level, gps, None if up is None else up.axis, attempt.up_from)
        except UserError as exc:
            attempt.problem = str(exc)
            tried.append(attempt)
            continue
        placed = Placed(place(views, fit), fit, centres, target)
        attempt.checks = verify(placed)
        attempt.claims = claims(attempt.checks)
        attempt.problem = _refusal(attempt, fit, up)
        if attempt.problem is None:
            return _in_shape(attempt, fit, placed, tried)
        tried.append(attempt)
    first = tried[0]
    first.lines = [c.line() for c in first.checks if not c.passed]
    return first


def _in_shape(attempt: Placement, fit: L.Fit, placed: Placed, tried: list[Placement]) -> Placement:
    """The placement that passed every check, refused when its model is out of shape (:func:`~.checks.shape`,
    :func:`~.checks.field`, :func:`~.checks.bend`,
    :func:`~.checks.square`).
    Not a reason to try the next up: a model out of shape is so whatever its up, and a wrong up can fit a
    wandering GPS loosely enough to pass."""
    attempt.lines = [_retried(t) for t in tried]
    found = [c for c in (shape(placed), C.field(placed), C.bend(placed), C.square(placed)) if c is not None]
    attempt.checks += found
    failed = [c for c in found if not c.passed]
    if failed:
        attempt.problem = failed[0].line()
        attempt.lines += [c.line() for c in failed]
        return attempt
    attempt.fit = fit
    attempt.misregistered = misregistered(fit)
    return attempt


def misregistered(fit: L.Fit) -> dict[int, float]:
    """The photos (indices) whose GPS the fit left out by more than ``MISREGISTERED_NOISES`` times the RMS by
    which the fit's other photos disagree with theirs (and ``MISREGISTERED_MIN_M``), with their horizontal
    distance: registered in the wrong place, since one fix of a GPS that agrees so well elsewhere is not that wrong."""
    return _far(np.linalg.norm(np.nan_to_num(fit.residuals[:, :2]), axis=1), fit.inliers)[0]


def _far(distance: np.ndarray, inliers: np.ndarray) -> tuple[dict[int, float], float]:
    """(the outliers, by index, more than ``MISREGISTERED_NOISES`` times the inliers' RMS ``distance`` (and
    ``MISREGISTERED_MIN_M``) from their GPS, with that distance; the inliers' RMS), metres."""
    rms = float(np.sqrt((distance[inliers] ** 2).mean())) if inliers.any() else 0.0
    far = max(MISREGISTERED_MIN_M, MISREGISTERED_NOISES * rms)
    return {int(i): float(distance[i]) for i in np.flatnonzero(~inliers & (distance > far))}, rms


def far_from_gps(centres: np.ndarray, gps: np.ndarray) -> tuple[dict[int, float], float]:
    """For a model placed on ground control (``centres`` [N, 3] ENU): (the photos, by index, whose GPS ``gps``
    [N, 3] disagrees with them as :func:`misregistered` says, with the horizontal metres; the RMS by which the
    others disagree). The GPS's common offset from the control (a datum, a receiver's bias) is taken out first:
    it moves every photo alike, so it measures the GPS, not a photo. Too few photos to measure (under
    ``checks.SHAPE_MIN_PHOTOS``): none."""
    if len(centres) < C.SHAPE_MIN_PHOTOS:
        return {}, 0.0
    offsets = centres[:, :2] - gps[:, :2]
    residuals = offsets - np.median(offsets, 0)
    threshold, _ = L.noise_threshold(residuals, L.THRESHOLD_MIN_M)
    distance = np.linalg.norm(residuals, axis=1)
    return _far(distance, distance < threshold)


def spread(fit: L.Fit) -> float:
    """The RMS horizontal distance of the fit's inliers from their GPS, metres."""
    inliers = np.nan_to_num(fit.residuals[fit.inliers, :2])
    return float(np.sqrt((inliers ** 2).sum(1).mean())) if len(inliers) else 0.0


def _refusal(attempt: Placement, fit: L.Fit, up: Up | None) -> str | None:
    """The one line refusing a fit whose checks failed or could not make a claim, else None."""
    failed = [c for c in attempt.checks if not c.passed]
    if failed:
        more = f" (and {len(failed) - 1} more check(s) failed, listed above)" if len(failed) > 1 else ""
        return failed[0].line() + more
    up_claim, placed = attempt.claims
    if placed is None:
        return ("the georeference could not be verified: no check of the GPS fixes and of a mirror ran; give "
                "photos with GPS from at least 3 places")
    if up_claim is None and not (up is None and fit.name in ("gps", "gcp")):
        return ("the georeference could not be verified: the photos neither stand above what they see nor show "
                "an image-up, so nothing confirms that z is up; use --gps-altitude use to trust the GPS altitudes")
    return None


def _retried(attempt: Placement) -> str:
    """A console line for an up that was tried and failed before the one taken."""
    why = attempt.problem or "no claim"
    return f"up from {attempt.up.source if attempt.up else 'the GPS'} was refused ({why}); tried the next source"


def place_on_gcps(views: Views, model_points: dict[str, np.ndarray | None], enu: dict[str, np.ndarray],
                  skipped: dict[str, str]) -> Placement:
    """Fit the model to its ground control points: ``model_points`` (name → [3] triangulated in the model, or
    None) to their ``enu`` positions (name → [3] metres); ``skipped``: why a point was not triangulated.
    The fit is checked as a GPS fit is (above the ground, looking down, not mirrored) and by its GCP residuals."""
    try:
        found = fit_gcps(model_points, enu, skipped)
    except UserError as exc:
        return Placement(None, "the ground control points", problem=str(exc))
    names = found.used
    centres, target = np.stack([model_points[n] for n in names]), np.stack([enu[n] for n in names])
    residuals = np.stack([found.residuals[n] for n in names])
    fit = L.Fit("gcp", found.scale, found.rotation, found.translation, np.ones(len(names), bool), residuals,
                threshold=C.GCP_RMS_MAX)
    attempt = Placement(None, "the ground control points' heights", gcp_residuals=found.residuals,
                        gcp_skipped=found.skipped)
    attempt.checks = verify(Placed(place(views, fit), fit, centres, target, found.residuals))
    attempt.claims = claims(attempt.checks)
    attempt.problem = _refusal(attempt, fit, None)
    attempt.lines = [f"GCP {n}: {np.linalg.norm(r):.3f} m (east {r[0]:+.3f}, north {r[1]:+.3f}, up {r[2]:+.3f})"
                     for n, r in found.residuals.items()]
    attempt.lines += [f"GCP {n} not used: {why}" for n, why in found.skipped.items()]
    if attempt.problem is None:
        attempt.fit = fit
    return attempt


def place_on_gcps_level(views: Views, model_points: dict[str, np.ndarray | None], enu: dict[str, np.ndarray],
                        skipped: dict[str, str], seed: int = 0) -> Placement:
    """Fit the model to ground control points without heights (``enu`` up NaN): levelled by the photos' up
    (:func:`~momentum_gs.data.sfm.up.find_up`), fitted to the points' east and north, z = 0 at the cameras' median
    height. Checked as :func:`place_on_gcps` is; each up the photos suggest is tried, best first."""
    names = [n for n in enu if model_points.get(n) is not None and np.isfinite(enu[n][:2]).all()]
    if len(names) < 3:
        why = "; ".join(f"{n}: {skipped.get(n, 'not triangulated')}" for n in enu if n not in names)
        return Placement(None, "the ground control points", problem=(
            f"{len(names)} of {len(enu)} ground control points can be used horizontally, 3 or more are needed"
            + (f" ({why})" if why else "") + "; mark every GCP on 2 or more photos from different places"))
    centres, target = np.stack([model_points[n] for n in names]), np.stack([enu[n] for n in names])
    ups, found = find_up(views, [], seed)
    tried: list[Placement] = []
    for up in ups:
        fit = L.level_fit(centres, target, up.axis, C.GCP_RMS_MAX, seed)
        if fit is None:
            continue
        fit.inliers[:] = True  # surveyed points: every one counts (the gcp check judges them)
        residuals = dict(zip(names, fit.residuals))
        attempt = Placement(None, up.describe(), up=up, gcp_residuals=residuals,
                            gcp_skipped={n: skipped.get(n, "not triangulated") for n in enu if n not in names})
        attempt.checks = verify(Placed(place(views, fit), fit, centres, target, residuals))
        attempt.claims = claims(attempt.checks)
        attempt.problem = _refusal(attempt, fit, up)
        attempt.lines = [f"GCP {n}: {np.linalg.norm(r[:2]):.3f} m (east {r[0]:+.3f}, north {r[1]:+.3f}; no height)"
                         for n, r in residuals.items()]
        if attempt.problem is None:
            attempt.fit = fit
            return attempt
        tried.append(attempt)
    if not tried:
        return Placement(None, found, problem=f"cannot level the scene on ground control points without heights: "
                         f"{found}; give the GCPs' heights")
    return tried[0]
