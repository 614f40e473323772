"""Triangle meshes as PLY files: binary little-endian, vertex ``x y z`` (float32) with optional
``red green blue`` (uchar), and face ``vertex_indices`` (a uchar-counted list of int32), the layout that
MeshLab, Open3D and Blender read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from momentum_gs.errors import UserError, one_line
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.foreign import require_counts_fit


def write_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
               comments: list[str] = ()) -> None:
    """Write a triangle mesh to ``path`` through a temporary file and a rename.

    Args:
        vertices: [V, 3] positions (stored as float32, any units).
        faces: [F, 3] vertex indices, counter-clockwise seen from the outside.
        colors: [V, 3] uint8 RGB per vertex, or None for no colour.
    """
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"a mesh needs vertices [V, 3] and faces [F, 3], got {vertices.shape} and {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"face indices outside 0..{len(vertices) - 1}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != vertices.shape or colors.dtype != np.uint8:
            raise ValueError(f"colors must be uint8 [V, 3] like the vertices, got {colors.dtype} {colors.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex[name] = vertices[:, axis]
    for channel, name in enumerate(("red", "green", "blue") if colors is not None else ()):
        vertex[name] = colors[:, channel]
    face = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
    face["vertex_indices"] = faces
    elements = [PlyElement.describe(vertex, "vertex"),
                PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"},
                                    val_types={"vertex_indices": "i4"})]
    buffer = io.BytesIO()
    PlyData(elements, byte_order="<", comments=list(comments)).write(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a triangle-mesh PLY: ``(vertices [V, 3] float64, faces [F, 3] int64, colors [V, 3] uint8 or None)``.

    A missing or unreadable file, missing ``vertex``/``face`` elements, faces that are not triangles or
    indices outside the vertices raise a UserError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh {path} not found")
    require_counts_fit(path, "mesh PLY")
    try:  # triangles read as one block; anything else (quads, a broken file) goes through the general reader
        ply = PlyData.read(str(path), known_list_len={"face": {"vertex_indices": 3}})
    except Exception:
        try:
            ply = PlyData.read(str(path))
        except Exception as exc:
            raise UserError(f"cannot read mesh {path}: {one_line(exc, 100)}")
    names = [element.name for element in ply.elements]
    if "vertex" not in names or "face" not in names:
        raise UserError(f"{path} is not a triangle mesh (PLY elements {names}; needs 'vertex' and 'face')")
    vertex, face = ply["vertex"].data, ply["face"].data
    if not {"x", "y", "z"} <= set(vertex.dtype.names) or "vertex_indices" not in face.dtype.names:
        raise UserError(f"{path} is not a triangle mesh (needs vertex x, y, z and face vertex_indices)")
    with np.errstate(invalid="raise", over="raise"):
        try:
            vertices, faces, colors = _columns(path, vertex, face)
        except FloatingPointError:
            raise UserError(f"{path} has face indices or colours that are not numbers (NaN or inf)")
    return vertices, faces, colors


def _columns(path: Path, vertex: np.ndarray, face: np.ndarray):
    """(vertices, faces, colours) of a mesh PLY's vertex and face data (see :func:`read_mesh`)."""
    vertices = np.stack([vertex[name] for name in "xyz"], axis=1).astype(np.float64)
    faces = _triangles(path, face["vertex_indices"])
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise UserError(f"{path} has face indices outside its {len(vertices)} vertices")
    colors = None
    if {"red", "green", "blue"} <= set(vertex.dtype.names):
        colors = np.stack([vertex[name] for name in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return vertices, faces, colors


def _triangles(path: Path, lists: np.ndarray) -> np.ndarray:
    """[F, 3] int64 from a PLY list column (an object array of index arrays, or [F, 3] already)."""
    if lists.dtype != object:
        faces = np.asarray(lists, dtype=np.int64)
    elif all(len(row) == 3 for row in lists):
        faces = np.array(lists.tolist(), dtype=np.int64).reshape(len(lists), 3)
    else:
        faces = np.zeros((0, 4))
    if faces.shape[1:] != (3,):
        raise UserError(f"{path} has faces that are not triangles (only triangle meshes are read)")
    return faces
