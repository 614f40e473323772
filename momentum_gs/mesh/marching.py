"""Marching tetrahedra: the zero level set of a field sampled on a regular grid, as triangles.

Each cube of the grid is split into six tetrahedra around its diagonal from corner 0 to corner 7 (the
Freudenthal split). Every cube splits alike, so two cubes split their shared face alike and the surface has no
cracks, also between cubes extracted by different blocks. A tetrahedron whose corners change sign gives one
triangle (one corner apart from three) or two (two and two), with vertices on its sign-changing edges at the
linearly interpolated zero. Vertices are named by their edge in the global grid, so that the same vertex found
by two cubes, or two blocks, is one vertex after :func:`stitch`. Triangles face the positive side of the field
(a TSDF's free space: the outside of the surface).

The promise is one vertex per grid edge, not one per position. Where the field is 0 at a grid point, every
sign-changing edge out of it has its zero exactly there; where it is nearly 0 (a fused TSDF of −4e-6), a few
millionths of a voxel from there, which float32 (a PLY file's positions) may round to one point. They stay
separate vertices, joined by triangles of (next to) no area: the mesh is closed without merging them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Corner c of a cube is at offset (c & 1, c >> 1 & 1, c >> 2 & 1) from its lowest corner.
CUBE_CORNERS = np.array([[c & 1, c >> 1 & 1, c >> 2 & 1] for c in range(8)], dtype=np.int64)
# The six tetrahedra: for each order of the three axes, the walk 0 → one axis → two axes → 7. Within each,
# the corners are nested (each one's offset bits contain the previous one's), so every edge joins a lower
# corner to one whose offset is the lower's plus (higher − lower) in bits: 1..7.
TETRAHEDRA = np.array([[0, 1, 3, 7], [0, 1, 5, 7], [0, 2, 3, 7], [0, 2, 6, 7], [0, 4, 5, 7], [0, 4, 6, 7]])


@dataclass
class Surface:
    """Triangles of one piece of a surface, with vertices named by grid edge.

    Attributes:
        keys: [V] int64, per vertex: 8 × (global id of the edge's lower corner) + (corner offset code 1..7).
        vertices: [V, 3] float64 positions (the grid's coordinates). colors: [V, 3] float64, or None.
        faces: [F, 3] int64 indices into ``vertices``.
    """

    keys: np.ndarray
    vertices: np.ndarray
    colors: np.ndarray | None
    faces: np.ndarray


def marching_tetrahedra(values: np.ndarray, observed: np.ndarray, cubes: np.ndarray, origin: np.ndarray,
                        voxel: float, start: np.ndarray, global_dims: np.ndarray, colors: np.ndarray | None = None,
                        drop_jumps: bool = True) -> Surface:
    """Triangles of the zero level set in the chosen cubes of a grid block.

    Args:
        values: [X, Y, Z] field at the grid points (e.g. a TSDF in [-1, 1]).
        observed: [X, Y, Z] bool: where ``values`` means something; cubes with an unobserved corner are skipped.
        cubes: [X-1, Y-1, Z-1] bool, the cubes to extract (the ones this block owns).
        origin: [3] position of grid point (0, 0, 0); voxel: grid spacing.
        start: [3] int, the global index of grid point (0, 0, 0); global_dims: [3] int, the global grid's shape.
        colors: [X, Y, Z, 3] values interpolated like the positions, or None.
        drop_jumps: skip tetrahedra whose values reach both clamps (<= -1 and >= 1): in a TSDF with a
            truncation of a few voxels that is a depth edge (a wall seen from one side), not a surface.
    """
    corner_values = np.stack([values[tuple(slice(o, o + n - 1) for o, n in zip(off, values.shape))]
                              for off in CUBE_CORNERS], axis=-1)  # [X-1, Y-1, Z-1, 8]
    corner_seen = np.stack([observed[tuple(slice(o, o + n - 1) for o, n in zip(off, values.shape))]
                            for off in CUBE_CORNERS], axis=-1).all(-1)
    crossing = (corner_values.min(-1) < 0) & (corner_values.max(-1) >= 0)
    cube_index = np.argwhere(cubes & corner_seen & crossing)  # [C, 3]
    if len(cube_index) == 0:
        return _empty(colors is not None)
    tet_corners = np.broadcast_to(TETRAHEDRA, (len(cube_index), 6, 4)).reshape(-1, 4)  # [T, 4] corner numbers
    tet_cube = np.repeat(cube_index, 6, axis=0)  # [T, 3]
    tet_values = corner_values[tuple(tet_cube.T)][np.arange(len(tet_cube))[:, None], tet_corners]  # [T, 4]
    inside = tet_values < 0
    count = inside.sum(-1)
    keep = (count > 0) & (count < 4)
    if drop_jumps:
        keep &= ~((tet_values.min(-1) <= -1) & (tet_values.max(-1) >= 1))
    tet_corners, tet_cube, tet_values, inside, count = (a[keep] for a in (tet_corners, tet_cube, tet_values,
                                                                         inside, count))
    # Corner order per tetrahedron: the lone corner first (1 or 3 inside), or the two inside first (2 inside).
    lone_inside = count == 1
    order = np.argsort(np.where(lone_inside[:, None], ~inside, inside), axis=-1, kind="stable")
    order = np.where((count == 2)[:, None], np.argsort(~inside, axis=-1, kind="stable"), order)
    single = count != 2
    edges = np.concatenate([  # [E, 2] tet-local corner pairs; triangles of single-triangle tets, then quads
        _pairs(order[single], [(0, 1), (0, 2), (0, 3)]),
        _pairs(order[~single], [(0, 2), (0, 3), (1, 3), (0, 2), (1, 3), (1, 2)]),
    ])
    owner = np.concatenate([np.repeat(np.flatnonzero(single), 3), np.repeat(np.flatnonzero(~single), 6)])
    keys, vertices, vertex_colors = _edge_vertices(edges, owner, tet_corners, tet_cube, tet_values, values, colors,
                                                   origin, voxel, start, global_dims)
    faces = _orient(vertices.reshape(-1, 3, 3), tet_corners[owner[::3]], tet_cube[owner[::3]],
                    inside[owner[::3]], origin, voxel)
    names, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    triangles = inverse.reshape(-1, 3)[np.arange(len(faces))[:, None], faces]
    return Surface(names, vertices[first], None if vertex_colors is None else vertex_colors[first], triangles)


def _pairs(order: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """[T·len(pairs), 2] tet-local corner indices of ``pairs`` of positions in each row of ``order``."""
    return np.stack([order[:, [a for a, _ in pairs]], order[:, [b for _, b in pairs]]], axis=-1).reshape(-1, 2)


def _edge_vertices(edges, owner, tet_corners, tet_cube, tet_values, values, colors, origin, voxel, start,
                   global_dims):
    """Per edge [E, 2] of tetrahedron ``owner`` [E]: its key, the zero crossing [E, 3] and its colour."""
    rows = np.arange(len(edges))
    ends = tet_corners[owner[:, None], edges]  # [E, 2] cube corner numbers
    low, high = ends.min(-1), ends.max(-1)
    f_low = tet_values[owner[:, None], edges][rows, np.argmin(ends, -1)]
    f_high = tet_values[owner[:, None], edges][rows, np.argmax(ends, -1)]
    t = f_low / (f_low - f_high)  # the signs differ, so the denominator is not 0
    low_index = tet_cube[owner] + CUBE_CORNERS[low]  # [E, 3] local grid index
    high_index = tet_cube[owner] + CUBE_CORNERS[high]
    position = origin + voxel * (low_index + t[:, None] * (high_index - low_index))
    g = low_index + start
    keys = ((g[:, 0] * global_dims[1] + g[:, 1]) * global_dims[2] + g[:, 2]) * 8 + (high - low)
    vertex_colors = None
    if colors is not None:
        c_low, c_high = colors[tuple(low_index.T)], colors[tuple(high_index.T)]
        vertex_colors = c_low + t[:, None] * (c_high - c_low)
    return keys, position, vertex_colors


def _orient(triangles, corners, cube, inside, origin, voxel) -> np.ndarray:
    """[F, 3] vertex order per triangle ([F, 3, 3] positions) so that its normal points from the inside
    corners of its tetrahedron towards the outside ones (the field's positive side)."""
    points = origin + voxel * (cube[:, None, :] + CUBE_CORNERS[corners])  # [F, 4, 3]
    outward = ((points * ~inside[..., None]).sum(1) / (~inside).sum(1, keepdims=True)
               - (points * inside[..., None]).sum(1) / inside.sum(1, keepdims=True))
    normal = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    flip = (normal * outward).sum(-1) < 0
    faces = np.tile(np.arange(3), (len(triangles), 1))
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def _empty(with_colors: bool) -> Surface:
    return Surface(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)) if with_colors else None,
                   np.zeros((0, 3), np.int64))


def stitch(pieces: list[Surface]) -> Surface:
    """One surface from pieces extracted on the same global grid: vertices with the same key become one."""
    pieces = [p for p in pieces if len(p.faces)]
    if not pieces:
        return _empty(False)
    keys = np.concatenate([p.keys for p in pieces])
    offsets = np.cumsum([0] + [len(p.keys) for p in pieces[:-1]])
    faces = np.concatenate([p.faces + o for p, o in zip(pieces, offsets)])
    names, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    vertices = np.concatenate([p.vertices for p in pieces])[first]
    colors = None
    if all(p.colors is not None for p in pieces):
        colors = np.concatenate([p.colors for p in pieces])[first]
    return Surface(names, vertices, colors, inverse[faces])
