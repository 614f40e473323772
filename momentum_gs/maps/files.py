"""The map's files: ``orthophoto.tif`` (RGB + alpha, uint8), ``dsm.tif`` (float32 heights, nodata
:data:`~momentum_gs.maps.ortho.NODATA`) and ``dsm_spread.tif`` (float32, the DSM's spread over the training photos:
:mod:`momentum_gs.maps.spread`) and ``dsm_support.tif`` (uint16, the photos that see a surface at each height, nodata
:data:`NO_SUPPORT` where the DSM has none) as Cloud-Optimized GeoTIFFs in the map's CRS, written by rasterio (GDAL in
its wheel; no GeoTIFF tag by hand), and ``orthophoto.png``, a preview at most :data:`PREVIEW` pixels a side
(``dsm_spread.png`` the spread's, ``dsm_support.png`` the heights to measure on: :func:`support_picture`).

Without rasterio the two rasters are plain TIFFs written by OpenCV, each with its world file (``.tfw``: the pixel
size and the top-left pixel's centre, which GIS tools read), and the CRS is said for the user to set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.map_frame import MapFrame
from momentum_gs.maps.ortho import NODATA, MapGrid, Rasters
from momentum_gs.maps.spread import support_needed

PREVIEW = 1024  # the preview's longest side, pixels
ORTHOPHOTO, DSM, SPREAD, PREVIEW_NAME = "orthophoto.tif", "dsm.tif", "dsm_spread.tif", "orthophoto.png"
SUPPORT, SPREAD_PREVIEW, SUPPORT_PREVIEW = "dsm_support.tif", "dsm_spread.png", "dsm_support.png"
SUMMARY_NAME = "maps.json"
NAMES = {ORTHOPHOTO, DSM, SPREAD, SUPPORT, PREVIEW_NAME, SPREAD_PREVIEW, SUPPORT_PREVIEW, SUMMARY_NAME,
         "orthophoto.tfw", "dsm.tfw", "dsm_spread.tfw", "dsm_support.tfw"}
UNVOUCHED = (220, 30, 30)  # dsm_support.png's colour for a height fewer photos confirm than the map vouches from
NO_SUPPORT = 65535  # dsm_support.tif where the DSM has no height
# the spread's preview is brightest from this many pixels' worth of spread, the most a height the DSM vouches for
# may have (docs/maps.md, step 7)
SPREAD_FULL_PX = 5.0


def has_rasterio() -> bool:
    """Whether rasterio can be imported (``pip install .[maps]``)."""
    return importlib.util.find_spec("rasterio") is not None


def write_map_files(rasters: Rasters, frame: MapFrame, grid: MapGrid, folder: Path) -> str:
    """Write the orthophoto, the DSM, its spread and support (where measured) and the preview into ``folder``;
    returns how, in one line."""
    _write_preview(rasters.rgba, folder / PREVIEW_NAME)
    heights = [(DSM, rasters.dsm, NODATA)]
    if rasters.spread is not None:
        heights.append((SPREAD, rasters.spread, NODATA))
        _write_preview(spread_picture(rasters.spread, grid.gsd), folder / SPREAD_PREVIEW)
    if rasters.support is not None:
        support = np.where(rasters.dsm == NODATA, NO_SUPPORT, np.minimum(rasters.support, NO_SUPPORT - 1))
        heights.append((SUPPORT, support.astype(np.uint16), NO_SUPPORT))
        needed = support_needed(rasters.support[rasters.dsm != NODATA])
        _write_preview(support_picture(rasters.rgba, rasters.dsm, rasters.support, needed), folder / SUPPORT_PREVIEW)
    if has_rasterio():
        _write_cog(rasters.rgba.transpose(2, 0, 1), folder / ORTHOPHOTO, frame, grid, None)
        for name, band, nodata in heights:
            _write_cog(band[None], folder / name, frame, grid, nodata)
        return "Cloud-Optimized GeoTIFFs (rasterio)"
    bgra = cv2.cvtColor(rasters.rgba, cv2.COLOR_RGBA2BGRA)
    for name, image in [(ORTHOPHOTO, bgra)] + [(name, band) for name, band, _ in heights]:
        if not cv2.imwrite(str(folder / name), image):
            raise OSError(f"OpenCV could not write {folder / name}")
        _write_world_file(folder / Path(name).with_suffix(".tfw"), grid)
    crs = f"EPSG:{frame.epsg}" if frame.epsg else "no CRS"
    return (f"plain TIFFs with world files (.tfw), without their CRS ({crs}: set it in the GIS tool): rasterio is "
            "not installed; pip install 'momentum_gs[maps]' writes Cloud-Optimized GeoTIFFs")


def _write_cog(bands: np.ndarray, path: Path, frame: MapFrame, grid: MapGrid, nodata: float | None) -> None:
    """[B, H, W] ``bands`` as a Cloud-Optimized GeoTIFF (deflate, internal overviews): a GeoTIFF made in memory,
    then copied by GDAL's COG driver."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as gdal_copy

    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=bands.shape[0], dtype=bands.dtype,
                   transform=rasterio.Affine(grid.gsd, 0.0, grid.x0, 0.0, -grid.gsd, grid.y0), nodata=nodata,
                   crs=rasterio.crs.CRS.from_epsg(frame.epsg) if frame.epsg else None)
    with MemoryFile() as memory, memory.open(**profile) as made:
        made.write(bands)
        if bands.shape[0] == 4:
            made.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        gdal_copy(made, str(path), driver="COG", compress="DEFLATE",
                  predictor="3" if bands.dtype == np.float32 else "2")


