"""The checks a georeference passes before anything is written or printed as georeferenced.

A fit is only as good as the up it was given: a sign taken the wrong way round writes the scene upside down
and mirrored, and a robust fit to a wrong frame still "fits" the few photos it keeps. So every fit is checked
in its result, East-North-Up metres, against what holds for any capture, whatever found its up:

- ``above``: an aerial capture's cameras stand above the ground they see;
- ``looking``: and look below the horizon;
- ``image_up``: an eye-level capture's photos are upright (their image-up vectors point up);
- ``fixes``: the fit uses most GPS fixes (``FIXES_MIN`` within the noise-derived threshold);
- ``mirror``: a plan fitted with a reflection does not fit the GPS clearly better than the proper one;
- ``gcp``: the ground control points lie where the fit puts them.

Each check says what it found, with its numbers, and the way out when it fails. The claims of the report are
made from the checks that ran and passed (:func:`claims`): a check that did not run claims nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.up import Views, aerial_side

FIXES_MIN = 0.7  # share of the GPS fixes the fit must use
LOOK_SHARE = 0.8  # share of an aerial capture's cameras that must look below the horizon
UPRIGHT = 0.3  # an eye-level capture's mean image-up has at least this along z
GCP_RMS_MAX = 1.0  # metres: ground control points fitted worse than this are a marking or a model error
LINE = 0.1  # GPS fixes "along a line": the plan's second singular value below this of the first
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
    norms = {name: float(np.linalg.norm(r)) for name, r in p.gcp_residuals.items()}
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
