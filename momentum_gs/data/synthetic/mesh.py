"""Ground-truth geometry of the synthetic city: a triangle mesh of its ground, boxes and spheres, and which of
its triangles the training cameras see.

Metres, z up, ground at z = 0, as in :mod:`momentum_gs.data.synthetic.city`. The ground is a square grid
under everything (buildings included: the cameras decide what is kept), each box gets its five visible
faces and each sphere a subdivided icosahedron, all with outward (counter-clockwise) triangles no longer
than about one ground cell, so that a wall can be partly seen.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from momentum_gs.data.synthetic.city import BOX_BUILDING, City, ground_albedo
from momentum_gs.data.synthetic.render import NEAR, cast_camera

GROUND_CELL = 2.0  # metres: ground cell side and about the longest triangle edge
COUNTRYSIDE = 50.0  # metres of countryside (fields, tree clumps) counted around the city
TOLERANCE = (1e-3, 0.05)  # a sample is seen when the first hit lies within rel × distance + abs metres of it
CENTROID = np.full((1, 3), 1 / 3)
NEAR_VERTICES = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])  # barycentric sample weights


class CityMesh(NamedTuple):
    """A triangle mesh of the city; a tuple, so ``vertices, faces, prim = mesh`` works.

    Attributes:
        vertices: [V, 3] positions, metres.
        faces: [F, 3] int64 vertex indices, counter-clockwise seen from outside.
        prim: [F] int64 primitive of each face, numbered as ``Hits.prim``: 0 ground, 1..B boxes,
            B+1..B+S spheres.
    """

    vertices: np.ndarray
    faces: np.ndarray
    prim: np.ndarray


def _grid(origin: np.ndarray, u: np.ndarray, v: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """The rectangle ``origin`` + [0, 1] ``u`` + [0, 1] ``v`` cut into cells of side ≤ ``cell``, two triangles
    each: vertices [(nu + 1)(nv + 1), 3] and faces [2 nu nv, 3] whose normal is along u × v."""
    nu, nv = (max(1, int(np.ceil(np.linalg.norm(w) / cell - 1e-9))) for w in (u, v))
    i, j = np.meshgrid(np.arange(nu + 1) / nu, np.arange(nv + 1) / nv, indexing="ij")
    vertices = origin + i[..., None] * u + j[..., None] * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices.reshape(-1, 3), faces


def _box_sides(lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(origin, u, v) of the five visible sides of a box (roof and four walls; no bottom), u × v outward."""
    x, y, z = np.diag(hi - lo)
    return [(np.array([lo[0], lo[1], hi[2]]), x, y), (lo, z, y), (np.array([hi[0], lo[1], lo[2]]), y, z),
            (lo, x, z), (np.array([lo[0], hi[1], lo[2]]), z, x)]


