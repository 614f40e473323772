"""Ground control in `mgs sfm` after the model is placed: the adjustment on the GCPs and the GPS together
(:mod:`momentum_gs.data.sfm.adjust`), and the check points, which no fit ever sees, measured against the result.

Accuracy follows the NSSDA (FGDC-STD-007.3-1998), as ASPRS's standard for digital geospatial data does: errors
assumed normal, CE90 = 2.1460 / sqrt(2) x the horizontal RMSE (RMSE_r; the x and y errors alike), LE90 = 1.6449 x
the vertical RMSE.
"""

from __future__ import annotations

import numpy as np

from momentum_gs.data.georef import wgs84_to_enu
from momentum_gs.data.sfm.adjust import GCP_STD_M, Anchor, adjust, gps_std_from
from momentum_gs.data.sfm.gcp import Control, triangulate_with_reason

CE90_PER_RMSE_R = 2.1460 / np.sqrt(2.0)  # 90 % of a circular normal error within this many RMSE_r
LE90_PER_RMSE_Z = 1.6449  # 90 % of a normal error within this many standard deviations


def without_flat_heights(control: Control, what: str) -> tuple[Control, str | None]:
    """``control`` with heights that say nothing (every one the same, or none given) made unknown (NaN), and the
    line that says so; a list of one point keeps its height."""
    heights = control.lla[:, 2]
    given = heights[np.isfinite(heights)]
    if len(control.gcps) < 2 or (len(given) == len(heights) and np.ptp(given) > 0):
        return control, None
    if len(given) and len(given) < len(heights):
        return control, None  # some with and some without: each is taken as given
    lla = control.lla.copy()
    lla[:, 2] = np.nan
    said = "no heights" if not len(given) else f"every height {given[0]:g} m"
    return Control(control.projection, control.gcps, lla), \
        f"the {what} give {said}: taken as unknown, so they are used horizontally only"


def has_heights(control: Control) -> int:
    """How many of ``control``'s points have a height."""
    return int(np.isfinite(control.lla[:, 2]).sum())


def control_enu(control: Control, origin: np.ndarray) -> dict[str, np.ndarray]:
    """GCP name → [3] east, north, up metres at ``origin`` (up NaN where the height is unknown)."""
    lla = control.lla
    enu = wgs84_to_enu(np.where(np.isfinite(lla), lla, origin[None]), origin)
    enu[~np.isfinite(lla[:, 2]), 2] = np.nan
    return dict(zip([g.name for g in control.gcps], enu))


def gps_std(model, gps_enu: dict[str, np.ndarray]) -> np.ndarray | None:
    """[3] the GPS's standard deviation (east, north, up NaN) measured on the placed ``model``: from the median
    horizontal distance between each camera and its fix, bias included (:func:`gps_std_from`); None with
    fewer than 3 fixes."""
    distance = _gps_distances(model, gps_enu)
    return gps_std_from(distance) if len(distance) >= 3 else None


