"""An OGC 3D Tiles 1.1 tileset of a level-of-detail tree of Gaussians: ``tileset.json`` and one GLB per tile.

The file, as the 3D Tiles 1.1 specification lays it out:
- ``asset.version`` "1.1"; a top-level ``geometricError`` (the error of drawing nothing) larger than the
  root's: twice the root's, and at least the diagonal of the root's box;
- each tile: a ``boundingVolume.box`` (centre, then three half-axis vectors) in the tile's frame, its
  ``geometricError`` (world units, 0 for a leaf), ``content.uri`` ``tiles/<name>.glb`` relative to the
  tileset, and its ``children``; the root says ``refine`` "REPLACE" (children inherit it): a tile is drawn
  instead of its children, never with them;
- a georeferenced scene (ENU metres at a WGS84 origin) gives the root a ``transform``: the 4×4 matrix,
  column-major, from ENU metres to Earth-centred Earth-fixed metres, so the tiles stand on the globe. Without a
  georeference there is no transform, and a viewer places the tileset at the Earth's centre unless told where.
The GLB contents are y-up glTF turned so that the loader's y-up → z-up turn puts them back in the scene's
z-up frame (``export.tiles.gltf``); boxes and transform are in that z-up frame.

The tileset declares the glTF extensions its content uses with the ``3DTILES_content_gltf`` extension, which is
where CesiumJS looks for a tileset's glTF extensions. Float32 tiles only *use* ``KHR_gaussian_splatting`` (a
viewer without it draws the Gaussians as points), so it is listed in ``extensionsUsed`` alone. SPZ tiles
(``KHR_gaussian_splatting_compression_spz_2``) cannot be read without either extension, so both are listed in
``extensionsUsed`` and ``extensionsRequired``; CesiumJS 1.145 sends a tileset's glTF tiles to its splat renderer
only when both are in ``extensionsRequired`` there (otherwise it loads them as ordinary models).

The GLBs are written as the tree is walked, and ``tileset.json`` last, each atomically: a reader never finds a
tileset that names a tile not yet written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from momentum_gs.data.georef import enu_axes, origin_of, wgs84_to_ecef
from momentum_gs.export.tiles.gltf import COMPRESSION, EXTENSION, save_glb
from momentum_gs.export.tiles.lod import Tile
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.model.standard import StandardGaussians

TILESET_NAME, TILES_FOLDER = "tileset.json", "tiles"
CONTENT_GLTF = "3DTILES_content_gltf"


def enu_to_ecef_matrix(origin_lla) -> list[float]:
    """The 16 numbers, column-major (a 3D Tiles ``transform``), of the matrix taking East-North-Up metres at
    ``origin_lla`` (latitude°, longitude°, altitude m on WGS84) to Earth-centred Earth-fixed metres: its
    columns are the east, north and up unit vectors and the origin, in ECEF."""
    origin = np.asarray(origin_lla, np.float64).reshape(3)
    matrix = np.eye(4)
    matrix[:3, :3] = enu_axes(origin).T
    matrix[:3, 3] = wgs84_to_ecef(origin[None])[0]
    return matrix.T.reshape(-1).tolist()


def box_volume(box: np.ndarray) -> list[float]:
    """The 3D Tiles oriented box (12 numbers: centre, then the x, y and z half-axis vectors) of the axis-aligned
    ``box`` [2, 3] (min and max corners)."""
    lo, hi = np.asarray(box, np.float64).reshape(2, 3)
    half = np.diag((hi - lo) / 2)
    return ((lo + hi) / 2).tolist() + half.reshape(-1).tolist()


def gltf_extensions(compression: str) -> dict:
    """The ``3DTILES_content_gltf`` object of tiles of ``compression`` ("none" or "spz")."""
    if compression == "spz":
        return {"extensionsUsed": [EXTENSION, COMPRESSION], "extensionsRequired": [EXTENSION, COMPRESSION]}
    return {"extensionsUsed": [EXTENSION]}


def tile_json(tile: Tile, out: Path, content: Callable[[StandardGaussians, Path], object] | None) -> dict:
    """The JSON of ``tile`` and its descendants, writing each one's content under ``out/tiles`` on the way (a
    tile whose ``gaussians`` is None had its content written already)."""
    entry = {"boundingVolume": {"box": box_volume(tile.box)}, "geometricError": float(tile.geometric_error)}
    if tile.gaussians is None or len(tile.gaussians):
        uri = f"{TILES_FOLDER}/{tile.name}.glb"
        if tile.gaussians is not None and content is not None:
            content(tile.gaussians, out / uri)
        entry["content"] = {"uri": uri}
    if tile.children:
        entry["children"] = [tile_json(child, out, content) for child in tile.children]
    return entry


def write_tileset(root: Tile, out: str | Path, georef: dict | None,
                  content: Callable[[StandardGaussians, Path], object] | None = save_glb,
                  compression: str = "none") -> Path:
    """Write the tree under ``root`` as a 3D Tiles 1.1 tileset in the folder ``out``: ``tiles/<name>.glb``
    for every tile with content (written by ``content(gaussians, path)``; None: written already), then
    ``tileset.json``, which declares the glTF extensions of tiles of ``compression`` ("none" or "spz", as
    ``content`` writes them); placed on the globe when ``georef`` (``data.georef.read_georef``'s dictionary) is
    given. Returns the tileset path."""
    out = Path(out)
    root_json = {**tile_json(root, out, content), "refine": "REPLACE"}
    if georef is not None:
        root_json["transform"] = enu_to_ecef_matrix(origin_of(georef))
    diagonal = float(np.linalg.norm(np.subtract(*np.asarray(root.box, np.float64).reshape(2, 3))))
    tileset = {
        "asset": {"version": "1.1", "generator": "momentum_gs"},
        "extensionsUsed": [CONTENT_GLTF],
        "extensions": {CONTENT_GLTF: gltf_extensions(compression)},
        "geometricError": max(2 * float(root.geometric_error), diagonal, 1e-6),
        "root": root_json,
    }
    path = out / TILESET_NAME
    atomic_write_text(path, json.dumps(tileset, indent=1) + "\n")
    return path