@lru_cache(maxsize=16)
def _icosphere(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere: an icosahedron with each triangle cut into k² (edges split in k), vertices [n, 3]
    projected onto the sphere and shared between triangles, faces [20 k², 3] counter-clockwise from outside."""
    g = (1 + 5**0.5) / 2
    corners = np.array([[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g], [0, -1, -g],
                        [0, 1, -g], [g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]], dtype=np.float64)
    tris = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                     [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                     [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    ij = np.array([(i, j) for i in range(k + 1) for j in range(k + 1 - i)])
    local = {tuple(p): n for n, p in enumerate(ij)}
    up = [(local[i, j], local[i + 1, j], local[i, j + 1]) for i, j in ij if i + j < k]
    down = [(local[i + 1, j], local[i + 1, j + 1], local[i, j + 1]) for i, j in ij if i + j < k - 1]
    a, b, c = (corners[tris[:, n]] for n in range(3))  # [20, 3] each
    points = a[:, None] + (ij[:, :1] / k) * (b - a)[:, None] + (ij[:, 1:] / k) * (c - a)[:, None]
    faces = (np.array(up + down)[None] + len(ij) * np.arange(20)[:, None, None]).reshape(-1, 3)
    points = points.reshape(-1, 3)
    _, first, inverse = np.unique(np.round(points, 9), axis=0, return_index=True, return_inverse=True)
    vertices = points[first]
    return vertices / np.linalg.norm(vertices, axis=1, keepdims=True), inverse.reshape(-1)[faces]


def city_mesh(city: City, ground_half_size: float, ground_cell: float) -> CityMesh:
    """The whole city as triangles, metres: the ground square [-ground_half_size, ground_half_size]² in cells
    of ``ground_cell``, the boxes' roofs and walls cut so that no edge is much longer than ``ground_cell``
    (cell diagonals are √2 longer), and each sphere as an icosphere with edges ≲ ``ground_cell`` (at
    least 80 triangles)."""
    h = ground_half_size
    parts = [(*_grid(np.array([-h, -h, 0.0]), np.array([2 * h, 0, 0]), np.array([0, 2 * h, 0]), ground_cell), 0)]
    for b, (lo, hi) in enumerate(zip(city.box_min, city.box_max)):
        parts += [(*_grid(origin, u, v, ground_cell), b + 1) for origin, u, v in _box_sides(lo, hi)]
    n_boxes = len(city.box_min)
    for s, (centre, radius) in enumerate(zip(city.sphere_center, city.sphere_radius)):
        unit, faces = _icosphere(max(2, int(np.ceil(1.0515 * radius / ground_cell))))  # 1.0515: edge / radius
        parts.append((centre + radius * unit, faces, n_boxes + 1 + s))
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts])
    return CityMesh(np.concatenate([v for v, _, _ in parts]),
                    np.concatenate([f + o for (_, f, _), o in zip(parts, offsets)]).astype(np.int64),
                    np.concatenate([np.full(len(f), p, dtype=np.int64) for _, f, p in parts]))


def ground_half_size(city: City, ground_cell: float = GROUND_CELL) -> float:
    """Half side of the ground square, metres: the city with ``COUNTRYSIDE`` metres around it (the
    ``ground_size`` of scene.json), widened to reach every box and sphere, in whole cells."""
    reach = max(float(city.size.max()) / 2 + COUNTRYSIDE, np.abs(city.box_min[:, :2]).max(initial=0.0),
                np.abs(city.box_max[:, :2]).max(initial=0.0),
                (np.abs(city.sphere_center[:, :2]) + city.sphere_radius[:, None]).max(initial=0.0))
    return float(np.ceil(reach / ground_cell) * ground_cell)


def _samples(city: City, mesh: CityMesh, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points [W, F, 3] (metres) on the true surface at barycentric ``weights`` [W, 3] of every face, and
    their outward normals [W, F, 3]; sphere faces' points are pushed out onto their sphere."""
    tri = mesh.vertices[mesh.faces]  # [F, 3, 3]
    points = np.einsum("wk,fkd->wfd", weights, tri)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.broadcast_to(normal / np.linalg.norm(normal, axis=1, keepdims=True), points.shape).copy()
    sphere = np.flatnonzero(mesh.prim > len(city.box_min))
    s = mesh.prim[sphere] - len(city.box_min) - 1
    radial = points[:, sphere] - city.sphere_center[s]
    normals[:, sphere] = radial / np.linalg.norm(radial, axis=2, keepdims=True)
    points[:, sphere] = city.sphere_center[s] + normals[:, sphere] * city.sphere_radius[s, None]
    return points, normals


def _seen_by(city: City, K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int,
             points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """[N] bool: surface ``points`` [N, 3] (normals [N, 3]) face the camera, project into its image and are
    the first thing the ray through their pixel hits."""
    centre = -world_to_cam[:3, :3].T @ world_to_cam[:3, 3]
    cam = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    front = (cam[:, 2] > NEAR) & (np.einsum("nd,nd->n", normals, points - centre) < 0)
    z = np.where(front, cam[:, 2], 1.0)
    pix = np.column_stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]])
    idx = np.flatnonzero(front & (pix[:, 0] >= 0) & (pix[:, 0] < width) & (pix[:, 1] >= 0) & (pix[:, 1] < height))
    hits, _, _ = cast_camera(city, K, world_to_cam, pix[idx])
    distance = np.linalg.norm(points[idx] - centre, axis=1)
    seen = np.zeros(len(points), dtype=bool)
    seen[idx[np.abs(hits.t - distance) <= TOLERANCE[0] * distance + TOLERANCE[1]]] = True
    return seen


