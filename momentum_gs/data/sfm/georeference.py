"""The georeference of `mgs sfm`: the model fitted to its photos' GPS in East-North-Up metres, level.

The arithmetic (up from the photos, the robust fits, the checks, the choice) is
:mod:`momentum_gs.data.sfm.placement`; this module takes a pycolmap reconstruction, applies the chosen fit to it
when it passed its checks, and says what it did: the figures go
into ``georef.json`` and ``sfm.json``, the lines to the console.
"""

from __future__ import annotations

import numpy as np

from momentum_gs.data.georef import wgs84_to_enu
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.colmap_steps import transform
from momentum_gs.data.sfm.control import control_enu, triangulate_marks
from momentum_gs.data.sfm.gcp import Control
from momentum_gs.data.sfm.placement import (MISREGISTERED_NOISES, Placement, far_from_gps, inlier_floor,
                                            place_on_gcps, place_on_gcps_level, place_on_gps, spread)
from momentum_gs.data.sfm.up import Views
from momentum_gs.errors import listing


def gps_origin(gps: dict[str, np.ndarray]) -> np.ndarray:
    """[3] ENU origin: the median latitude and longitude (one photo far off does not move it) and the median
    of the altitudes the photos have (0 when none has one)."""
    lla = np.stack(list(gps.values()))
    alt = lla[np.isfinite(lla[:, 2]), 2]
    return np.array([np.median(lla[:, 0]), np.median(lla[:, 1]), np.median(alt) if len(alt) else 0.0])


def to_enu(gps: dict[str, np.ndarray], origin: np.ndarray) -> dict[str, np.ndarray]:
    """name → [3] east, north, up metres at ``origin``; up is NaN for a photo without altitude."""
    names = list(gps)
    lla = np.stack([gps[n] for n in names])
    filled = np.where(np.isfinite(lla), lla, origin[None])
    enu = wgs84_to_enu(filled, origin)
    enu[~np.isfinite(lla[:, 2]), 2] = np.nan
    return dict(zip(names, enu))


def _rms(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values).all(1)] if values.ndim == 2 else values[np.isfinite(values)]
    if not len(values):
        return None
    return float(np.sqrt((values.reshape(len(values), -1) ** 2).sum(1).mean()))


def georeference(pycolmap, model, enu: dict[str, np.ndarray], origin: np.ndarray, mode: str,
                 order: list[str]) -> tuple[dict | None, float | None, str | None, list[str]]:
    """Fit ``model`` to the photos' ENU positions and apply the fit (in place) when it passes its checks.

    Returns (the georeference for ``georef.json`` or None without GPS, the capture's horizontal extent in
    metres, the problem that fails the run or None, lines for the console). ``order``: the photos in
    capture order (their names sorted), for the altitude's drift.
    """
    registered = {model.image(i).name: model.image(i) for i in model.reg_image_ids()}
    used = [n for n in order if n in enu and n in registered]
    if len(used) < 3:
        return None, None, None, []
    target = np.stack([enu[n] for n in used])
    threshold, extent = inlier_floor(target)
    views = model_views(model)
    centres = np.stack([registered[n].projection_center() for n in used])
    placement = place_on_gps(views, centres, target, mode, threshold)
    position = {n: i for i, n in enumerate(order)}
    geo = _figures(origin, used, target, mode, placement, np.array([position[n] for n in used]))
    if placement.fit is None:
        return geo, extent, placement.problem, placement.lines
    taken_out = {used[i]: round(d, 1) for i, d in placement.misregistered.items()}
    lines, outliers = _fit_lines(mode, placement, used, geo, set(taken_out))
    geo.update(_fit_figures(placement, outliers), photos_taken_out=taken_out)
    transform(pycolmap, model, placement.fit.matrix())
    for name in taken_out:
        model.deregister_frame(registered[name].frame_id)
    return geo, extent, None, placement.lines + lines + _taken_out_lines(taken_out, spread(placement.fit))


