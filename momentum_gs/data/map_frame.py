"""The map's frame: where a world point of the scene lands on the map, and its height.

A georeferenced scene (``georef.json``, ENU metres at an origin) is mapped into the WGS84 UTM zone of its origin
(EPSG 326zz north, 327zz south). Over a site of a few kilometres the ENU plane and the UTM grid differ by a
similarity: a rotation (the meridian convergence), a scale (UTM's scale factor, within 0.04 % of 1) and a shift.
It is fitted by least squares to a grid of points carried through WGS84 exactly (``data.georef``, ``data.utm``);
its largest residual is kept and said. Heights are exact per point: the altitude above the origin's datum (the
EXIF altitudes') of the ENU point, the Earth's curvature included.

A scene without a georeference is mapped in its own frame, its unit the scene's: the scene's up
(:func:`~momentum_gs.data.up.scene_up`: a ``scene.json``'s, as the synthetic city records, else the training
cameras'), the map's x along the world's x axis laid flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momentum_gs.data.georef import enu_to_wgs84, origin_of, robust_bounds
from momentum_gs.data.up import scene_up
from momentum_gs.data.utm import wgs84_to_utm

FIT_POINTS = 11  # per side of the grid the similarity is fitted to
EXTENT_QUANTILE = 0.01  # the site the UTM similarity is fitted over: the points' 1st to 99th percentiles


@dataclass(frozen=True)
class MapFrame:
    """World → map: ``rotation`` [3, 3] rows, in world coordinates, the map's x (east), y (north) and up;
    ``scale`` map units per world unit; ``offset`` [2] the map (x, y) of the world origin; ``epsg`` the CRS
    (None: the scene's own frame); ``origin`` the georeference's (lat, lon, alt) or None; ``residual`` the fit's
    largest miss, map units; ``what`` the frame in words."""

    rotation: np.ndarray
    scale: float
    offset: np.ndarray
    epsg: int | None
    origin: np.ndarray | None
    residual: float
    what: str

    def to_map(self, world: np.ndarray) -> np.ndarray:
        """[N, 3] world points → [N, 3] map (x, y) and their height along the map's up, in world units."""
        local = np.asarray(world, np.float64) @ self.rotation.T
        return np.column_stack([local[:, :2] * self.scale + self.offset, local[:, 2]])

    def to_world(self, xy: np.ndarray, up: np.ndarray) -> np.ndarray:
        """[N, 2] map (x, y) at [N] heights along the map's up (world units) → [N, 3] world points."""
        local = np.column_stack([(np.asarray(xy, np.float64) - self.offset) / self.scale, up])
        return local @ self.rotation

    def local(self, lo: np.ndarray, hi: np.ndarray, height: float) -> "MapFrame":
        """The frame refitted over the map rectangle ``lo``-``hi`` [2] (a tile of the raster) at ENU ``height``: the
        same CRS, its similarity fitted there, so that a site of several kilometres lands on the grid where PROJ
        puts each point (one similarity over 5 km at a zone's edge misses by over a centimetre). A frame without a
        georeference is exact already and is returned as it is."""
        if self.origin is None:
            return self
        corners = self.to_world(np.array([lo, [hi[0], lo[1]], hi, [lo[0], hi[1]]], np.float64), np.zeros(4))
        origin = {"lat": float(self.origin[0]), "lon": float(self.origin[1]), "alt": float(self.origin[2])}
        low, high = corners.min(0), corners.max(0)
        low[2] = high[2] = height
        return georeferenced_frame({"origin": origin}, low, high)

    def heights(self, world: np.ndarray) -> np.ndarray:
        """[N] heights of [N, 3] world points: metres above the georeference's datum, or world units up."""
        world = np.asarray(world, np.float64)
        if self.origin is not None:
            return enu_to_wgs84(world, self.origin)[:, 2]
        return world @ self.rotation[2]


def utm_zone(lat: float, lon: float) -> tuple[int, bool]:
    """(zone 1-60, south) of the standard 6° UTM zone of a WGS84 point (Norway's and Svalbard's exceptions
    not applied: their maps land in the regular zone)."""
    return int(np.floor((lon + 180.0) / 6.0)) % 60 + 1, lat < 0


def georeferenced_frame(georef: dict, lo: np.ndarray, hi: np.ndarray) -> MapFrame:
    """The UTM frame of a scene with ``georef``, fitted over the ENU box ``lo``-``hi`` [3] (the site)."""
    origin = origin_of(georef)
    zone, south = utm_zone(origin[0], origin[1])
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], FIT_POINTS), np.linspace(lo[1], hi[1], FIT_POINTS))
    enu = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, 0.5 * (lo[2] + hi[2]))])
    utm = wgs84_to_utm(enu_to_wgs84(enu, origin), zone, south)[:, :2]
    w, m = enu[:, 0] + 1j * enu[:, 1], utm[:, 0] + 1j * utm[:, 1]
    a = np.sum((m - m.mean()) * np.conj(w - w.mean())) / np.sum(np.abs(w - w.mean()) ** 2)  # m ≈ a·w + b
    b = m.mean() - a * w.mean()
    residual = float(np.abs(a * w + b - m).max())
    scale, angle = float(np.abs(a)), float(np.angle(a))
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    epsg = (32700 if south else 32600) + zone
    what = (f"EPSG:{epsg} (WGS 84 / UTM zone {zone}{'S' if south else 'N'}), heights in metres above the EXIF "
            f"altitudes' datum; the ENU frame rotated {np.degrees(angle):+.3f}° and scaled {scale:.6f} onto it "
            f"(largest miss {residual * 1000:.1f} mm)")
    return MapFrame(rotation, scale, np.array([b.real, b.imag]), epsg, origin, residual, what)


def site_frame(points: np.ndarray, georef: dict) -> MapFrame:
    """The UTM frame of a scene with ``georef``, fitted over the site its [N, 3] world ``points`` span (their 1st
    to 99th percentiles)."""
    lo, hi = robust_bounds(points, None, EXTENT_QUANTILE)
    return georeferenced_frame(georef, lo, hi)


def own_frame(up: np.ndarray, said: str) -> MapFrame:
    """The scene's own frame with unit ``up`` [3] (world coordinates), ``said`` where the up came from."""
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    x = np.eye(3)[0] if abs(up[0]) < 0.9 else np.eye(3)[1]
    x = x - (x @ up) * up
    x /= np.linalg.norm(x)
    rotation = np.stack([x, np.cross(up, x), up])
    what = (f"the scene's own frame (no georef.json: no CRS; run mgs sfm on photos with GPS for one), its units, "
            f"up {said}")
    return MapFrame(rotation, 1.0, np.zeros(2), None, None, 0.0, what)


def frame_of(points: np.ndarray, cameras: list, georef: dict | None, data_path: str) -> MapFrame:
    """The map's frame of a scene (module notes) whose content lies at [N, 3] world ``points`` (the Gaussians'
    centres), seen by ``cameras`` (the training views), with ``georef`` (None: none) and its folder."""
    if georef is not None:
        return site_frame(points, georef)
    up, said = scene_up(data_path, cameras)
    return own_frame(up, said)