def observed(city: City, mesh: CityMesh, poses: list[np.ndarray], K: np.ndarray, width: int,
             height: int) -> np.ndarray:
    """[F] bool: the faces of ``mesh`` that at least one camera sees (world_to_cam ``poses`` [4, 4] in
    metres, intrinsics ``K`` [3, 3] in pixels, images ``width`` × ``height``).

    A face is seen when its centroid, or else a point near one of its corners, faces a camera, projects into
    its image and is the caster's first hit along its ray (within ``TOLERANCE``). Each camera only tests the
    faces no camera has seen yet.
    """
    seen = np.zeros(len(mesh.faces), dtype=bool)
    for weights in (CENTROID, NEAR_VERTICES):
        points, normals = _samples(city, mesh, weights)
        for world_to_cam in poses:
            todo = np.flatnonzero(~seen)
            if len(todo) == 0:
                break
            hit = _seen_by(city, K, world_to_cam, width, height, points[:, todo].reshape(-1, 3),
                           normals[:, todo].reshape(-1, 3))
            seen[todo[hit.reshape(len(weights), -1).any(axis=0)]] = True
    return seen


def keep_faces(mesh: CityMesh, keep: np.ndarray) -> CityMesh:
    """The faces where ``keep`` [F] is true, with the vertices they use (renumbered in their order)."""
    faces = mesh.faces[keep]
    used = np.unique(faces)
    renumber = np.full(len(mesh.vertices), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    return CityMesh(mesh.vertices[used], renumber[faces], mesh.prim[keep])


def mesh_colors(city: City, mesh: CityMesh) -> np.ndarray:
    """[V, 3] uint8 albedo per vertex: the ground texture (roads, lots, fields) at ground vertices, flat roof
    and facade colours on boxes (no windows), the canopy colour on spheres. Expects each vertex to belong to
    one primitive side, as :func:`city_mesh` builds them."""
    n_boxes, faces, prim = len(city.box_min), mesh.faces, mesh.prim
    tri = mesh.vertices[faces]
    up = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2] > 0
    face = np.zeros((len(faces), 3))
    box = np.flatnonzero((prim >= 1) & (prim <= n_boxes))
    roof = (up[box] & (city.box_kind[prim[box] - 1] == BOX_BUILDING))[:, None]
    face[box] = np.where(roof, city.box_roof[prim[box] - 1], city.box_color[prim[box] - 1])
    sphere = np.flatnonzero(prim > n_boxes)
    face[sphere] = city.sphere_color[prim[sphere] - n_boxes - 1]
    colors = np.zeros((len(mesh.vertices), 3))
    for corner in range(3):
        colors[faces[:, corner]] = face
    ground = np.unique(faces[prim == 0])
    colors[ground] = ground_albedo(city, mesh.vertices[ground, :2])
    return np.round(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)


def ground_truth_mesh(city: City, poses: list[np.ndarray], K: np.ndarray, width: int, height: int,
                      ground_cell: float = GROUND_CELL) -> CityMesh:
    """The part of the city mesh (metres; ground over :func:`ground_half_size`) that the cameras ``poses``
    (world_to_cam [4, 4], metres) with intrinsics ``K`` and ``width`` × ``height`` images see."""
    mesh = city_mesh(city, ground_half_size(city, ground_cell), ground_cell)
    return keep_faces(mesh, observed(city, mesh, poses, K, width, height))