def model_views(model) -> Views:
    """The registered cameras of a pycolmap model, the median of the points each sees, and its points."""
    ids = list(model.reg_image_ids())
    xyz = {pid: p.xyz for pid, p in model.points3D.items()}
    seen = np.full((len(ids), 3), np.nan)
    for row, i in enumerate(ids):
        observed = [xyz[p.point3D_id] for p in model.image(i).points2D if p.has_point3D() and p.point3D_id in xyz]
        if observed:
            seen[row] = np.median(np.array(observed), 0)
    return Views(np.stack([model.image(i).cam_from_world().rotation.matrix() for i in ids]),
                 np.stack([model.image(i).projection_center() for i in ids]), seen,
                 np.array(list(xyz.values()), np.float64).reshape(-1, 3))


def _figures(origin: np.ndarray, used: list[str], target: np.ndarray, mode: str, placement: Placement,
             order: np.ndarray) -> dict:
    """The georeference's figures before the chosen fit is applied (``transform`` None) and its checks."""
    tilt, level = placement.tilt, placement.level
    drift = L.altitude_drift(level.residuals[:, 2], order) if level is not None else None
    up_claim, placed = placement.claims
    return {"origin": {"lat": float(origin[0]), "lon": float(origin[1]), "alt": float(origin[2])},
            "ellipsoid": "WGS84", "images_used": len(used), "gps_altitude": mode,
            "altitude_in_exif": int(np.isfinite(target[:, 2]).sum()),
            "up_from_photos": placement.up.describe() if placement.up is not None else None,
            "tilt_gps_vs_photos_deg": None if tilt is None else round(tilt, 2),
            "altitude_drift_m": None if drift is None else round(drift, 2),
            "vertical_rms_level_m": None if level is None else _rms(level.residuals[level.inliers, 2]),
            "checks": [{"name": c.name, "passed": c.passed, "said": c.said} for c in placement.checks],
            "verified": {"up": up_claim, "placed": placed},
            "transform": None}


def take_out_far_from_gps(model, enu: dict[str, np.ndarray]) -> tuple[dict[str, float], list[str]]:
    """The photos of a ``model`` placed on ground control (ENU metres, the frame of ``enu``) that were registered far
    from where their GPS says they were taken (:func:`~.placement.far_from_gps`), taken out of the model (in place):
    (name → horizontal metres, the console line). A GPS that agrees with the control elsewhere is not that wrong
    at one photo: the photo is misplaced, and would train a wrong scene."""
    registered = {model.image(i).name: model.image(i) for i in model.reg_image_ids()}
    names = sorted(n for n in enu if n in registered)
    if not names:
        return {}, []
    found, rms = far_from_gps(np.stack([registered[n].projection_center() for n in names]),
                              np.stack([enu[n] for n in names]))
    taken_out = {names[i]: round(d, 1) for i, d in found.items()}
    for name in taken_out:
        model.deregister_frame(registered[name].frame_id)
    return taken_out, _taken_out_lines(taken_out, rms)


def _taken_out_lines(taken_out: dict[str, float], rms: float) -> list[str]:
    """The line naming the photos taken out of the model as misregistered (none when there are none); ``rms``: by
    how much the other photos disagree with their GPS."""
    if not taken_out:
        return []
    shown = [f"{n} ({d:g} m)" for n, d in sorted(taken_out.items(), key=lambda kv: -kv[1])]
    return [f"took {len(taken_out)} photo(s) out of the model: registered far from where their GPS says they were "
            f"taken, over {MISREGISTERED_NOISES:g} times the {rms:.2g} m RMS by which the other photos "
            f"disagree with their GPS (a misplaced photo would train a wrong scene): {listing(shown, 5)}"]


def _fit_lines(mode: str, placement: Placement, used: list[str], geo: dict, taken_out: set[str]
               ) -> tuple[list[str], dict[str, float]]:
    """(the console lines about the chosen fit, photo → horizontal metres of the GPS left out of it); the photos
    ``taken_out`` of the model are not among them."""
    fit, lines = placement.fit, []
    if mode == "auto" and fit is placement.level and placement.tilt is not None:
        drift = geo["altitude_drift_m"]
        drift_text = f", drifting {drift:+.0f} m over the flight" if drift is not None and abs(drift) >= 1 else ""
        lines.append(f"GPS altitude not used: it tilts the scene {placement.tilt:.1f}° from {placement.up.source}"
                     f"{drift_text} (vertical residual {geo['vertical_rms_level_m']:.1f} m RMS); levelled by the "
                     "photos instead")
    outliers = {n: round(float(np.linalg.norm(r[:2])), 1) for n, r, ok in zip(used, fit.residuals, fit.inliers)
                if not ok and n not in taken_out}
    if outliers:
        shown = [f"{n} ({d:g} m)" for n, d in sorted(outliers.items(), key=lambda kv: -kv[1])]
        lines.append(f"GPS of {len(outliers)} photo(s) disagrees with the model by more than {fit.threshold:.0f} m "
                     f"and was left out of the fit: {listing(shown, 5)}")
    return lines, outliers