def spread_picture(spread: np.ndarray, gsd: float) -> np.ndarray:
    """[H, W, 4] uint8 RGBA of the DSM's ``spread`` (the DSM's units, ``gsd`` a pixel's size in them): none dark blue,
    :data:`SPREAD_FULL_PX` pixels' worth or more dark red (OpenCV's turbo colours), transparent where none."""
    measured = spread != NODATA
    level = np.round(np.clip(np.where(measured, spread, 0) / (SPREAD_FULL_PX * gsd), 0, 1) * 255).astype(np.uint8)
    rgb = cv2.applyColorMap(level, cv2.COLORMAP_TURBO)[..., ::-1]
    return np.concatenate([rgb, np.where(measured, 255, 0).astype(np.uint8)[..., None]], axis=-1)


def support_picture(rgba: np.ndarray, dsm: np.ndarray, support: np.ndarray, needed: int) -> np.ndarray:
    """[H, W, 4] uint8 RGBA: where the DSM's heights can be measured on. The orthophoto (``rgba``) in grey where
    the ``support`` is at least ``needed`` photos, :data:`UNVOUCHED` where it is below, transparent where ``dsm`` has
    no height."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2GRAY)
    picture = np.repeat(grey[..., None], 4, axis=-1)
    picture[support < needed] = (*UNVOUCHED, 255)
    picture[..., 3] = np.where(dsm == NODATA, 0, 255)
    return picture


def _write_preview(rgba: np.ndarray, path: Path) -> None:
    """``rgba`` shrunk (area average) to at most :data:`PREVIEW` pixels a side, as an RGBA PNG."""
    height, width = rgba.shape[:2]
    factor = min(1.0, PREVIEW / max(height, width))
    small = rgba if factor == 1.0 else cv2.resize(rgba, (max(1, round(width * factor)), max(1, round(height * factor))),
                                                  interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGBA2BGRA)):
        raise OSError(f"OpenCV could not write {path}")


def _write_world_file(path: Path, grid: MapGrid) -> None:
    """An ESRI world file: pixel width, two rotations, negative pixel height, the top-left pixel's centre."""
    values = [grid.gsd, 0.0, 0.0, -grid.gsd, grid.x0 + 0.5 * grid.gsd, grid.y0 - 0.5 * grid.gsd]
    path.write_text("".join(f"{v:.10f}\n" for v in values))
