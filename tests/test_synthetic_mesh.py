"""Ground-truth mesh of the synthetic city: areas and orientation, what the cameras see, the file `mgs synth`
writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from momentum_gs.data.colmap.folder import read_model
from momentum_gs.data.colmap.model import qvec_to_rotmat
from momentum_gs.data.synthetic import PRESETS, intrinsics, look_at_pose
from momentum_gs.data.synthetic.city import BOX_BUILDING, City, ground_albedo, make_city
from momentum_gs.data.synthetic.mesh import city_mesh, ground_half_size, observed
from momentum_gs.eval.geometry import sample_surface
from momentum_gs.io.mesh import read_mesh


def _city(boxes: list[tuple], spheres: list[tuple] = ()) -> City:
    """A city holding only ``boxes`` [(lo, hi)] and ``spheres`` [(centre, radius)], metres."""
    city = make_city(np.random.default_rng(0), (1, 1))
    lo, hi = (np.array([b[i] for b in boxes], dtype=np.float64).reshape(-1, 3) for i in (0, 1))
    n, s = len(boxes), len(spheres)
    return dataclasses.replace(
        city, box_min=lo, box_max=hi, box_kind=np.full(n, BOX_BUILDING), box_color=np.full((n, 3), 0.5),
        box_roof=np.full((n, 3), 0.3), box_glass=np.zeros((n, 3)), box_window_pitch=np.full(n, 3.0),
        sphere_center=np.array([c for c, _ in spheres], dtype=np.float64).reshape(-1, 3),
        sphere_radius=np.array([r for _, r in spheres], dtype=np.float64), sphere_color=np.full((s, 3), 0.2))


def _triangles(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroids [F, 3], unit normals [F, 3] and areas [F] of the faces."""
    tri = mesh.vertices[mesh.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    return tri.mean(axis=1), cross / area[:, None], area / 2


def test_a_box_on_the_ground_has_its_area_and_faces_outward():
    lo, hi = np.array([-2.0, -1.0, 0.0]), np.array([2.0, 1.0, 3.0])
    mesh = city_mesh(_city([(lo, hi)], [((5.0, 5.0, 4.0), 1.5)]), ground_half_size=10.0, ground_cell=1.0)
    centroid, normal, area = _triangles(mesh)
    ground, box, sphere = mesh.prim == 0, mesh.prim == 1, mesh.prim == 2
    assert area[ground].sum() == pytest.approx(20.0**2)
    assert area[box].sum() == pytest.approx(4 * 2 + 2 * 4 * 3 + 2 * 2 * 3)  # roof and four walls, no floor
    np.testing.assert_allclose(normal[ground], [[0.0, 0.0, 1.0]] * int(ground.sum()))
    outward = np.einsum("fd,fd->f", normal[box], centroid[box] - (lo + hi) / 2)
    assert np.all(outward > 0)
    np.testing.assert_allclose(np.abs(normal[box]).max(axis=1), 1.0)  # axis-aligned sides
    on_sphere = np.linalg.norm(mesh.vertices[np.unique(mesh.faces[sphere])] - [5.0, 5.0, 4.0], axis=1)
    np.testing.assert_allclose(on_sphere, 1.5)
    assert np.all(np.einsum("fd,fd->f", normal[sphere], centroid[sphere] - [5.0, 5.0, 4.0]) > 0)
    tri = mesh.vertices[mesh.faces]
    edges = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2)
    assert edges.max() <= np.sqrt(2) + 1e-9  # a cell's diagonal: walls can be partly seen
    assert mesh.faces.min() == 0 and mesh.faces.max() == len(mesh.vertices) - 1


def test_the_ground_reaches_every_tree():
    city = _city([((-2.0, -1.0, 0.0), (2.0, 1.0, 3.0))], [((0.0, -130.0, 4.0), 2.0)])
    assert ground_half_size(city, 2.0) == 132.0  # past the countryside ring (20 + 50 m), in whole cells
    assert ground_half_size(_city([((-2.0, -1.0, 0.0), (2.0, 1.0, 3.0))]), 3.0) == 72.0


