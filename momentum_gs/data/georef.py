"""Georeferencing: photo GPS (WGS84) to a local East-North-Up frame in metres, and back.

`mgs sfm` fits the reconstruction to the photos' GPS positions in ENU metres at the capture's centre, so
the scene is metric with z up; ``DATA/georef.json`` keeps the origin and the fit. Export and mesh commands
copy it into a side-car JSON beside their outputs, with the scene's centre and corners in latitude and
longitude, so a GIS user can place the result. The corners are robust bounds, not min/max: per axis the 1st
and 99th percentiles of the points (weighted by the Gaussians' opacities in an export), so a few stray
Gaussians far out do not stretch the box; the centre is the (weighted) median. The conversions are the
standard WGS84 formulas in numpy (no pycolmap needed to export); tests check them against pycolmap's
``GPSTransform``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.schema import Maybe, Number, Obj, read_json
from momentum_gs.ranges import Range

GEOREF_NAME = "georef.json"
# Heights on the WGS84 ellipsoid a scene can have: from below the deepest ocean floor (about -11 km, with the
# geoid's -106 m) to the edge of space (100 km, the Karman line, above any aircraft or balloon that films).
ALTITUDE = Range(-12_000, 100_000)
# What export and mesh read of ``georef.json`` (`mgs sfm` writes more figures, which they do not read). The origin
# is copied into the side-car, so it holds exactly its three numbers.
GEOREF = Obj({"origin": Obj({"lat": Number(Range(-90, 90), note="degrees"),
                             "lon": Number(Range(-180, 180), note="degrees"),
                             "alt": Number(ALTITUDE, note="metres on the WGS84 ellipsoid")}, refuse_unknown=True)},
             {"residual_rms_m": Maybe(Number(Range(0, 1e7), note="metres"))})
_A = 6378137.0  # WGS84 semi-major axis, metres
_F = 1 / 298.257223563  # WGS84 flattening
_E2 = _F * (2 - _F)  # first eccentricity squared


def wgs84_to_ecef(lla: np.ndarray) -> np.ndarray:
    """[N, 3] (latitude°, longitude°, altitude m) on WGS84 → [N, 3] Earth-centred Earth-fixed metres."""
    lat, lon, alt = np.radians(lla[:, 0]), np.radians(lla[:, 1]), lla[:, 2]
    n = _A / np.sqrt(1 - _E2 * np.sin(lat) ** 2)
    return np.stack([(n + alt) * np.cos(lat) * np.cos(lon), (n + alt) * np.cos(lat) * np.sin(lon),
                     (n * (1 - _E2) + alt) * np.sin(lat)], 1)


def enu_axes(origin: np.ndarray) -> np.ndarray:
    """[3, 3] rows: east, north and up at ``origin`` (lat, lon in degrees), in ECEF."""
    lat, lon = np.radians(origin[0]), np.radians(origin[1])
    return np.array([[-np.sin(lon), np.cos(lon), 0.0],
                     [-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)],
                     [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]])


def wgs84_to_enu(lla: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """[N, 3] (latitude°, longitude°, altitude m) → [N, 3] east, north, up metres at ``origin`` (lat, lon, alt)."""
    lla = np.atleast_2d(np.asarray(lla, np.float64))
    return (wgs84_to_ecef(lla) - wgs84_to_ecef(np.asarray(origin, np.float64)[None])) @ enu_axes(origin).T


def enu_to_wgs84(enu: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """[N, 3] ENU metres at ``origin`` → [N, 3] (latitude°, longitude°, altitude m): the latitude from the
    spherical guess refined by five fixed-point steps (well under a millimetre for any point near the Earth's
    surface)."""
    enu = np.atleast_2d(np.asarray(enu, np.float64))
    x, y, z = (wgs84_to_ecef(np.asarray(origin, np.float64)[None]) + enu @ enu_axes(origin)).T
    lon = np.arctan2(y, x)
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1 - _E2))
    for _ in range(5):
        n = _A / np.sqrt(1 - _E2 * np.sin(lat) ** 2)
        alt = p / np.cos(lat) - n
        lat = np.arctan2(z, p * (1 - _E2 * n / (n + alt)))
    n = _A / np.sqrt(1 - _E2 * np.sin(lat) ** 2)
    return np.stack([np.degrees(lat), np.degrees(lon), p / np.cos(lat) - n], 1)


def usable_gps(gps: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the positions that can be used, names of the photos whose GPS is (0, 0) or not finite); a missing
    altitude (NaN) alone keeps the position.

    (0, 0) is what many cameras write before they have a satellite fix: it is a missing position, not a
    place in the Gulf of Guinea.
    """
    good, bad = {}, []
    for name, lla in gps.items():
        ok = np.isfinite(lla[:2]).all() and not (abs(lla[0]) < 1e-9 and abs(lla[1]) < 1e-9) and abs(lla[0]) <= 90
        (good.__setitem__(name, lla) if ok else bad.append(name))
    return good, sorted(bad)


def read_georef(data_dir: Path) -> dict | None:
    """The scene's ``georef.json`` (origin, fit) checked against :data:`GEOREF`, or None for a scene without one;
    a UserError names the file, the key and what was expected."""
    path = Path(data_dir) / GEOREF_NAME
    if not path.exists():
        return None
    return read_json(path, GEOREF, "the georeference", "correct it, or run mgs sfm again to write it")


