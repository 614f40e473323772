"""``mgs mesh`` block by block: each block fuses and extracts only the cubes of the global grid it owns (those
whose centre lies in its cell), plus the grid points at their corners, so memory grows with the block, not with
the scene."""

from __future__ import annotations

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.estimate import sized
from momentum_gs.mesh.depth_renders import DepthRenders
from momentum_gs.mesh.marching import CUBE_CORNERS, Surface, marching_tetrahedra
from momentum_gs.mesh.scene_grid import SceneGrid
from momentum_gs.mesh.settings import MeshSettings
from momentum_gs.mesh.tsdf import Grid, fuse, sees_box

# The largest grid one block may fuse (points): about 28 bytes each, so 1.8 GB.
MAX_BLOCK_POINTS = 1 << 26
# From this truncation (voxels) on, a tetrahedron (diagonal √3 voxels) crossed by a real surface cannot reach
# both TSDF clamps, so tetrahedra that do are depth edges and are dropped (marching_tetrahedra's drop_jumps).
JUMP_SAFE_TRUNC = 1.75


def block_ranges(partition, grid: SceneGrid) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{block: (first [3], last [3])} inclusive index range of the global grid's cubes each block owns (the
    partition's block of a cube's centre), found one x slab at a time so memory stays one slab."""
    cubes = grid.dims - 1
    if partition is None:
        return {0: (np.zeros(3, np.int64), cubes - 1)}
    ranges: dict[int, list[np.ndarray]] = {}
    for i in range(cubes[0]):
        ids = partition.block_of(grid.cube_centres(np.array([i, 0, 0]), (1, *cubes[1:])))
        ids = ids.reshape(cubes[1], cubes[2])
        for block in np.unique(ids):
            j, k = np.nonzero(ids == block)
            lo, hi = np.array([i, j.min(), k.min()]), np.array([i, j.max(), k.max()])
            if block in ranges:
                lo, hi = np.minimum(ranges[block][0], lo), np.maximum(ranges[block][1], hi)
            ranges[int(block)] = [lo, hi]
    return {block: (lo, hi) for block, (lo, hi) in ranges.items()}


def fuse_blocks(model, cfg, cameras: list, partition, grid: SceneGrid, settings: MeshSettings
                ) -> tuple[dict[int, Surface], list[dict]]:
    """({block: its piece of the surface}, one summary entry per block), block by block, with one progress bar
    over every view fused in every block (a one-block mesh is sized after its first views too)."""
    ranges = block_ranges(partition, grid)
    num_blocks = partition.num_blocks if partition is not None else 1
    renders = DepthRenders(model, cfg.render, settings, model.device)
    grids = {block: _block_grid(block, *ranges[block], grid, renders.device) for block in ranges}
    views = {block: _block_views(block, block_grid, cameras, cfg.blocks.partition)
             for block, (block_grid, _) in grids.items()}
    total_views = sum(map(len, views.values()))
    ticks = sized(range(total_views), total_views, "mesh", "view", "a larger --voxel")
    pieces, per_block = {}, []
    for block in range(num_blocks):
        if block not in ranges:
            per_block.append({"block": block, "views": 0, "vertices": 0, "faces": 0, "note": "outside the region"})
            continue
        block_grid, first = grids[block]
        rendered = (renders.get(cameras[i]) for i, _ in zip(views[block], ticks))  # each view ticks the bar
        piece = _mesh_block(block, block_grid, first, grid, rendered, partition, settings)
        pieces[block] = piece
        per_block.append({"block": block, "views": len(views[block]), "grid_points": int(np.prod(block_grid.shape)),
                          "vertices": len(piece.vertices), "faces": len(piece.faces)})
    for _ in ticks:  # closes the bar
        pass
    return pieces, per_block


def _block_grid(block: int, first: np.ndarray, last: np.ndarray, grid: SceneGrid, device) -> tuple[Grid, np.ndarray]:
    """(the grid of the cubes ``block`` owns, from ``first`` to ``last``, its first cube's index)."""
    voxel = grid.voxel
    shape = tuple(int(n) for n in last - first + 2)  # the owned cubes' corner points
    points = np.prod(shape)
    if points > MAX_BLOCK_POINTS:
        least = voxel * (points / MAX_BLOCK_POINTS) ** (1 / 3)
        raise UserError(f"block {block} would need {points:,} grid points at voxel {voxel:.4g}; "
                        f"give a larger --voxel (at least {least:.3g})")
    origin = torch.as_tensor(grid.origin + voxel * first, dtype=torch.float64, device=device)
    rotation = torch.as_tensor(grid.rotation, dtype=torch.float64, device=device)
    return Grid(origin, voxel, shape, rotation), first


def _block_views(block: int, block_grid: Grid, cameras: list, partition_path: str) -> list[int]:
    """The training views that see ``block``'s grid; one line when none does."""
    corners = _box_corners(block_grid).cpu()
    views = [i for i, cam in enumerate(cameras) if sees_box(cam.K, cam.world_to_cam, cam.width, cam.height, corners)]
    if not views:
        raise UserError(f"block {block}: no training view sees its cell; check the partition "
                        f"({partition_path}) against the scene")
    return views


def _mesh_block(block: int, block_grid: Grid, first: np.ndarray, grid: SceneGrid, views, partition,
                settings: MeshSettings) -> Surface:
    """The surface of the cubes ``block`` owns, fused from ``views`` (depth views, taken one at a time)."""
    origin, voxel = grid.origin, grid.voxel
    tsdf, weight, color = fuse(block_grid, views, settings.trunc_voxels * voxel)
    cubes = tuple(n - 1 for n in block_grid.shape)
    if partition is None:
        owned = np.ones(cubes, bool)
    else:
        owned = partition.block_of(grid.cube_centres(first, cubes)).reshape(cubes) == block
    return marching_tetrahedra(tsdf.cpu().numpy(), weight.cpu().numpy() > 0, owned,
                               np.asarray(origin + voxel * first), voxel, first, grid.dims,
                               color.cpu().numpy().astype(np.float64),
                               drop_jumps=settings.trunc_voxels >= JUMP_SAFE_TRUNC)


def _box_corners(grid: Grid) -> torch.Tensor:
    """[8, 3] world corners of a grid's box."""
    extent = torch.tensor(grid.shape, dtype=torch.float64, device=grid.origin.device) - 1
    bits = torch.as_tensor(CUBE_CORNERS, dtype=torch.float64, device=grid.origin.device)
    return (grid.origin + grid.voxel * bits * extent) @ grid.rotation