def adjust_on_control(pycolmap, model, control: Control, origin: np.ndarray,
                      gps_enu: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
    """Adjust the placed ``model`` in place on the GCPs of ``control`` and the photos' GPS (``gps_enu``, horizontal
    only, weighted by what it measures against the model): (figures for ``georef.json``, console lines)."""
    enu = control_enu(control, origin)
    anchors = [Anchor(g.name, enu[g.name], g.marks, survey_std(g)) for g in control.gcps]
    horizontal = {n: np.array([p[0], p[1], np.nan]) for n, p in gps_enu.items()}
    std = gps_std(model, horizontal)
    done = adjust(pycolmap, model, anchors, horizontal if std is not None else None, std)
    figures = {**done.figures(), "survey_lla": _lla(control),
               "gcp_std_m": {a.name: [round(float(a.std[0]), 4), round(float(a.std[2]), 4)] for a in anchors}}
    residual = np.stack(list(done.gcp_residuals.values()))
    rms = float(np.sqrt(np.nanmean(np.nansum(residual ** 2, 1))))
    gps_text = f" and {done.gps_used} GPS fixes (weighted as {std[0]:.2g} m)" if done.gps_used else ""
    lines = [f"adjusted on {len(anchors)} GCPs{gps_text} in {done.seconds:.0f} s: cameras moved "
             f"{done.camera_moved_m[0]:.3g} m RMS (largest {done.camera_moved_m[1]:.3g} m); tie points "
             f"{done.tie_rms_px[0]:.2f} -> {done.tie_rms_px[1]:.2f} px; GCPs {rms:.3f} m from their survey "
             "(fitted to them, so not an independent check: give check points with --check)", _weights_line(control)]
    return figures, lines


def adjust_on_gps(pycolmap, model, gps_enu: dict[str, np.ndarray]) -> tuple[dict | None, list[str]]:
    """Adjust the placed ``model`` in place on its photos and their GPS alone (no ground control; horizontal, weighted
    by what it measures against the model), so that a model the photos allow to bend is bent to its GPS: (figures
    for ``georef.json``, console lines); (None, []) with fewer than 3 fixes on registered photos."""
    horizontal = {n: np.array([p[0], p[1], np.nan]) for n, p in gps_enu.items()}
    distance = _gps_distances(model, horizontal)
    if len(distance) < 3:
        return None, []
    std, before = gps_std_from(distance), float(np.median(distance))
    done = adjust(pycolmap, model, [], horizontal, std)
    after = float(np.median(_gps_distances(model, horizontal)))
    figures = {**done.figures(), "gps_residual_median_m_before": round(before, 3),
               "gps_residual_median_m_after": round(after, 3)}
    return figures, [f"adjusted on {done.gps_used} GPS fixes (weighted as {std[0]:.2g} m) in {done.seconds:.0f} s: "
                     f"cameras moved {done.camera_moved_m[0]:.3g} m RMS (largest {done.camera_moved_m[1]:.3g} m); "
                     f"tie points {done.tie_rms_px[0]:.2f} -> {done.tie_rms_px[1]:.2f} px; median distance to the "
                     f"GPS {before:.3g} -> {after:.3g} m"]


def _gps_distances(model, gps_enu: dict[str, np.ndarray]) -> np.ndarray:
    """[N] the horizontal distance, metres, between each registered photo with a fix and its fix."""
    centres = {model.image(i).name: model.image(i).projection_center() for i in model.reg_image_ids()}
    return np.array([np.linalg.norm(centres[n][:2] - p[:2]) for n, p in gps_enu.items() if n in centres])


def survey_std(gcp) -> np.ndarray:
    """[3] east, north, up standard deviation of a GCP's survey, metres: its file's accuracy, else the default."""
    return np.array(GCP_STD_M) if gcp.accuracy is None else gcp.accuracy[[0, 0, 1]].astype(np.float64)


def _weights_line(control: Control) -> str:
    """How the GCPs were weighed: the file's accuracies (their range), the default, or both."""
    given = np.array([g.accuracy for g in control.gcps if g.accuracy is not None]).reshape(-1, 2)
    default = f"{GCP_STD_M[0]:g} m horizontally and {GCP_STD_M[2]:g} m vertically"
    if not len(given):
        return f"GCPs weighed as surveyed to {default} (the default: the GCP list gives no accuracies)"
    ranges = [f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}" for lo, hi in zip(given.min(0), given.max(0))]
    rest = (f"; the other {len(control.gcps) - len(given)} to {default}, the default"
            if len(given) < len(control.gcps) else "")
    return (f"GCPs weighed by the accuracies their list gives, {len(given)} of {len(control.gcps)}: {ranges[0]} m "
            f"horizontally, {ranges[1]} m vertically{rest}")


def triangulate_marks(model, control: Control) -> tuple[dict[str, np.ndarray | None], dict[str, str]]:
    """(point name → [3] its position in ``model``'s frame triangulated from its marks on the registered photos, or
    None; name → why a point could not be triangulated)."""
    images = {model.image(i).name: model.image(i) for i in model.reg_image_ids()}
    points, skipped = {}, {}
    for g in control.gcps:
        rays = [(images[name].cam_from_world().matrix(), np.asarray(images[name].camera.cam_from_img(pixel)))
                for name, pixel in g.marks if name in images]
        points[g.name], why = triangulate_with_reason(rays)
        if points[g.name] is None:
            skipped[g.name] = why
    return points, skipped


def check_points(model, check: Control, origin: np.ndarray) -> tuple[dict, list[str]]:
    """The check points of ``check`` triangulated from their marks in the placed ``model`` and compared with
    their survey: (figures for ``sfm.json``, console lines)."""
    enu = control_enu(check, origin)
    points, skipped = triangulate_marks(model, check)
    errors = {name: point - enu[name] for name, point in points.items() if point is not None}
    figures = {"points": {n: [None if not np.isfinite(v) else round(float(v), 4) for v in e]
                          for n, e in errors.items()},
               "skipped": skipped, "survey_lla": _lla(check),
               **accuracy(np.stack(list(errors.values())) if errors else np.zeros((0, 3)))}
    return figures, accuracy_lines(figures)


def _lla(control: Control) -> dict[str, list]:
    """Point name → [latitude°, longitude°, height m or None] as surveyed, for the report's map."""
    return {g.name: [round(float(row[0]), 9), round(float(row[1]), 9),
                     None if not np.isfinite(row[2]) else round(float(row[2]), 4)]
            for g, row in zip(control.gcps, control.lla)}


def drawn_errors(geo: dict) -> list[tuple[str, str, list, np.ndarray]]:
    """(kind "check" or "gcp", name, [latitude°, longitude°, height or None] as surveyed, [2] east and north error
    from the survey to the model, metres) of each point of a georeference's check points and GCP adjustment, for
    the pictures (a GCP's residual is survey - model: turned round)."""
    check, adjustment = geo.get("check_points") or {}, geo.get("adjustment") or {}
    kinds = [("check", check.get("points") or {}, check.get("survey_lla") or {}, 1.0),
             ("gcp", adjustment.get("gcp_residuals_m") or {}, adjustment.get("survey_lla") or {}, -1.0)]
    return [(kind, name, lla[name], sign * np.array(e[:2], np.float64)) for kind, errors, lla, sign in kinds
            for name, e in errors.items() if name in lla]


def accuracy(errors: np.ndarray) -> dict:
    """The NSSDA figures of [K, 3] east, north, up errors in metres (up NaN where the height is unknown)."""
    out = {"count": len(errors), "frame": "east, north, up metres at the site's origin; model - survey"}
    if not len(errors):
        return out
    known = np.isfinite(errors)
    rmse = np.array([np.sqrt(np.mean(errors[known[:, k], k] ** 2)) if known[:, k].any() else np.nan
                     for k in range(3)])
    horizontal = float(np.hypot(rmse[0], rmse[1]))
    out.update(rmse_east_m=float(rmse[0]), rmse_north_m=float(rmse[1]), rmse_horizontal_m=horizontal,
               ce90_m=CE90_PER_RMSE_R * horizontal, mean_east_m=float(errors[:, 0].mean()),
               mean_north_m=float(errors[:, 1].mean()), vertical_count=int(known[:, 2].sum()))
    if out["vertical_count"]:
        out.update(rmse_vertical_m=float(rmse[2]), le90_m=LE90_PER_RMSE_Z * float(rmse[2]),
                   mean_up_m=float(errors[known[:, 2], 2].mean()))
    return out


def accuracy_lines(figures: dict) -> list[str]:
    """The console lines of :func:`check_points`' figures."""
    lines = []
    for n, e in figures["points"].items():
        e = np.array(e, np.float64)  # a height not known is None there, NaN here
        lines.append(f"check point {n}: {np.linalg.norm(np.nan_to_num(e)):.3f} m (east {e[0]:+.3f}, north "
                     f"{e[1]:+.3f}" + (f", up {e[2]:+.3f})" if np.isfinite(e[2]) else ", no height)"))
    lines += [f"check point {n} not measured: {why}" for n, why in figures["skipped"].items()]
    return lines
