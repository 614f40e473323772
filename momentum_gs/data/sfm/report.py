"""What `mgs sfm` tells its user: the figures of ``DATA/sfm.json``, the checks that fail a run, and the
top-down picture ``DATA/cameras.png`` of the camera centres over the sparse points."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.georef import wgs84_to_enu
from momentum_gs.data.sfm.control import drawn_errors
from momentum_gs.draw import BLACK, blank, dot, map_window, put_pixels, put_text, save_png, scale_bar
from momentum_gs.errors import listing

SIZE = 800  # picture side, pixels
ARROW_PX = 60  # the largest control point error's arrow, pixels
CHECK_MAGENTA, GCP_ORANGE = (200, 0, 200), (0, 140, 255)  # BGR
POINT_GREY, CAMERA_RED = (110, 110, 110), (40, 40, 220)  # BGR
GPS_RESIDUAL_LIMIT = 0.2  # a GPS fit residual (RMS) above this fraction of the capture's extent fails the run ...
GPS_RESIDUAL_MAX_M = 30.0  # ... and above this whatever the extent: twice a consumer GPS's worst (10-20 m)
HINT_OVERLAP = "photos of a survey need 60-80 % overlap and texture"


def summary(reconstructions: list, names: list[str], geo: dict | None, matcher: str) -> dict:
    """The figures of a run: registered photos (and the names left out), reprojection error, points,
    models, GPS fit."""
    best = reconstructions[0] if reconstructions else None
    registered = sorted(best.image(i).name for i in best.reg_image_ids()) if best else []
    # COLMAP may rebuild part of a capture as another model of photos an earlier one has too: not disconnected.
    others, seen = [], set(registered)
    for r in reconstructions[1:]:
        own = {r.image(i).name for i in r.reg_image_ids()} - seen
        others.append(own)
        seen |= own
    return {
        "images_total": len(names),
        "images_registered": len(registered),
        "images_left_out": sorted(set(names) - set(registered)),
        "models": [len(registered)] + [len(o) for o in others if o],
        "points": best.num_points3D() if best else 0,
        "mean_reprojection_error_px": best.compute_mean_reprojection_error() if best else None,
        "cameras": {int(i): f"{c.model.name} {c.width}x{c.height}" for i, c in best.cameras.items()} if best else {},
        "matcher": matcher,
        "georeferenced": geo is not None and geo.get("transform") is not None,
        "gps_fit_failed": geo is not None and geo.get("transform") is None,
        "gps_residual_rms_m": geo.get("residual_rms_m") if geo else None,
        "gps_residual_horizontal_rms_m": geo.get("residual_horizontal_rms_m") if geo else None,
        "gps_residual_vertical_rms_m": geo.get("residual_vertical_rms_m") if geo else None,
        "gps_tilt_vs_photos_deg": geo.get("tilt_gps_vs_photos_deg") if geo else None,
        "gps_altitude_drift_m": geo.get("altitude_drift_m") if geo else None,
        "fit": geo.get("fit") if geo else None,
        "up_from": geo.get("up_from") if geo else None,
        "verified": geo.get("verified") if geo else None,
        "adjustment": geo.get("adjustment") if geo else None,
        "check_points": geo.get("check_points") if geo else None,
    }


def registration_problem(report: dict, keep_largest: bool = False) -> str | None:
    """The line saying why too few photos registered (none, disconnected parts, under half), or None. Said before
    any placement check: a model of 3 photos is not a georeference problem. ``keep_largest``: a capture in
    disconnected parts (or with fewer than half its photos registered) is accepted, its largest part written."""
    n, k, models = report["images_total"], report["images_registered"], report["models"]
    retry = "try --matcher exhaustive" if report["matcher"] != "exhaustive" else "try more photos"
    if k == 0:
        return (f"no model could be built: no two of the {n} photos share enough matched features "
                f"({HINT_OVERLAP}); check that the photos overlap, or {retry}")
    if len([m for m in models[1:] if m >= 3]) > 0 and not keep_largest:
        sizes = ", ".join(map(str, models))
        return (f"the photos form {len(models)} disconnected models ({sizes} photos of their own): parts of the "
                f"capture do not overlap; add photos that bridge them, {retry}, or keep the largest part "
                "(--keep-largest)")
    if k < n / 2 and not keep_largest:
        return (f"only {k} of {n} photos registered (left out: {listing(report['images_left_out'], 5)}); "
                f"{HINT_OVERLAP}; {retry}, "
                "or --single-camera when one camera took them all")
    return None


def residual_limit(extent: float) -> float:
    """Metres: the largest horizontal GPS residual (RMS) a capture of ``extent`` metres may keep. A share of the
    extent for a small capture, never more than ``GPS_RESIDUAL_MAX_M``: on a 1 km site a share would pass a model
    wrong by 100 m, while a GPS is not wrong by more than 20 m however far the drone flew."""
    return min(max(GPS_RESIDUAL_LIMIT * extent, 1.0), GPS_RESIDUAL_MAX_M)


def problem(report: dict, gps_extent: float | None, keep_largest: bool = False) -> str | None:
    """The one line saying what went wrong and what to try, or None for a run the checks accept: the
    registration's (:func:`registration_problem`), then the fit to the photos' GPS."""
    retry = "try --matcher exhaustive" if report["matcher"] != "exhaustive" else "try more photos"
    found = registration_problem(report, keep_largest)
    if found is not None:
        return found
    if report["gps_fit_failed"]:
        return ("the model could not be fitted to the photos' GPS (no similarity agrees with 3 or more of them); "
                f"the reconstruction is likely mismatched ({retry}), or the GPS tags are wrong")
    rms = report["gps_residual_horizontal_rms_m"]
    if rms is not None and gps_extent and rms > residual_limit(gps_extent):
        return (f"the model does not fit the photos' GPS: residual {rms:.1f} m RMS horizontally over a "
                f"{gps_extent:.0f} m capture (at most {residual_limit(gps_extent):.3g} m); "
                f"the reconstruction is likely folded or mismatched ({retry}), or the GPS tags are wrong")
    return None


def summary_lines(report: dict) -> list[str]:
    """The short summary printed at the end."""
    error = report["mean_reprojection_error_px"]
    damaged = report.get("photos_not_decoded") or {}
    taken_out = (report.get("georeference") or {}).get("photos_taken_out") or {}
    left = ([f"{name}, {'misregistered' if name in taken_out else 'not registered'}"
             for name in report["images_left_out"]]
            + [f"{name}, damaged" for name in sorted(damaged)])
    lines = [f"registered {report['images_registered']} of {report['images_total'] + len(damaged)} photos"
             + (f" ({len(left)} left out: {listing(left, 5)})" if left else ""),
             f"{report['points']} points, mean reprojection error " + (f"{error:.2f} px" if error is not None else "-")]
    if report["images_left_out"] and len(report["models"]) > 1:
        share = report["images_registered"] / report["images_total"]
        lines.append(f"kept the largest connected part: {report['images_registered']} of {report['images_total']} "
                     f"photos ({share:.0%} of the capture); the other parts hold {', '.join(map(str, report['models'][1:]))}")
    if report["georeferenced"]:
        vertical = report["gps_residual_vertical_rms_m"]
        altitude = (f"ground control points within {report['gps_residual_rms_m']:.3f} m RMS before the adjustment "
                    "(each in sfm.json; fitted to them, not an independent check)"
                    if report["fit"] == "gcp" else
                    f"GPS residual {vertical:.2f} m vertically" if report["fit"] == "gps" else
                    f"height: the GPS altitudes' median (their residual {vertical:.1f} m RMS)" if vertical is not None
                    else "no GPS altitude: z = 0 at the cameras' median height")
        verified = report["verified"] or {}
        up = verified.get("up") or f"z from {report['up_from']}"
        lines.append(f"georeferenced: ENU metres; {up}; {verified.get('placed')}")
        lines.append(f"up from {report['up_from']}; {altitude}")
    lines += check_lines(report.get("check_points"))
    return lines


def check_lines(check: dict | None) -> list[str]:
    """The accuracy measured on check points, in a line (none without check points)."""
    if not check or not check.get("count"):
        return [] if not check else ["no check point could be measured (each says why in sfm.json)"]
    text = (f"accuracy on {check['count']} check points: horizontal RMSE {check['rmse_horizontal_m']:.3f} m, "
            f"CE90 {check['ce90_m']:.3f} m")
    if "rmse_vertical_m" in check:
        text += f"; vertical RMSE {check['rmse_vertical_m']:.3f} m, LE90 {check['le90_m']:.3f} m"
    return [text]


def draw_cameras(path: Path, reconstruction, report: dict, georeferenced: bool) -> None:
    """Top-down (x right, y up) picture of the registered camera centres (red) over the sparse points (grey)."""
    image = blank(SIZE, SIZE)
    cams = np.array([reconstruction.image(i).projection_center() for i in reconstruction.reg_image_ids()])
    cams = cams.reshape(-1, 3)
    pts = np.array([p.xyz for p in reconstruction.points3D.values()]).reshape(-1, 3)
    window = map_window(cams[:, :2], pts[:, :2], SIZE)  # partition.png's window: cameras and most points
    put_pixels(image, window.pixels(pts[:, :2]), POINT_GREY)
    for u, v in window.pixels(cams[:, :2]):
        dot(image, (int(u), int(v)), 5, CAMERA_RED)
    said = _control_arrows(image, window, report.get("georeference") or {}) if georeferenced else None
    _legend(image, report, georeferenced, window.pixels_per_unit, said)
    save_png(path, image)


def _control_arrows(image: np.ndarray, window, geo: dict) -> str | None:
    """The check points (magenta) and GCPs (orange) at their surveyed places, each error an arrow magnified alike
    (the largest ``ARROW_PX`` long); the legend's line, or None without such points."""
    origin = np.array([geo["origin"][k] for k in ("lat", "lon", "alt")]) if geo.get("origin") else None
    drawn = drawn_errors(geo)
    if origin is None or not drawn:
        return None
    longest = max(float(np.hypot(*error)) for *_, error in drawn) or 1.0
    for kind, _, lla, error in drawn:
        colour = CHECK_MAGENTA if kind == "check" else GCP_ORANGE
        at = wgs84_to_enu(np.array([[lla[0], lla[1], lla[2] if lla[2] is not None else origin[2]]]), origin)[0, :2]
        (u, v), = window.pixels(at[None])
        tip = (int(u + error[0] / longest * ARROW_PX), int(v - error[1] / longest * ARROW_PX))
        cv2.circle(image, (int(u), int(v)), 7, colour, 2)
        cv2.arrowedLine(image, (int(u), int(v)), tip, colour, 2, tipLength=0.25)
    return (f"check points (magenta), GCPs (orange): the model's error as an arrow, {ARROW_PX} px = "
            f"{100 * longest:.1f} cm")


def _legend(image: np.ndarray, report: dict, georeferenced: bool, pixels_per_unit: float,
            control: str | None = None) -> None:
    """What the colours are and the frame, in the upper left; a scale bar in the lower left."""
    lines = [f"{report['images_registered']}/{report['images_total']} photos registered (red), "
             f"{report['points']} points (grey)",
             "top view: x east, y north (metres)" if georeferenced else "top view: x, y of COLMAP's frame"]
    lines += [control] if control else []
    for row, text in enumerate(lines):
        put_text(image, text, 10, 22 + 20 * row, 0.5)
    bar, length = scale_bar(pixels_per_unit, SIZE)
    cv2.line(image, (10, SIZE - 15), (10 + length, SIZE - 15), BLACK, 2)
    unit = " m" if georeferenced else " units"
    put_text(image, f"{bar:g}{unit}", 15 + length, SIZE - 10, 0.5)