def origin_of(georef: dict) -> np.ndarray:
    """[3] (lat°, lon°, alt m) of the ENU origin."""
    o = georef["origin"]
    return np.array([o["lat"], o["lon"], o["alt"]], np.float64)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q) -> np.ndarray:
    """Quantile(s) ``q`` of [N] ``values`` with [N] positive ``weights``: each sorted value stands at the middle
    of its share of the total weight, ``(cumsum(w) - w / 2) / sum(w)``, and ``q`` is interpolated linearly
    between those positions (clamped to the smallest and largest value outside them). With equal weights this
    is numpy's ``method="hazen"``, and q = 0.5 is the plain median; one value is every quantile of itself."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    return np.interp(q, (cum - w / 2) / cum[-1], v)


def _usable(points: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The [N, 3] points (and their weights) with every coordinate finite and a finite positive weight."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    keep = np.isfinite(points).all(1)
    if weights is not None:
        weights = np.asarray(weights, np.float64).reshape(-1)
        if len(weights) != len(points):
            raise ValueError(f"{len(weights)} weights for {len(points)} points")
        keep &= np.isfinite(weights) & (weights > 0)
        weights = weights[keep]
    if not keep.any():
        raise ValueError("no point with finite coordinates (and a positive weight) to take bounds of")
    return points[keep], weights


def robust_bounds(points: np.ndarray, weights: np.ndarray | None = None,
                  q: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) [3]: per axis, the ``q`` and ``1 - q`` weighted quantiles of [N, 3] ``points`` (see
    ``weighted_quantile``). ``weights`` [N] (the Gaussians' opacities, say; None: all equal) make faint points
    count for little. Points with a non-finite coordinate and non-positive or non-finite weights are left out;
    one point is its own bounds; a ValueError when none is left. ``q`` = 0 gives min/max."""
    if not 0 <= q < 0.5:
        raise ValueError(f"q must be in [0, 0.5), not {q}")
    points, weights = _usable(points, weights)
    if weights is None:
        weights = np.ones(len(points))
    bounds = np.array([weighted_quantile(points[:, axis], weights, [q, 1 - q]) for axis in range(3)])
    return bounds[:, 0], bounds[:, 1]


SIDECAR_QUANTILE = 0.01  # the side-car's corners: the 1st and 99th percentiles


def sidecar(georef: dict, points: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """The side-car of an output whose [N, 3] ``points`` are in the scene's ENU frame: the frame, its origin,
    the points' centre (median; weighted by ``weights`` [N], the Gaussians' opacities, where given) and the
    four corners of their robust bounding box (``robust_bounds``), at its low altitude, in WGS84."""
    origin = origin_of(georef)
    usable, w = _usable(points, weights)
    lo, hi = robust_bounds(usable, w, SIDECAR_QUANTILE)
    corners = np.array([[lo[0], lo[1], lo[2]], [hi[0], lo[1], lo[2]], [hi[0], hi[1], lo[2]], [lo[0], hi[1], lo[2]]])
    middle = np.median(usable, 0) if w is None else np.array([weighted_quantile(usable[:, a], w, 0.5)
                                                              for a in range(3)])
    centre = enu_to_wgs84(middle[None], origin)[0]
    weighted = " weighted by opacity" if weights is not None else ""
    low, high = 100 * SIDECAR_QUANTILE, 100 * (1 - SIDECAR_QUANTILE)
    return {
        "frame": "local East-North-Up, metres, z up (x east, y north), on the WGS84 ellipsoid",
        "origin": georef["origin"],
        "centre_wgs84": {"lat": centre[0], "lon": centre[1], "alt": centre[2]},
        "corners_wgs84": [dict(zip(("lat", "lon", "alt"), c)) for c in enu_to_wgs84(corners, origin).tolist()],
        "extent_rule": (f"centre: the median of the points{weighted}; corners: per axis, percentiles {low:g} to "
                        f"{high:g} of the points{weighted}, so a few stray points do not "
                        "stretch the box; the four corners are at its low altitude"),
        "to_wgs84": "ECEF = ECEF(origin) + R^T @ [x, y, z]; R's rows are east, north, up at the origin",
        "gps_residual_rms_m": georef.get("residual_rms_m"),
    }


def ply_comment(georef: dict) -> str:
    """One PLY header comment line placing the scene (origin of its ENU frame)."""
    o = georef["origin"]
    return f"georef ENU metres z-up origin WGS84 lat {o['lat']:.9f} lon {o['lon']:.9f} alt {o['alt']:.3f}"


def write_sidecar(output: Path, georef: dict | None, points: np.ndarray,
                  weights: np.ndarray | None = None) -> Path | None:
    """Write ``<output>.georef.json`` for a georeferenced scene (``sidecar``: ``weights`` [N], the Gaussians'
    opacities, or None); returns its path (None without georef)."""
    if georef is None or len(points) == 0:
        return None
    path = Path(output).with_name(Path(output).name + ".georef.json")
    atomic_write_text(path, json.dumps(sidecar(georef, points, weights), indent=2) + "\n")
    return path
