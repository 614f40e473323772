"""The georeference of `mgs sfm`: the model fitted to its photos' GPS in East-North-Up metres, level.

The arithmetic (up from the photos, the robust fits, the choice) is :mod:`momentum_gs.data.sfm.level`; this
module takes a pycolmap reconstruction, applies the chosen fit to it and says what it did: the figures go
into ``georef.json`` and ``sfm.json``, the lines to the console.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momentum_gs.data.georef import wgs84_to_enu
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.colmap_steps import transform
from momentum_gs.errors import UserError, listing

INLIER_MIN_M, INLIER_FRACTION = 5.0, 0.05  # horizontal inlier threshold: max(5 m, 5 % of the capture's extent)


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
    """Fit ``model`` to the photos' ENU positions and apply the fit (in place).

    Returns (the georeference for ``georef.json`` or None without GPS, the capture's horizontal extent in
    metres, the problem that fails the run or None, lines for the console). ``order``: the photos in
    capture order (their names sorted), for the altitude's drift.
    """
    registered = {model.image(i).name: model.image(i) for i in model.reg_image_ids()}
    used = [n for n in order if n in enu and n in registered]
    if len(used) < 3:
        return None, None, None, []
    target = np.stack([enu[n] for n in used])
    extent = float(np.linalg.norm(np.percentile(target[:, :2], 95, 0) - np.percentile(target[:, :2], 5, 0)))
    threshold = max(INLIER_MIN_M, INLIER_FRACTION * extent)
    fits = _candidate_fits(model, registered, used, target, mode, order, threshold)
    geo = _figures(origin, used, target, mode, fits)
    try:
        fit, up_from = L.choose(mode, fits.level, fits.gps, fits.up, fits.up_source)
    except UserError as exc:
        return geo, extent, str(exc), []
    lines, outliers = _fit_lines(mode, fit, fits, used, threshold, geo)
    applied = _fit_figures(fit, up_from, outliers, threshold)
    transform(pycolmap, model, fit.matrix())
    geo.update(applied)
    return geo, extent, None, lines


@dataclass
class _Fits:
    """The fits the georeference chooses from (:func:`momentum_gs.data.sfm.level.choose`) and what compares them."""

    up: np.ndarray | None  # [3] up from the photos (COLMAP's frame), None when they do not say
    up_source: str  # what said it
    level: L.Fit | None  # the fit levelled by the photos' up (None without an up)
    gps: L.Fit | None  # the fit to the GPS positions, altitude included (None when mode is "ignore")
    tilt: float | None  # degrees between the two ups
    drift: float | None  # metres the GPS altitude drifts over the flight


def _candidate_fits(model, registered: dict, used: list[str], target: np.ndarray, mode: str, order: list[str],
                    threshold: float) -> _Fits:
    """The level and GPS fits of the ``used`` photos' centres to their ENU ``target`` [U, 3]."""
    centres = np.stack([registered[n].projection_center() for n in used])
    rotations = np.stack([registered[n].cam_from_world().rotation.matrix() for n in registered])
    all_centres = np.stack([registered[n].projection_center() for n in registered])
    points = np.array([p.xyz for p in model.points3D.values()]).reshape(-1, 3)
    up, up_source = L.photo_up(rotations, all_centres, points)
    level = L.level_fit(centres, target, up, threshold) if up is not None else None
    gps = L.gps_fit(centres, target, threshold) if mode != "ignore" else None
    tilt = L.angle_deg(gps.up(), up) if gps is not None and up is not None else None
    position = {n: i for i, n in enumerate(order)}
    drift = L.altitude_drift(level.residuals[:, 2], np.array([position[n] for n in used])) if level else None
    return _Fits(up, up_source, level, gps, tilt, drift)


def _figures(origin: np.ndarray, used: list[str], target: np.ndarray, mode: str, fits: _Fits) -> dict:
    """The georeference's figures before a fit is chosen (``transform`` None)."""
    up, tilt, drift, level = fits.up, fits.tilt, fits.drift, fits.level
    return {"origin": {"lat": float(origin[0]), "lon": float(origin[1]), "alt": float(origin[2])},
            "ellipsoid": "WGS84", "images_used": len(used), "gps_altitude": mode,
            "altitude_in_exif": int(np.isfinite(target[:, 2]).sum()),
            "up_from_photos": fits.up_source if up is not None else None,
            "tilt_gps_vs_photos_deg": None if tilt is None else round(tilt, 2),
            "altitude_drift_m": None if drift is None else round(drift, 2),
            "vertical_rms_level_m": None if level is None else _rms(level.residuals[level.inliers, 2]),
            "transform": None}


def _fit_lines(mode: str, fit: L.Fit, fits: _Fits, used: list[str], threshold: float, geo: dict
               ) -> tuple[list[str], dict[str, float]]:
    """(the console lines about the chosen fit, photo → horizontal metres of the GPS left out of it)."""
    lines = []
    if mode == "auto" and fit is fits.level and fits.tilt is not None:
        drift = fits.drift
        drift_text = f", drifting {drift:+.0f} m over the flight" if drift is not None and abs(drift) >= 1 else ""
        lines.append(f"GPS altitude not used: it tilts the scene {fits.tilt:.1f}° from {fits.up_source}{drift_text} "
                     f"(vertical residual {geo['vertical_rms_level_m']:.1f} m RMS); levelled by the photos instead")
    outliers = {n: round(float(np.linalg.norm(r[:2])), 1) for n, r, ok in zip(used, fit.residuals, fit.inliers)
                if not ok}
    if outliers:
        shown = [f"{n} ({d:g} m)" for n, d in sorted(outliers.items(), key=lambda kv: -kv[1])]
        lines.append(f"GPS of {len(outliers)} photo(s) disagrees with the model by more than {threshold:.0f} m and was "
                     f"left out of the fit: {listing(shown, 5)}")
    return lines, outliers


def _fit_figures(fit: L.Fit, up_from: str, outliers: dict[str, float], threshold: float) -> dict:
    """The chosen fit's figures: its transform, inliers and residuals."""
    inl = fit.inliers
    horizontal = _rms(fit.residuals[inl, :2])
    vertical = _rms(fit.residuals[inl, 2])
    return {
        "frame": "local East-North-Up, metres, z up (x east, y north)",
        "fit": fit.name, "up_from": up_from,
        "transform": {"enu_from_colmap": fit.matrix().tolist(), "scale": float(fit.scale)},
        "inliers": int(inl.sum()), "gps_outliers": outliers, "inlier_threshold_m": round(threshold, 2),
        "residual_horizontal_rms_m": horizontal, "residual_vertical_rms_m": vertical,
        "residual_rms_m": _rms(fit.residuals[inl]) if fit.name == "gps" else horizontal,
    }
