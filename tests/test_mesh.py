"""Mesh extraction: marching tetrahedra on analytic fields, seamless stitching of blocks, TSDF fusion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from momentum_gs.mesh.marching import marching_tetrahedra, stitch
from momentum_gs.mesh.tsdf import DepthView, Grid, fuse


def _sphere_field(n: int = 24, radius: float = 0.7, voxel: float = 0.1):
    """Signed distance to a sphere at the centre of an n³ grid (positive outside), and the grid's origin."""
    origin = np.full(3, -0.5 * (n - 1) * voxel)
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1)
    points = origin + voxel * idx
    return np.linalg.norm(points, axis=-1) - radius, origin, voxel


def _edge_counts(faces: np.ndarray) -> np.ndarray:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def _extract(values, origin, voxel, cubes=None, start=(0, 0, 0), dims=None, colors=None):
    shape = np.array(values.shape)
    cubes = np.ones(tuple(shape - 1), bool) if cubes is None else cubes
    return marching_tetrahedra(values, np.ones(values.shape, bool), cubes, origin, voxel, np.array(start),
                               shape if dims is None else dims, colors, drop_jumps=False)


def test_sphere_is_closed_on_the_surface_and_faces_outwards():
    values, origin, voxel = _sphere_field()
    surface = _extract(values, origin, voxel)
    radii = np.linalg.norm(surface.vertices, axis=1)
    assert np.abs(radii - 0.7).max() < 0.02  # linear interpolation of a smooth field: close to the sphere
    assert (_edge_counts(surface.faces) == 2).all()  # watertight: every edge between exactly two triangles
    tri = surface.vertices[surface.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normals * tri.mean(1)).sum(1) > 0).all()  # outwards, towards the positive side
    area = 0.5 * np.linalg.norm(normals, axis=1).sum()
    assert area == pytest.approx(4 * math.pi * 0.7**2, rel=0.02)


def test_blocks_stitch_into_the_same_mesh_as_one_extraction():
    """Three blocks own slabs of cubes; each extracts from its own sub-grid (with its corner points), and the
    stitched result is the single extraction: same vertices, same triangles, still watertight."""
    values, origin, voxel = _sphere_field(n=20)
    whole = _extract(values, origin, voxel)
    dims = np.array(values.shape)
    pieces = []
    for lo, hi in ((0, 7), (7, 12), (12, 19)):  # cube ranges along x
        sub = values[lo:hi + 1]
        pieces.append(_extract(sub, origin + voxel * np.array([lo, 0, 0]), voxel, start=(lo, 0, 0), dims=dims))
    stitched = stitch(pieces)
    assert len(stitched.vertices) == len(whole.vertices) and len(stitched.faces) == len(whole.faces)
    np.testing.assert_array_equal(stitched.keys, whole.keys)
    np.testing.assert_allclose(stitched.vertices, whole.vertices, atol=1e-12)
    canon = lambda faces: np.unique(np.sort(faces, axis=1), axis=0)  # noqa: E731
    np.testing.assert_array_equal(canon(stitched.faces), canon(whole.faces))
    assert (_edge_counts(stitched.faces) == 2).all()


