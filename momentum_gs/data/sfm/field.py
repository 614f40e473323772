"""What the GPS residuals of a placed model are made of: noise from photo to photo, a slow error of the GPS, and a
part that depends on place, which is the model out of shape.

A GPS's error is a function of time: independent from photo to photo, plus a slow wander over minutes. A model
out of shape (drifting in scale, bent, folded) disagrees with the GPS as a function of place. Where the flight
comes back over a place at another time (rows, cross lines, corridors flown both ways) the two can be told apart:
the residuals are fitted in capture order by ``WANDER_TERMS`` slow terms alone, then with smooth functions of place
added, and an F test says whether place explains what time does not. Along one line, place and time are the same
and the test is skipped; there, only the size of the slow part can say that the model is wrong: a slow error more
than ``WANDER_NOISES`` times the noise from photo to photo, or more than ``WANDER_MAX_M`` metres, is more than a
GPS wanders.

Heights are tested the same way, with a barometric drift (a quadratic in time) and a tilt (a plane, the photos' up
is only known to a degree or two) in place of the wander: a fold about a level hinge shows as a roof or a valley
in the altitudes' residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momentum_gs.data.sfm import level as L

WANDER_TERMS = 6  # cosine terms in capture order beyond the mean: an error that changes over a sixth of a flight
FIELD_DEGREE = 3  # smooth functions of place: the monomials of the plan coordinates up to this degree
FIELD_F = 8.0  # the place terms explain this many times what noise would (F statistic) ...
FIELD_MIN_M = 1.0  # ... and this much, metres RMS: the model is out of shape
HEIGHT_F, HEIGHT_MIN_M = 5.0, 2.0  # the same for the heights, beyond a drift and a tilt
TILT_MAX_DEG = 3.0  # the heights' tilt beyond the drift, as significant as HEIGHT_F: more than the photos' up errs
WANDER_NOISES, WANDER_FLOOR_M = 3.0, 2.0  # a slow error beyond this many times the noise, and these metres, ...
WANDER_MAX_M = 20.0  # ... or beyond these metres RMS, is more than a GPS wanders
FIELD_MIN_PHOTOS = 30  # photos the test needs (it fits up to 17 terms per axis)
LINE = 0.1  # the photos "along a line": the plan's second singular value below this of the first
MAD_TO_SIGMA = 1.4826


@dataclass
class Field:
    """The residuals' parts, metres: ``noise`` from photo to photo (RMS in the plan), ``slow`` (RMS of the
    horizontal part that follows capture order), ``place`` (RMS of the horizontal part that depends on place
    beyond it) with its F statistic, and the same for the heights (NaN without altitudes)."""

    photos: int
    noise: float
    slow: float
    place: float
    place_f: float
    height: float = float("nan")
    height_f: float = float("nan")
    tilt_deg: float = float("nan")  # the plane of the altitudes' residuals beyond a drift in time, and its F
    tilt_f: float = float("nan")


def noise_from_neighbours(residuals: np.ndarray) -> float:
    """The RMS length of the noise in [N, D] residuals in capture order, from the second differences of consecutive
    photos (robust: the median absolute deviation per axis), which a slow error and a smooth field hardly change."""
    bend = residuals[2:] - 2 * residuals[1:-1] + residuals[:-2]
    mad = np.median(np.abs(bend - np.median(bend, 0)), 0)
    return float(np.sqrt(((MAD_TO_SIGMA * mad) ** 2).sum() / 6))


def slow_terms(n: int, terms: int = WANDER_TERMS) -> np.ndarray:
    """[n, terms + 1] the mean and ``terms`` cosines over the capture order (a discrete cosine basis)."""
    i = (np.arange(n) + 0.5) / n
    return np.stack([np.cos(np.pi * k * i) for k in range(terms + 1)], 1)


def place_terms(plan: np.ndarray, degree: int = FIELD_DEGREE, lowest: int = 1) -> np.ndarray:
    """[N, K] the monomials of degree ``lowest`` to ``degree`` of the plan positions [N, 2] in their principal
    axes, scaled to [-1, 1]."""
    local = plan - plan.mean(0)
    _, _, vt = np.linalg.svd(local, full_matrices=False)
    axes = local @ vt.T
    axes /= np.abs(axes).max(0).clip(1e-12)
    return np.stack([axes[:, 0] ** (d - b) * axes[:, 1] ** b for d in range(lowest, degree + 1)
                     for b in range(d + 1)], 1)


def _f_test(values: np.ndarray, null: np.ndarray, extra: np.ndarray) -> tuple[float, float]:
    """(RMS of what ``extra`` terms explain beyond the ``null`` terms, its F statistic) for [N, D] values."""
    full = np.c_[null, extra]

    def rss(design: np.ndarray) -> float:
        solved, *_ = np.linalg.lstsq(design, values, rcond=None)
        return float(((values - design @ solved) ** 2).sum())

    rank_null, rank_full = np.linalg.matrix_rank(null), np.linalg.matrix_rank(full)
    gained, left = rss(null) - rss(full), rss(full)
    dof = values.shape[1] * (len(values) - rank_full)
    if rank_full == rank_null or dof <= 0:
        return 0.0, 0.0
    explained = float(np.sqrt(max(gained, 0.0) / len(values)))
    if left <= 1e-12 * max(gained, 1e-300):
        return explained, float("inf") if gained > 0 else 0.0
    return explained, (gained / (values.shape[1] * (rank_full - rank_null))) / (left / dof)


def measure(plan: np.ndarray, residuals: np.ndarray) -> Field | None:
    """The parts of the residuals [N, 3] (east, north, up; up NaN without altitude) of photos at placed plan
    positions [N, 2], both in capture order; None with fewer than ``FIELD_MIN_PHOTOS``."""
    n = len(plan)
    if n < FIELD_MIN_PHOTOS:
        return None
    horizontal = residuals[:, :2]
    slow = slow_terms(n)
    solved, *_ = np.linalg.lstsq(slow, horizontal, rcond=None)
    slow_part = slow[:, 1:] @ solved[1:]
    found = Field(n, noise_from_neighbours(horizontal), float(np.sqrt((slow_part ** 2).sum(1).mean())), 0.0, 0.0)
    if L.along_a_line(plan, LINE):  # place and capture order are one: only the slow part's size can tell
        return found
    place = place_terms(plan)
    found.place, found.place_f = _f_test(horizontal, slow, place)
    known = np.isfinite(residuals[:, 2])
    if known.sum() >= FIELD_MIN_PHOTOS:
        t = np.linspace(-1.0, 1.0, n)
        drift_and_tilt = np.c_[np.ones(n), t, t ** 2, place[:, :2]][known]  # the degree-1 terms: a tilt
        found.height, found.height_f = _f_test(residuals[known, 2:], drift_and_tilt, place[known, 2:])
        found.tilt_deg, found.tilt_f = _tilt(plan[known], residuals[known, 2], np.c_[np.ones(n), t, t ** 2][known])
    return found


def _tilt(plan: np.ndarray, heights: np.ndarray, drift: np.ndarray) -> tuple[float, float]:
    """(degrees, F statistic) of the plane the heights' residuals [K] rise along over the plan [K, 2] beyond a
    ``drift`` in time: a model drifting in scale raises its cameras above the ground along the flight, which its
    up from the photos leaves in the heights, not in the plan."""
    local = plan - plan.mean(0)
    solved, *_ = np.linalg.lstsq(np.c_[drift, local], heights, rcond=None)
    return float(np.degrees(np.arctan(np.linalg.norm(solved[-2:])))), _f_test(heights[:, None], drift, local)[1]


def problem(found: Field) -> str | None:
    """Why the residuals say that the model is out of shape, or None."""
    if found.place_f > FIELD_F and found.place > FIELD_MIN_M:
        return (f"the GPS disagrees with the model by {found.place:.3g} m RMS that depends on place, not on time "
                f"(F = {found.place_f:.3g}), beyond {found.noise:.3g} m of noise from photo to photo")
    if found.height_f > HEIGHT_F and found.height > HEIGHT_MIN_M:
        return (f"the GPS altitudes disagree with the model's heights by {found.height:.3g} m RMS that depends on "
                f"place (F = {found.height_f:.3g}), beyond a drift and a tilt (a folded or bent reconstruction)")
    if found.tilt_f > HEIGHT_F and found.tilt_deg > TILT_MAX_DEG:
        return (f"the model's cameras rise {found.tilt_deg:.3g}° across the site against their GPS altitudes, "
                f"beyond a drift in time (F = {found.tilt_f:.3g}; the photos' up errs by a degree or two): a model "
                "drifting in scale raises its cameras above the ground along the flight")
    if found.slow > WANDER_MAX_M:
        return (f"the GPS disagrees with the model slowly by {found.slow:.3g} m RMS, more than a GPS wanders "
                f"({WANDER_MAX_M:g} m)")
    if found.slow > max(WANDER_FLOOR_M, WANDER_NOISES * found.noise):
        times = found.slow / max(found.noise, 1e-9)
        return (f"the GPS disagrees with the model slowly by {found.slow:.3g} m RMS, {times:.2g} times its "
                f"{found.noise:.3g} m of noise from photo to photo (a GPS's slow error is smaller)")
    return None


def describe(found: Field) -> str:
    """One line of the parts, for the check that passed."""
    heights = "" if not np.isfinite(found.height) else \
        f", {found.height:.3g} m of the heights (F = {found.height_f:.2g})"
    return (f"of the residuals of {found.photos} photos, {found.noise:.3g} m is noise from photo to photo, "
            f"{found.slow:.3g} m slow and {found.place:.3g} m depends on place (F = {found.place_f:.2g}){heights}")
