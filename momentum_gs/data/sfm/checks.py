"""The checks a georeference passes before anything is written or printed as georeferenced.

A fit is only as good as the up it was given: a sign taken the wrong way round writes the scene upside down
and mirrored, and a robust fit to a wrong frame still "fits" the few photos it keeps. So every fit is checked
in its result, East-North-Up metres, against what holds for any capture, whatever found its up:

- ``above``: an aerial capture's cameras stand above the ground they see;
- ``looking``: and look below the horizon;
- ``image_up``: an eye-level capture's photos are upright (their image-up vectors point up);
- ``fixes``: the fit uses most GPS fixes (``FIXES_MIN`` within the noise-derived threshold);
- ``shape``: the model is not sheared or stretched: its cameras' layout maps onto their GPS positions by a
  similarity (:func:`shape`; run on the fit that passed the others, since a model out of shape is so whatever
  its up);
- ``field``: the GPS residuals do not depend on place, nor follow capture order more slowly and widely than a GPS
  wanders (:mod:`~momentum_gs.data.sfm.field`: a model drifting in scale, bent or folded; run beside ``shape``);
- ``bend``: the photos of opposite thirds of an aerial site see the same vertical, the gimbal's one attitude turned
  back into the world through each camera (a folded or bent model turns one part's cameras against the other's; run
  beside ``shape``);
- ``square``: cameras placed level do not look square onto ground that slopes (a model drifting in scale raises its
  cameras above the ground along the flight; fitted level to the GPS, its ground slopes under them; run beside
  ``shape``);
- ``mirror``: a plan fitted with a reflection does not fit the GPS clearly better than the proper one;
- ``gcp``: the ground control points lie where the fit puts them.

Each check says what it found, with its numbers, and the way out when it fails. The claims of the report are
made from the checks that ran and passed (:func:`claims`): a check that did not run claims nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from momentum_gs.data.sfm import field as F
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.up import AGREE_DEG, NADIR, Views, aerial_side, dominant_plane

FIXES_MIN = 0.7  # share of the GPS fixes the fit must use
LOOK_SHARE = 0.8  # share of an aerial capture's cameras that must look below the horizon
UPRIGHT = 0.3  # an eye-level capture's mean image-up has at least this along z
GCP_RMS_MAX = 1.0  # metres: ground control points fitted worse than this are a marking or a model error
LINE = 0.1  # GPS fixes "along a line": the plan's second singular value below this of the first
SHAPE_MAX = 0.1  # a linear map from the cameras to their GPS this far from the identity is a distorted model ...
SHAPE_SIGMAS = 4.0  # ... when it is also this many standard errors from it (a noisy GPS measures it loosely)
SHAPE_MIN_PHOTOS = 6  # photos the map needs to be measured
BEND_DEG = 10.0  # the photos of opposite thirds of a site see the vertical this far apart: a folded or bent model
SQUARE_DEG = 5.0  # level cameras that look square onto ground this steep: the model's flight plane tilted
SQUARE_SHARE = 3.0  # ... and within a third of the slope from square (a nadir gimbal a few degrees off is not)
BEND_MIN_PHOTOS, BEND_AREA = 5, 0.5  # photos a third needs; a site this wide for its long side: its sides too
OUT_OF_SHAPE_FIX = "try --matcher exhaustive or more overlap between the photos, or give ground control points (--gcp)"
Z = np.array([0.0, 0.0, 1.0])


@dataclass
class Check:
    """One check's outcome: its name, whether it passed, what it found (with numbers) and the way out."""

    name: str
    passed: bool
    said: str
    fix: str = ""

    def line(self) -> str:
        return f"check '{self.name}' failed: {self.said}" + (f"; {self.fix}" if self.fix else "")


@dataclass
class Placed:
    """A reconstruction as a fit places it, in ENU metres, with the positions it was fitted to."""

    views: Views  # in ENU
    fit: L.Fit
    centres: np.ndarray  # [U, 3] model-frame centres of the photos with GPS (or the GCPs' model positions)
    enu: np.ndarray  # [U, 3] their ENU positions
    gcp_residuals: dict[str, np.ndarray] | None = None  # GCP name → [3] ENU residual, for a fit to GCPs


def place(views: Views, fit: L.Fit) -> Views:
    """``views`` (in the model's frame) moved into the fit's ENU frame."""
    return Views(views.rotations @ fit.rotation.T, fit.apply(views.centres), fit.apply(views.seen),
                 fit.apply(views.points) if len(views.points) else views.points)