def test_a_zero_at_grid_points_gives_a_vertex_per_edge_not_per_position():
    """A field that is exactly 0 at grid points (a cube's faces, in L∞ distance) puts the vertices of every
    sign-changing edge out of such a point at that point: several vertices at one position, one per grid edge,
    and still a closed surface, stitched from blocks like the single extraction (marching.py's promise)."""
    n = 11
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1)
    values = np.abs(idx - n // 2).max(-1) - 3.0  # 0 on the faces of the cube of half-side 3, negative inside
    origin, voxel = np.zeros(3), 1.0
    whole = _extract(values, origin, voxel)
    assert len(np.unique(whole.keys)) == len(whole.keys)
    assert len(np.unique(whole.vertices, axis=0)) < len(whole.vertices)  # positions repeat
    assert (np.abs(whole.vertices - n // 2).max(-1) == 3).all()  # all on grid points of the cube's faces
    assert (_edge_counts(whole.faces) == 2).all()  # closed, through the triangles of no area
    pieces = [_extract(values[lo:hi + 1], origin + voxel * np.array([lo, 0, 0]), voxel, start=(lo, 0, 0),
                       dims=np.array(values.shape)) for lo, hi in ((0, 5), (5, 10))]  # split through the cube
    stitched = stitch(pieces)
    np.testing.assert_array_equal(stitched.keys, whole.keys)
    canon = lambda faces: np.unique(np.sort(faces, axis=1), axis=0)  # noqa: E731
    np.testing.assert_array_equal(canon(stitched.faces), canon(whole.faces))


def test_unobserved_corners_chosen_cubes_and_colours():
    values, origin, voxel = _sphere_field(n=16)
    colors = np.zeros(values.shape + (3,))
    colors[..., 0] = 1.0
    observed = np.ones(values.shape, bool)
    observed[:8] = False  # half the grid never seen
    cubes = np.ones(tuple(np.array(values.shape) - 1), bool)
    half = marching_tetrahedra(values, observed, cubes, origin, voxel, np.zeros(3, np.int64),
                               np.array(values.shape), colors)
    assert len(half.faces) > 0 and (half.vertices[:, 0] >= origin[0] + 8 * voxel - 1e-12).all()
    np.testing.assert_allclose(half.colors, np.tile([1.0, 0, 0], (len(half.vertices), 1)))
    none = marching_tetrahedra(values, np.ones(values.shape, bool), np.zeros_like(cubes), origin, voxel,
                               np.zeros(3, np.int64), np.array(values.shape))
    assert len(none.faces) == 0 and len(stitch([none]).faces) == 0


def test_depth_edges_are_dropped():
    """A field jumping from +1 to −1 between neighbours (clamped TSDF at a depth edge) gives no triangles
    when jumps are dropped, but a smooth crossing does."""
    values = np.ones((4, 4, 4))
    values[2:] = -1.0
    args = (np.ones(values.shape, bool), np.ones((3, 3, 3), bool), np.zeros(3), 1.0, np.zeros(3, np.int64),
            np.array(values.shape))
    assert len(marching_tetrahedra(values, *args).faces) == 0
    values[2:] = -0.5
    assert len(marching_tetrahedra(values, *args).faces) > 0


def test_fusing_depth_maps_of_a_plane():
    """Two cameras looking down at the plane z = 0 from z = 3: the fused TSDF is the signed height above the
    plane (within the truncation), and its zero level set is the plane."""
    K = torch.tensor([[40.0, 0, 32], [0, 40.0, 24], [0, 0, 1]], dtype=torch.float64)
    views = []
    for x in (-0.5, 0.5):
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=torch.float64)  # looking down
        w2c[:3, 3] = -w2c[:3, :3] @ torch.tensor([x, 0.0, 3.0], dtype=torch.float64)
        views.append(DepthView(torch.full((48, 64), 3.0, dtype=torch.float64), torch.full((48, 64, 3), 0.5),
                               K, w2c))
    voxel, trunc = 0.05, 0.2
    grid = Grid(torch.tensor([-0.5, -0.5, -0.325], dtype=torch.float64), voxel, (21, 21, 13),
                torch.eye(3, dtype=torch.float64))
    tsdf, weight, color = fuse(grid, views, trunc)
    z = -0.325 + voxel * torch.arange(13, dtype=torch.float64)
    expected = (z / trunc).clamp(max=1.0).float()
    seen = z > -trunc
    assert (weight[10, 10, seen] == 2).all() and (weight[10, 10, ~seen] == 0).all()
    torch.testing.assert_close(tsdf[10, 10, seen], expected[seen], atol=1e-6, rtol=0)
    near = z.abs() < trunc
    torch.testing.assert_close(color[10, 10, near], torch.full((int(near.sum()), 3), 0.5))
    surface = marching_tetrahedra(tsdf.numpy(), weight.numpy() > 0, np.ones((20, 20, 12), bool),
                                  np.array([-0.5, -0.5, -0.325]), voxel, np.zeros(3, np.int64), np.array([21, 21, 13]))
    assert len(surface.faces) > 0 and np.abs(surface.vertices[:, 2]).max() < 1e-6
