"""Triangle-mesh PLY files: round trip, the layout other tools read, one-line errors on bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from momentum_gs.errors import UserError
from momentum_gs.io.mesh import read_mesh, write_mesh


def _tetrahedron() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
    return vertices + [0.25, -1.5, 3.0], faces, colors


@pytest.mark.parametrize("with_colors", [True, False])
def test_round_trip(tmp_path, with_colors):
    vertices, faces, colors = _tetrahedron()
    write_mesh(tmp_path / "m.ply", vertices, faces, colors if with_colors else None)
    v, f, c = read_mesh(tmp_path / "m.ply")
    assert v.dtype == np.float64 and f.dtype == np.int64
    np.testing.assert_allclose(v, vertices, atol=1e-6)  # stored as float32
    np.testing.assert_array_equal(f, faces)
    if with_colors:
        assert c.dtype == np.uint8
        np.testing.assert_array_equal(c, colors)
    else:
        assert c is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.ply"]  # no temporary file left


def test_plyfile_reads_the_standard_layout(tmp_path):
    vertices, faces, colors = _tetrahedron()
    write_mesh(tmp_path / "m.ply", vertices, faces, colors)
    ply = PlyData.read(str(tmp_path / "m.ply"))
    assert ply.byte_order == "<" and not ply.text
    assert ply["face"].count == 4 and ply["vertex"].count == 4
    assert [(p.name, p.val_dtype) for p in ply["vertex"].properties][:3] == [("x", "f4"), ("y", "f4"), ("z", "f4")]
    indices = ply["face"].properties[0]
    assert (indices.name, indices.len_dtype, indices.val_dtype) == ("vertex_indices", "u1", "i4")
    np.testing.assert_array_equal(np.stack(ply["face"]["vertex_indices"]), faces)


def test_an_empty_mesh_round_trips(tmp_path):
    write_mesh(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    v, f, c = read_mesh(tmp_path / "e.ply")
    assert v.shape == (0, 3) and f.shape == (0, 3) and c is None


def _write_ply(path, vertex_count: int, face_lists: list[list[int]] | None) -> None:
    vertex = np.zeros(vertex_count, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    elements = [PlyElement.describe(vertex, "vertex")]
    if face_lists is not None:
        face = np.empty(len(face_lists), dtype=[("vertex_indices", "O")])
        face["vertex_indices"] = [np.array(row, dtype=np.int32) for row in face_lists]
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements).write(str(path))


@pytest.mark.parametrize("how, fragment", [
    ("missing", "not found"),
    ("garbage", "its header announces 10 vertex"),  # before plyfile would read past the end
    ("points_only", "needs 'vertex' and 'face'"),
    ("quads", "not triangles"),
    ("bad_index", "outside its 4 vertices"),
])
def test_bad_files_are_one_line_user_errors(tmp_path, how, fragment):
    path = tmp_path / f"{how}.ply"
    if how == "garbage":
        path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\0")
    elif how == "points_only":
        _write_ply(path, 4, None)
    elif how == "quads":
        _write_ply(path, 4, [[0, 1, 2], [0, 1, 2, 3]])
    elif how == "bad_index":
        _write_ply(path, 4, [[0, 1, 4]])
    with pytest.raises(UserError, match=fragment) as error:
        read_mesh(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    vertices, faces, _ = _tetrahedron()
    target = tmp_path / "m.ply"
    write_mesh(target, vertices, faces)
    before = target.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(UserError, match=r"cannot write .*m.ply \(No space left on device\)"):
        write_mesh(target, vertices[::-1], faces)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]