def above(p: Placed) -> Check | None:
    """An aerial capture's cameras above the ground they see (None for an eye-level capture)."""
    side = aerial_side(p.views, Z)
    if not side:
        return None
    height = float(np.nanmedian(p.views.centres[:, 2] - p.views.seen[:, 2])) if np.isfinite(p.views.seen).any() \
        else float(np.median(p.views.centres[:, 2]) - np.median(p.views.points[:, 2]))
    if side > 0:
        return Check("above", True, f"cameras {height:.3g} m above the ground they see")
    return Check("above", False, f"the cameras stand {-height:.3g} m below the points they see (the scene is upside "
                 "down)", "the photos' up was misread: report this capture; --gps-altitude use may place it")


def looking(p: Placed) -> Check | None:
    """An aerial capture's cameras looking below the horizon (None for an eye-level capture)."""
    if not aerial_side(p.views, Z):
        return None
    axes = p.views.rotations[:, 2, :]
    down = float((axes[:, 2] < 0).mean())
    tilt = L.angle_deg(axes.mean(0), -Z)
    said = f"looking {tilt:.0f}° from straight down"
    if down >= LOOK_SHARE:
        return Check("looking", True, said)
    return Check("looking", False, f"{said}, {down:.0%} of them below the horizon (an aerial capture looks down)",
                 "the photos' up was misread: report this capture")


def image_up(p: Placed) -> Check | None:
    """An eye-level capture's photos upright (None for an aerial capture, or photos that do not agree)."""
    if aerial_side(p.views, Z):
        return None
    mean = p.views.image_up()
    if np.linalg.norm(mean) < UPRIGHT:
        return None
    along = float(mean @ Z)
    said = f"the photos' mean image-up {along:+.2f} along z"
    return Check("image_up", along >= UPRIGHT, said + ("" if along >= UPRIGHT else " (the photos would be upside "
                 "down)"), "" if along >= UPRIGHT else "the photos' up was misread: report this capture")


def fixes(p: Placed) -> Check | None:
    """Most GPS fixes within the threshold (None for a fit to ground control points)."""
    if p.gcp_residuals is not None:
        return None
    fit = p.fit
    used, total = int(fit.inliers.sum()), len(fit.inliers)
    rms = float(np.sqrt((fit.residuals[fit.inliers, :2] ** 2).sum(1).mean())) if used else float("nan")
    said = f"{used} of {total} GPS fixes within {fit.threshold:.3g} m (residual {rms:.3g} m)"
    if used >= FIXES_MIN * total:
        return Check("fixes", True, said)
    return Check("fixes", False, f"only {said}; the fit should use {FIXES_MIN:.0%}",
                 "the reconstruction is likely folded or mismatched (try --matcher exhaustive), or the GPS tags "
                 "are wrong")