def _fit_figures(placement: Placement, outliers: dict[str, float]) -> dict:
    """The chosen fit's figures: its transform, inliers and residuals."""
    fit = placement.fit
    inl = fit.inliers
    horizontal = _rms(fit.residuals[inl, :2])
    return {
        "frame": "local East-North-Up, metres, z up (x east, y north)",
        "fit": fit.name, "up_from": placement.up_from,
        "transform": {"enu_from_colmap": fit.matrix().tolist(), "scale": float(fit.scale)},
        "inliers": int(inl.sum()), "gps_outliers": outliers, "inlier_threshold_m": round(fit.threshold, 2),
        "gps_noise_m": round(fit.noise, 2),
        "residual_horizontal_rms_m": horizontal, "residual_vertical_rms_m": _rms(fit.residuals[inl, 2]),
        "residual_rms_m": _rms(fit.residuals[inl]) if fit.name == "gps" else horizontal,
    }


def gcp_origin(control: Control) -> np.ndarray:
    """[3] ENU origin from the ground control points alone: their median latitude, longitude and height."""
    lla = control.lla
    heights = lla[np.isfinite(lla[:, 2]), 2]
    return np.array([np.median(lla[:, 0]), np.median(lla[:, 1]), np.median(heights) if len(heights) else 0.0])


def georeference_gcps(pycolmap, model, control: Control, origin: np.ndarray) -> tuple[dict, str | None, list[str]]:
    """Fit ``model`` to its ground control points and apply the fit (in place) when it passes its checks:
    (the georeference for ``georef.json``, the problem that fails the run or None, lines for the console)."""
    enu = control_enu(control, origin)
    points, skipped = triangulate_marks(model, control)
    with_height = [n for n, p in points.items() if p is not None and np.isfinite(enu[n][2])]
    if len(with_height) >= 3:
        placement = place_on_gcps(model_views(model), points, enu, skipped)
    else:  # horizontal control: levelled by the photos, z = 0 at the GCPs' median height
        placement = place_on_gcps_level(model_views(model), points, enu, skipped)
        if placement.fit is not None:
            placement.lines.append(f"the GCPs give no heights ({len(with_height)} of {len(points)} do): the scene is "
                                   "levelled by the photos and z = 0 at the GCPs' median height")
    geo = {"origin": {"lat": float(origin[0]), "lon": float(origin[1]), "alt": float(origin[2])},
           "ellipsoid": "WGS84", "gcp_projection": control.projection,
           "checks": [{"name": c.name, "passed": c.passed, "said": c.said} for c in placement.checks],
           "verified": {"up": placement.claims[0], "placed": placement.claims[1]}, "transform": None,
           "gcp_skipped": placement.gcp_skipped or skipped}
    if placement.fit is None:
        return geo, placement.problem, placement.lines
    fit = placement.fit
    geo.update({"frame": "local East-North-Up, metres, z up (x east, y north)", "fit": "gcp",
                "up_from": placement.up_from,
                "transform": {"enu_from_colmap": fit.matrix().tolist(), "scale": float(fit.scale)},
                "gcp_residuals_m": {n: [round(float(v), 4) for v in r] for n, r in placement.gcp_residuals.items()},
                "residual_rms_m": _rms(fit.residuals) if np.isfinite(fit.residuals[:, 2]).all()
                else _rms(fit.residuals[:, :2]), "residual_horizontal_rms_m": _rms(fit.residuals[:, :2]),
                "residual_vertical_rms_m": _rms(fit.residuals[:, 2])})
    transform(pycolmap, model, fit.matrix())
    return geo, None, placement.lines