def test_hidden_faces_are_not_observed_and_the_roof_is():
    """Box A (10 m tall) with box B (5 m) against its +x wall and a canopy, seen obliquely from four sides."""
    a_lo, a_hi, b_lo, b_hi = (np.array(v) for v in ([0, 0, 0], [10, 10, 10], [10, 0, 0], [20, 10, 5]))
    city = _city([(a_lo, a_hi), (b_lo, b_hi)], [((-12.0, 5.0, 6.0), 3.0)])
    mesh = city_mesh(city, ground_half_size=30.0, ground_cell=2.0)
    K = np.array([[60.0, 0, 48], [0, 60.0, 36], [0, 0, 1]])
    target = np.array([10.0, 5.0])
    poses = [look_at_pose(np.array([*(target - 45 * np.array([np.cos(yaw), np.sin(yaw)])), 40.0]), yaw, 0.7)
             for yaw in np.arange(4) * np.pi / 2]
    seen = observed(city, mesh, poses, K, 96, 72)
    centroid, normal, _ = _triangles(mesh)
    roof_a = (mesh.prim == 1) & (normal[:, 2] > 0.5)
    against_a = (mesh.prim == 2) & (normal[:, 0] < -0.5)  # B's -x wall lies on A's +x wall
    a_east = (mesh.prim == 1) & (normal[:, 0] > 0.5)
    under_a = (mesh.prim == 0) & np.all((centroid[:, :2] > 0) & (centroid[:, :2] < 10), axis=1)
    assert roof_a.sum() > 0 and seen[roof_a].all()
    assert against_a.sum() > 0 and not seen[against_a].any()
    assert under_a.sum() > 0 and not seen[under_a].any()
    below, above = a_east & (centroid[:, 2] < 4), a_east & (centroid[:, 2] > 6)
    straddle = a_east & (centroid[:, 2] > 4) & (centroid[:, 2] < 5)  # hidden centroid, a corner above B's top
    assert below.sum() > 0 and not seen[below].any() and above.sum() > 0 and seen[above].all()
    assert straddle.sum() > 0 and seen[straddle].all()
    canopy_top = (mesh.prim == 3) & (normal[:, 2] > 0.5)
    canopy_bottom = (mesh.prim == 3) & np.all(mesh.vertices[mesh.faces, 2] < 6.0 - 0.8 * 3.0, axis=1)
    assert canopy_top.sum() > 0 and seen[canopy_top].all()
    assert canopy_bottom.sum() > 0 and not seen[canopy_bottom].any()
    assert seen[mesh.prim == 0].mean() > 0.5  # the open ground around them


def test_synth_writes_the_mesh_in_model_units(tiny_scene: Path):
    """`mgs synth --preset tiny` (through the session's tiny scene): mesh.ply lies in the scene's box, in
    model units, and the held-out views' ray-cast depths land on it."""
    p = PRESETS["tiny"]
    info = json.loads((tiny_scene / "scene.json").read_text())
    vertices, faces, colors = read_mesh(tiny_scene / info["mesh"])
    assert info["mesh"] == "mesh.ply" and len(faces) == info["mesh_faces"] > 1000
    assert colors is not None and len(np.unique(colors, axis=0)) > 10
    city = make_city(np.random.default_rng([0, 0]), p.blocks, max_height=min(35.0, 0.65 * p.altitude))
    half, (lo, hi) = ground_half_size(city) / p.metres_per_unit, np.array(info["city_bounds"])
    assert np.all(np.abs(vertices[:, :2]) <= half + 1e-6) and vertices[:, 2].min() == 0.0
    assert vertices[:, 2].max() <= hi[2] + 1e-6 and np.all(vertices[:, :2].min(0) < lo[:2])
    np.testing.assert_allclose(info["mesh_bounds"], [vertices.min(0), vertices.max(0)], atol=1e-6)
    ground = np.unique(faces[np.all(vertices[faces, 2] == 0.0, axis=1)])  # walls start at z = 0 too
    albedo = np.clip(ground_albedo(city, vertices[ground, :2] * p.metres_per_unit), 0, 1) * 255
    assert np.mean(np.abs(colors[ground] - albedo).max(axis=1) < 1.0) > 0.9  # float32 moves some across edges
    centroid = vertices[faces].mean(axis=1) * p.metres_per_unit
    building = np.flatnonzero(city.box_kind == BOX_BUILDING)
    inside = np.all((centroid[:, None, :2] > city.box_min[building, :2] + 2.0)
                    & (centroid[:, None, :2] < city.box_max[building, :2] - 2.0), axis=2).any(axis=1)
    assert not np.any(inside & (centroid[:, 2] == 0.0))  # no ground under a building: only what is seen
    tree = cKDTree(sample_surface(vertices, faces, 400_000, np.random.default_rng(0)))
    K, distances = intrinsics(p), []
    for image in read_model(tiny_scene / "val" / "sparse" / "0").images.values():
        depth = np.load(tiny_scene / "val" / "depths" / f"{Path(image.name).stem}.npy")
        jj, ii = np.meshgrid(np.arange(p.width) + 0.5, np.arange(p.height) + 0.5)
        rays = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1)
        seen = np.isfinite(depth) & (depth < 12.0)  # the ground beyond the mesh's square is far away
        points = (rays[seen] * depth[seen][:, None] - image.tvec) @ qvec_to_rotmat(image.qvec)
        distances.append(tree.query(points)[0])
    assert np.median(np.concatenate(distances)) < 0.02  # model units: 0.2 m, the sample spacing
