"""``mgs export --format las``: the Gaussians' centres with their colours as a LAS 1.4 point cloud (point format 7:
x, y, z, intensity, RGB), written by laspy, for GIS tools and point-cloud software.

In a georeferenced scene the points are in the WGS84 UTM zone of the origin (easting, northing, height above the
EXIF altitudes' datum; the zone of :mod:`momentum_gs.data.map_frame`, the frame of ``mgs ortho``), each point
converted on its own (ENU to WGS84 to UTM), not by the similarity the rasters are drawn with, whose miss grows
with the site (about a centimetre over 5 km at a zone's edge); the CRS in a WKT record
(pyproj); without a georeference they keep the scene's coordinates and no CRS. The colour is the Gaussian's
view-independent one (SH degree 0) in 16 bits; the intensity is its opacity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data.map_frame import site_frame
from momentum_gs.data.utm import wgs84_to_utm
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import new_temporary, write_failed
from momentum_gs.model.standard import SH_C0, StandardGaussians

RESOLUTION = 0.001  # the coordinates' step in the file: a millimetre (a scene unit without georeference)


def las_points(gaussians: StandardGaussians, georef: dict | None) -> tuple[np.ndarray, int | None]:
    """[N, 3] coordinates the LAS file holds (module notes) and the EPSG code of their CRS (None: none)."""
    means = gaussians.means.detach().double().cpu().numpy()
    if georef is None or len(means) == 0:
        return means, None
    frame = site_frame(means, georef)
    lla = enu_to_wgs84(means, frame.origin)
    easting_northing = wgs84_to_utm(lla, frame.epsg % 100, frame.epsg // 100 == 327)[:, :2]
    return np.column_stack([easting_northing, lla[:, 2]]), frame.epsg


def save_las(gaussians: StandardGaussians, path: str | Path, georef: dict | None) -> Path:
    """Write ``gaussians`` as ``path`` (LAS 1.4, through a temporary file and a rename); returns ``path``."""
    try:
        import laspy
    except ImportError:
        raise UserError("the LAS export needs laspy: pip install 'momentum_gs[maps]'") from None
    path = Path(path)
    gaussians.require_finite(path)
    points, epsg = las_points(gaussians, georef)
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.full(3, RESOLUTION)
    header.offsets = np.floor(points.min(0)) if len(points) else np.zeros(3)
    if epsg is not None:
        import pyproj

        header.add_crs(pyproj.CRS.from_epsg(epsg))
    cloud = laspy.LasData(header)
    cloud.x, cloud.y, cloud.z = points[:, 0], points[:, 1], points[:, 2]
    colour = (gaussians.sh[:, 0].detach().double().cpu().numpy() * SH_C0 + 0.5).clip(0, 1)
    cloud.red, cloud.green, cloud.blue = np.round(colour * 65535).astype(np.uint16).T
    cloud.intensity = np.round(gaussians.opacities.detach().double().cpu().numpy().clip(0, 1) * 65535).astype(np.uint16)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temporary(path)
        cloud.write(str(tmp))
        tmp.replace(path)
    except OSError as exc:
        raise write_failed(path, exc)
    return path
