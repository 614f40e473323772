"""The rules of OGC 3D Tiles 1.1 that a tileset validator checks, read from the specification and applied to a
written tileset folder: what :func:`tileset_problems` returns must be empty.

- ``asset.version`` is "1.0" or "1.1"; the tileset's ``geometricError`` is a number ≥ the root's;
- every tile has one bounding volume of the right length (box 12, region 6, sphere 4), a ``geometricError`` ≥ 0
  and ≤ its parent's, ``refine`` ADD or REPLACE (required at the root), a ``transform`` of 16 finite numbers,
  ``children`` non-empty when present;
- a child's box lies within its parent's box (spatial coherence, which REPLACE refinement relies on);
- content ``uri``s are relative, stay inside the folder and name existing GLB files (magic ``glTF``, version 2)
  whose POSITION bounds (accessor min/max, moved by the node's matrix, turned from glTF's y-up to the tile's
  z-up) lie within the tile's box;
- ``extensionsRequired`` ⊆ ``extensionsUsed``, and every extension an object names is in ``extensionsUsed``.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

Y_UP_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # glTF content in a tile: +y becomes +z
VOLUME_LENGTHS = {"box": 12, "region": 6, "sphere": 4}


def tileset_problems(folder: Path, tolerance: float = 1e-3) -> list[str]:
    """Every rule the tileset at ``folder/tileset.json`` breaks, one line each (empty: none)."""
    folder = Path(folder)
    tileset = json.loads((folder / "tileset.json").read_text())
    problems: list[str] = []
    if tileset.get("asset", {}).get("version") not in ("1.0", "1.1"):
        problems.append(f"asset.version is {tileset.get('asset', {}).get('version')!r}")
    root = tileset.get("root")
    if not isinstance(root, dict):
        return problems + ["no root tile"]
    if not _number(tileset.get("geometricError")) or tileset["geometricError"] < root.get("geometricError", 0):
        problems.append("the tileset's geometricError is missing or below the root's")
    if root.get("refine") not in ("ADD", "REPLACE"):
        problems.append("the root tile has no refine ADD or REPLACE")
    used = set(tileset.get("extensionsUsed", []))
    if not set(tileset.get("extensionsRequired", [])) <= used:
        problems.append("extensionsRequired names extensions missing from extensionsUsed")
    problems += [f"extension {name} is not in extensionsUsed" for name in _extensions_named(tileset) - used]
    _check_tile(root, None, "root", folder.resolve(), tolerance, problems)
    return problems


def tiles(tile: dict):
    """Every tile of a tileset's tree, parents first."""
    yield tile
    for child in tile.get("children", []):
        yield from tiles(child)


def glb_chunks(data: bytes) -> tuple[dict, bytes, list[int]]:
    """The GLB's JSON, its binary chunk and the chunk lengths, read by hand from the GLB layout (an
    AssertionError for anything else)."""
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert (json_type, bin_type) == (0x4E4F534A, 0x004E4942) and 28 + json_length + bin_length == len(data)
    return (json.loads(data[20:20 + json_length]), data[28 + json_length:], [json_length, bin_length])


def _check_tile(tile: dict, parent: dict | None, where: str, folder: Path, tolerance: float, out: list[str]) -> None:
    volume = tile.get("boundingVolume", {})
    kinds = [k for k in VOLUME_LENGTHS if k in volume]
    if len(kinds) != 1 or len(volume[kinds[0]]) != VOLUME_LENGTHS[kinds[0]] or not all(map(_number, volume[kinds[0]])):
        out.append(f"{where}: bounding volume {volume}")
    error = tile.get("geometricError")
    if not _number(error) or error < 0 or (parent is not None and error > parent["geometricError"]):
        out.append(f"{where}: geometricError {error} (parent {parent and parent['geometricError']})")
    if "refine" in tile and tile["refine"] not in ("ADD", "REPLACE"):
        out.append(f"{where}: refine {tile['refine']!r}")
    if "transform" in tile and (len(tile["transform"]) != 16 or not all(map(_number, tile["transform"]))):
        out.append(f"{where}: transform is not 16 finite numbers")
    if "children" in tile and not tile["children"]:
        out.append(f"{where}: an empty children array")
    if parent is not None and "box" in volume and "box" in parent["boundingVolume"] and "transform" not in tile:
        corners = _corners(np.asarray(volume["box"], np.float64))
        if not _inside(corners, np.asarray(parent["boundingVolume"]["box"], np.float64), tolerance):
            out.append(f"{where}: its box leaves its parent's")
    if "content" in tile:
        out += [f"{where}: {p}" for p in _content_problems(tile, folder, tolerance)]
    for i, child in enumerate(tile.get("children", [])):
        _check_tile(child, tile, f"{where}/{i}", folder, tolerance, out)


def _content_problems(tile: dict, folder: Path, tolerance: float) -> list[str]:
    uri = tile["content"].get("uri", "")
    path = (folder / uri).resolve()
    if not uri or "://" in uri or uri.startswith("/") or not path.is_relative_to(folder) or not path.is_file():
        return [f"content uri {uri!r} is not a file inside the tileset's folder"]
    try:
        doc = glb_chunks(path.read_bytes())[0]
    except (AssertionError, struct.error, ValueError):
        return [f"{uri} is not a GLB of glTF 2"]
    problems = []
    for node in doc.get("nodes", []):
        matrix = np.asarray(node.get("matrix", np.eye(4).ravel()), np.float64).reshape(4, 4).T  # column-major
        matrix[:3, 3] += node.get("translation", [0.0, 0.0, 0.0])
        for primitive in doc["meshes"][node["mesh"]]["primitives"]:
            accessor = doc["accessors"][primitive["attributes"]["POSITION"]]
            low, high = np.asarray(accessor["min"], np.float64), np.asarray(accessor["max"], np.float64)
            corners = np.array([[h if (i >> a) & 1 else lo for a, (lo, h) in enumerate(zip(low, high))]
                                for i in range(8)])
            placed = (corners @ matrix[:3, :3].T + matrix[:3, 3]) @ Y_UP_TO_Z_UP.T
            box = np.asarray(tile["boundingVolume"]["box"], np.float64)
            if not _inside(placed, box, tolerance * max(1.0, float(np.abs(box).max()))):
                problems.append(f"{uri}'s positions leave the tile's box")
    return problems


def _corners(box: np.ndarray) -> np.ndarray:
    """[8, 3] the corners of an oriented box (centre, then three half-axes)."""
    centre, axes = box[:3], box[3:].reshape(3, 3)
    signs = np.array([[1 if (i >> a) & 1 else -1 for a in range(3)] for i in range(8)], np.float64)
    return centre + signs @ axes


def _inside(points: np.ndarray, box: np.ndarray, tolerance: float) -> bool:
    """Whether every point lies within an oriented box grown by ``tolerance`` along each of its axes."""
    axes = box[3:].reshape(3, 3)
    out = []
    for axis in axes:
        length = float(np.linalg.norm(axis))
        reach = np.abs((points - box[:3]) @ axis) / max(length, 1e-300)
        out.append(np.all(reach <= length + tolerance))
    return all(out)


def _extensions_named(tree) -> set[str]:
    """The names of every ``extensions`` object's keys in a JSON tree."""
    names: set[str] = set()
    if isinstance(tree, dict):
        names |= set(tree.get("extensions", {}))
        for value in tree.values():
            names |= _extensions_named(value)
    elif isinstance(tree, list):
        for value in tree:
            names |= _extensions_named(value)
    return names


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