def effective_count(residuals: np.ndarray) -> float:
    """How many independent values [N, D] residuals in capture order hold: N over 1 + twice the sum of their
    autocorrelations up to the first lag that is not positive (a slowly wandering GPS error makes neighbours
    alike, so its residuals count as a few)."""
    r = residuals - residuals.mean(0)
    power = float((r ** 2).sum())
    if power == 0 or len(r) < 3:
        return float(len(r))
    total = 0.0
    for lag in range(1, len(r) // 2):
        rho = float((r[lag:] * r[:-lag]).sum()) / power
        if rho <= 0:
            break
        total += rho
    return len(r) / (1 + 2 * total)


def linear_map(placed: np.ndarray, gps: np.ndarray) -> tuple[float, float] | None:
    """(how far from the identity, its standard error) of the linear map taking the placed cameras [N, 2] (in
    capture order) to their GPS positions, least squares (the model exact, the GPS noisy). The error counts the
    residuals' :func:`effective_count`, so a GPS error wandering with time is not taken for a model out of shape.
    Along one line, only the scale along it. None with fewer than ``SHAPE_MIN_PHOTOS`` photos."""
    if len(placed) < SHAPE_MIN_PHOTOS:
        return None
    local = placed - placed.mean(0)
    _, sv, vt = np.linalg.svd(local, full_matrices=False)
    rank = 2 if sv[1] > LINE * sv[0] else 1
    basis = vt[:rank].T  # [2, r] the directions the cameras spread along
    design = np.c_[local @ basis, np.ones(len(placed))]
    target = (gps - placed) @ basis  # the GPS's disagreement: a linear part is a model out of shape
    solved, *_ = np.linalg.lstsq(design, target, rcond=None)  # [r + 1, r]
    residual = target - design @ solved
    sigma = float(np.sqrt((residual ** 2).sum() / max(1, residual.size - solved.size)))
    inflation = np.sqrt(len(placed) / max(effective_count(residual), 1.0))
    return float(np.linalg.norm(solved[:rank], 2)), sigma / float(sv[rank - 1]) * inflation


def shape(p: Placed) -> Check | None:
    """The model's shape against the GPS: the linear map from the placed cameras to their GPS positions. One
    further than ``SHAPE_MAX`` from the identity, and beyond what the GPS's noise explains (a wandering GPS explains
    more), is a sheared or stretched model. None for a fit to ground control points or too few photos."""
    if p.gcp_residuals is not None:
        return None
    keep = _used_fixes(p)
    found = linear_map(p.fit.apply(p.centres[keep])[:, :2], p.enu[keep, :2])
    if found is None:
        return None
    deviation, error = found
    said = f"the cameras' layout matches their GPS to {deviation:.0%} (± {error:.0%})"
    if deviation <= SHAPE_MAX or deviation <= SHAPE_SIGMAS * error:
        return Check("shape", True, said)
    return Check("shape", False, f"the model is out of shape: {said}, more than {SHAPE_MAX:.0%} and "
                 f"{SHAPE_SIGMAS:g} standard errors (a sheared or stretched reconstruction)", OUT_OF_SHAPE_FIX)


def _used_fixes(p: Placed) -> np.ndarray:
    """[U] bool: the photos whose GPS fix the fit used (inliers with a horizontal position)."""
    return p.fit.inliers & np.isfinite(p.enu[:, :2]).all(1)


def field(p: Placed) -> Check | None:
    """The GPS residuals' structure (:mod:`~momentum_gs.data.sfm.field`): a model whose disagreement with the GPS
    depends on place, or is slower and wider than a GPS's error, is out of shape. None for a fit to ground control
    points or too few photos."""
    if p.gcp_residuals is not None:
        return None
    keep = _used_fixes(p)
    found = F.measure(p.fit.apply(p.centres[keep])[:, :2], p.fit.residuals[keep])
    if found is None:
        return None
    why = F.problem(found)
    if why is None:
        return Check("field", True, F.describe(found))
    return Check("field", False, f"the model is out of shape: {why}", OUT_OF_SHAPE_FIX)


def bend(p: Placed) -> Check | None:
    """The cameras' attitude the same everywhere (:func:`attitude_by_place`): a model folded or bent turns the
    photos of one part against the other's, while a gimbal holds every photo at one angle to the vertical wherever
    it was taken. None for too few photos, and for a capture that is not aerial (photos held by hand at eye level
    have no gimbal: they tilt as the hand does)."""
    found = attitude_by_place(p.views) if aerial_side(p.views, Z) == 1 else None
    if found is None:
        return None
    angle, where = found
    said = f"the photos at {where} stand {angle:.1f}° apart from the vertical"
    if angle <= BEND_DEG:
        return Check("bend", True, said)
    return Check("bend", False, f"the model is folded or bent: {said}, more than {BEND_DEG:g}° (photos taken at "
                 "different gimbal angles in different parts can look so too)", OUT_OF_SHAPE_FIX)


def square(p: Placed) -> Check | None:
    """The ground the cameras see against the way they fly. A model drifting in scale along a flight makes the
    cameras' height above the ground drift with it: fitted level to the GPS, its ground then slopes, and the cameras,
    which looked straight down at it, look square onto that slope. Refused when the placed cameras fly level (within
    ``AGREE_DEG``) and look square (within ``AGREE_DEG`` and a ``SQUARE_SHARE``-th of the slope) onto ground sloping
    more than ``SQUARE_DEG``. None for a capture that does not look one way, or whose ground the sparse points do not
    show."""
    look = p.views.look()
    if len(p.views.centres) < SHAPE_MIN_PHOTOS or np.linalg.norm(look) < NADIR:
        return None
    normal = dominant_plane(p.views.points, look, np.random.default_rng(0))
    if normal is None:
        return None
    normal = normal if normal[2] >= 0 else -normal
    plan = p.views.centres[:, :2] - p.views.centres[:, :2].mean(0)
    slope = np.linalg.lstsq(plan, p.views.centres[:, 2] - p.views.centres[:, 2].mean(), rcond=None)[0]
    flight = float(np.degrees(np.arctan(np.linalg.norm(slope))))
    ground, facing = L.angle_deg(normal, Z), L.angle_deg(-look, normal)
    said = (f"the cameras fly {flight:.1f}° from level and look {facing:.1f}° from square onto ground sloping "
            f"{ground:.1f}°")
    if ground <= SQUARE_DEG or facing > min(AGREE_DEG, ground / SQUARE_SHARE) or flight > AGREE_DEG:
        return Check("square", True, said)
    return Check("square", False, f"the model drifts in scale along the flight: {said}, as a model whose cameras' "
                 "height above the ground grows along it does (a level flight over a slope with the gimbal tilted as "
                 "steeply, towards it, looks so too)", OUT_OF_SHAPE_FIX)


def attitude_by_place(views: Views) -> tuple[float, str] | None:
    """(the largest angle between the vertical as the photos of a third of the site see it and as those of the
    opposite third see it, degrees; which thirds), along the plan's long axis, and its short one where the site is
    an area (at least ``BEND_AREA`` as wide as long); None with under ``BEND_MIN_PHOTOS`` a third.

    A gimbal holds the camera at one attitude to the vertical: the vertical in the camera's frame is the same for
    every photo, whatever its heading. That attitude is the median over the photos of the placed vertical in each
    camera's frame; turned back into the world by each camera's rotation, it is the vertical as that photo sees it.
    Each third's is the median of its photos': robust to a few photos that turn, as a fixed wing's do in turns."""
    plan = views.centres[:, :2] - views.centres[:, :2].mean(0)
    if len(plan) < 3 * BEND_MIN_PHOTOS:
        return None
    sv, vt = np.linalg.svd(plan, full_matrices=False)[1:]
    attitude = np.median(views.rotations @ Z, 0)  # the vertical in the cameras' frame
    seen = np.einsum("nji,j->ni", views.rotations, attitude / np.linalg.norm(attitude))  # [N, 3] each photo's up
    worst = None
    for k, name in ((0, "the two ends"), (1, "the two sides")):
        if k == 1 and sv[1] < BEND_AREA * sv[0]:
            break
        along = plan @ vt[k]
        low, high = along <= np.quantile(along, 1 / 3), along >= np.quantile(along, 2 / 3)
        if min(low.sum(), high.sum()) < BEND_MIN_PHOTOS:
            continue
        angle = L.angle_deg(np.median(seen[low], 0), np.median(seen[high], 0))
        if worst is None or angle > worst[0]:
            worst = (angle, name)
    return worst


def mirror(p: Placed) -> Check | None:
    """The plan not mirrored: a fit with a reflection not clearly better than the proper one."""
    measured = p.enu[np.isfinite(p.enu[:, :2]).all(1), :2]
    if len(measured) < 3:
        return None
    if L.along_a_line(measured, LINE):
        return Check("mirror", True, "a mirror cannot be told from fixes along one line")
    fitted = L.plan_fits(p.fit, p.centres, p.enu, robust=p.gcp_residuals is None)
    if fitted is None:
        return None
    proper, mirrored = fitted
    said = f"a mirrored plan fits {mirrored:.3g} m against {proper:.3g} m"
    if not mirrored < L.MIRROR_RATIO * proper:
        return Check("mirror", True, f"not mirrored ({said})")
    return Check("mirror", False, f"the plan is mirrored: {said} (the scene is upside down)",
                 "the photos' up was misread: report this capture; --gps-altitude use may place it")


def gcp(p: Placed) -> Check | None:
    """The ground control points where the fit puts them (None for a fit to GPS)."""
    if p.gcp_residuals is None:
        return None
    norms = {name: float(np.linalg.norm(np.nan_to_num(r))) for name, r in p.gcp_residuals.items()}  # no height: 0
    rms = float(np.sqrt(np.mean(np.square(list(norms.values())))))
    worst = max(norms, key=norms.get)
    said = f"{len(norms)} ground control points within {rms:.3g} m RMS (worst {worst}: {norms[worst]:.3g} m)"
    if rms <= GCP_RMS_MAX:
        return Check("gcp", True, said)
    return Check("gcp", False, said, f"check the marks of {worst} in gcp_list.txt (pixel x then y, in the photo "
                 "named on its line) and the file's projection line")


CHECKS: dict[str, Callable[[Placed], Check | None]] = {
    "above": above, "looking": looking, "image_up": image_up, "fixes": fixes, "mirror": mirror, "gcp": gcp}


def verify(placed: Placed) -> list[Check]:
    """Every check that applies to ``placed``, in ``CHECKS``' order."""
    return [c for c in (check(placed) for check in CHECKS.values()) if c is not None]


def claims(checks: list[Check]) -> tuple[str | None, str | None]:
    """(the claim that z is up, the claim that the scene is placed), each made only from checks that ran and
    passed: z up from ``above`` and ``looking`` (aerial) or ``image_up`` (eye-level), placed from ``fixes`` (or
    ``gcp``) and ``mirror``. None where those checks did not all run and pass."""
    passed = {c.name: c.said for c in checks if c.passed}
    up = ("z up: " + ", ".join(passed[n] for n in ("above", "looking")) if {"above", "looking"} <= set(passed)
          else f"z up: {passed['image_up']}" if "image_up" in passed else None)
    fitted = passed.get("gcp") or passed.get("fixes")
    placed = f"{fitted}; {passed['mirror']}" if fitted and "mirror" in passed else None
    return up, placed
