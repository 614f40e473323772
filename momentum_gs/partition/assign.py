"""Assigning SfM points and training cameras to the blocks of a grid; ``make_partition`` puts it together.

Points: every point lies in exactly one cell (``point_block``); a block starts from the points of its cell
grown by ``margin`` × the cell size on every side (contracted units), not from the whole scene.

Cameras: a training camera belongs to a block if its centre lies in the block's cell, or if the block owns
more than ``coverage_threshold`` of the view's content. This is a geometric stand-in for the reference's
"1 − SSIM of a coarse render with and without the block > 0.03–0.05": the image is cut into
``bins`` × ``bins`` tiles, the SfM points (at most ``max_points_per_block`` per block) are projected, each
tile's nearest point is the visible surface there, and a block owns a tile if its own nearest point in the
tile is within ``depth_tolerance`` (relative) of that surface. Coverage = tiles owned / tiles with any point
(at least a tenth of the tiles).
So occluded content does not count, a block filling a third of the view counts 1/3 however many of its
points are seen, and a camera looking away from the block gets 0. No coarse model is needed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.scene import SceneData
from momentum_gs.data.up import camera_arrays, estimate_up
from momentum_gs.partition.partition import DEFAULT_MARGIN, Partition


def assign_points(partition: Partition, points: np.ndarray, margin: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """([P] cell of every point, per block the indices of its cell's points plus those within the margin)."""
    u = partition.contract(points)
    point_block = partition.cell_of_contracted(u)
    block_points = []
    for b in range(partition.num_blocks):
        lo, hi = partition.cell_bounds(b)
        pad = margin * (hi - lo)
        near = np.all((u >= lo - pad) & (u <= hi + pad), axis=1)
        block_points.append(np.flatnonzero(near | (point_block == b)))
    return point_block, block_points


def sample_per_block(point_block: np.ndarray, num_blocks: int, limit: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(indices of at most ``limit`` random points of each block, grouped by block; offsets [n + 1])."""
    rng = np.random.default_rng(seed)
    picked = []
    for b in range(num_blocks):
        idx = np.flatnonzero(point_block == b)
        picked.append(np.sort(rng.choice(idx, limit, replace=False)) if len(idx) > limit else idx)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in picked])]).astype(np.int64)
    return np.concatenate(picked).astype(np.int64), offsets


def _blocks_in_view(pts: torch.Tensor, offsets: np.ndarray, P: torch.Tensor, size: torch.Tensor) -> np.ndarray:
    """[C, n] bool: may block b appear in camera c? False when the box of the block's middle 98 % of sampled
    points lies wholly outside one plane of the view frustum (in front of the camera, inside the image)."""
    n = len(offsets) - 1
    boxes = torch.zeros(n, 2, 3, dtype=pts.dtype, device=pts.device)
    filled = np.diff(offsets) > 0
    q = torch.tensor([0.01, 0.99], dtype=pts.dtype, device=pts.device)
    for b in np.flatnonzero(filled):
        block = pts[offsets[b]:offsets[b + 1]]
        boxes[b] = torch.quantile(block[:: max(1, len(block) // 100_000)], q, dim=0)  # quantile has a size cap
    pick = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], device=pts.device)
    corners = boxes[:, pick, torch.arange(3, device=pts.device)]  # [n, 8, 3]
    u = torch.einsum("cij,nkj->cnki", P[:, :, :3], corners) + P[:, None, None, :, 3]  # homogeneous pixels
    w, h = size[:, 0, None, None], size[:, 1, None, None]
    sides = torch.stack([u[..., 2], u[..., 0], w * u[..., 2] - u[..., 0], u[..., 1], h * u[..., 2] - u[..., 1]])
    outside = (sides < 0).all(-1).any(0)  # all 8 corners beyond one plane
    return (~outside).cpu().numpy() & filled[None]


def view_coverage(cameras: list[Camera], points: np.ndarray, point_block: np.ndarray, num_blocks: int,
                  bins: int = 16, depth_tolerance: float = 0.05, max_points_per_block: int = 10_000,
                  chunk_elements: int = 2_000_000, device: torch.device | str = "cpu") -> np.ndarray:
    """[C, n] float32: the fraction of each view's visible content (tiles with points) owned by each block.

    Args:
        points: [P, 3] world units; point_block: [P] block of each point.
        bins: tiles per image side; depth_tolerance: relative depth slack of a block's point behind the
            visible surface of its tile; max_points_per_block: random points of each block projected;
            chunk_elements: projected points handled at once (memory bound); device: where to compute.

    Cameras are grouped by the blocks whose point boxes meet their view frustum; only those are projected.
    """
    coverage = np.zeros((len(cameras), num_blocks), np.float32)
    sample, offsets = sample_per_block(point_block, num_blocks, max_points_per_block)
    if not cameras or len(sample) == 0:
        return coverage
    centres, R = camera_arrays(cameras)
    origin = centres.mean(0)  # float32 from here on: coordinates relative to the cameras' mean centre
    pts = torch.from_numpy(np.asarray(points, np.float64)[sample] - origin).float().to(device)
    Rt = np.concatenate([R, np.einsum("cij,cj->ci", R, origin - centres)[..., None]], 2)  # after the shift
    K = np.stack([cam.K.double().cpu().numpy() for cam in cameras])
    P = torch.from_numpy(K @ Rt).float().to(device)  # [C, 3, 4] projection matrices
    size = torch.tensor([[cam.width, cam.height] for cam in cameras], dtype=torch.float32, device=device)
    blk = torch.from_numpy(point_block[sample]).to(device)
    patterns, group = np.unique(_blocks_in_view(pts, offsets, P, size), axis=0, return_inverse=True)
    for pattern, cams in zip(patterns, (np.flatnonzero(group.ravel() == g) for g in range(len(patterns)))):
        if not pattern.any():
            continue  # cameras that see no block's points (e.g. looking at the sky)
        rows = np.concatenate([np.arange(offsets[b], offsets[b + 1]) for b in np.flatnonzero(pattern)])
        idx = torch.from_numpy(rows).to(device)
        group_pts, group_blk, step = pts[idx], blk[idx], max(1, chunk_elements // len(rows))
        for start in range(0, len(cams), step):
            chunk = cams[start:start + step]
            sel = torch.from_numpy(chunk).to(device)
            coverage[chunk] = _chunk_coverage(group_pts, group_blk, P[sel], size[sel], num_blocks, bins,
                                              depth_tolerance)
    return coverage


def _chunk_coverage(pts, blk, P, size, n, bins, tol) -> np.ndarray:
    """Coverage [c, n] for a chunk of c cameras with [c, 3, 4] projections (see :func:`view_coverage`)."""
    c, nb = len(P), bins * bins
    u = torch.addmm(P[:, :, 3].reshape(-1, 1), P[:, :, :3].reshape(-1, 3), pts.T).view(c, 3, -1)
    ux, uy, z = u.unbind(1)  # homogeneous pixels [c, S]; z is the depth
    w, h = size[:, 0:1], size[:, 1:2]
    ci, si = ((ux >= 0) & (ux < w * z) & (uy >= 0) & (uy < h * z)).nonzero(as_tuple=True)  # implies z > 0
    depth, far = z[ci, si], torch.finfo(z.dtype).max
    tile = ((uy[ci, si] / depth * (bins / h[ci, 0])).long().clamp(0, bins - 1) * bins
            + (ux[ci, si] / depth * (bins / w[ci, 0])).long().clamp(0, bins - 1))
    front = torch.full((c * nb,), far, device=z.device).scatter_reduce_(0, ci * nb + tile, depth, "amin")
    own = torch.full((c * n * nb,), far, device=z.device)
    own.scatter_reduce_(0, (ci * n + blk[si]) * nb + tile, depth, "amin")
    front, own = front.view(c, 1, nb), own.view(c, n, nb)
    owned = (own < far) & (own <= front * (1.0 + tol))
    occupied = (front < far).sum(-1).clamp(min=max(1, nb // 10))  # a view of a few stray points is not 100 %
    return (owned.sum(-1) / occupied).cpu().numpy()


def assign_cameras(partition: Partition, cameras: list[Camera], points: np.ndarray, point_block: np.ndarray,
                   coverage_threshold: float | None, **coverage_kwargs
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """(per block its camera indices, [C] cell of each camera centre, [C, n] coverage or None).

    ``coverage_threshold`` None assigns by centre only (the reference's in-block rule alone).
    """
    centres, _ = camera_arrays(cameras)
    camera_block = partition.block_of(centres) if len(cameras) else np.zeros(0, np.int64)
    member = camera_block[:, None] == np.arange(partition.num_blocks)[None]
    coverage = None
    if coverage_threshold is not None:
        coverage = view_coverage(cameras, points, point_block, partition.num_blocks, **coverage_kwargs)
        member |= coverage > coverage_threshold
    return [np.flatnonzero(member[:, b]) for b in range(partition.num_blocks)], camera_block, coverage


def make_partition(scene: SceneData, box_min, box_max, block_dim: tuple[int, int, int],
                   margin: float = DEFAULT_MARGIN, coverage_threshold: float | None = 0.1, *, edges=None,
                   rotation: np.ndarray | None = None, up: np.ndarray | None = None, splits: str = "uniform", validate: bool = True,
                   **coverage_kwargs) -> Partition:
    """Partition ``scene`` with a given box ([3] world units, grid frame) and grid.

    Args:
        block_dim: cells (x, y, z); edges: cell edges in contracted space (None: the reference's uniform
            grid); rotation: [3, 3] world → grid frame (None: identity).
        margin: a block starts from its cell's points plus those within ``margin`` × the cell size.
        coverage_threshold: see the module docstring; None (or >= 1) assigns cameras by centre only.
        up: [3] world up, used by the map (None: estimated from the cameras when possible).
        validate: raise a UserError naming a block with no cameras or no points.
        coverage_kwargs: ``bins``, ``depth_tolerance``, ``max_points_per_block`` of :func:`view_coverage`.
    """
    if coverage_threshold is not None and coverage_threshold >= 1.0:
        coverage_threshold = None  # coverage never exceeds 1: the same as the centre-only rule, without projecting
    n = int(np.prod(block_dim))
    empty = [np.zeros(0, np.int64)] * n
    grid = Partition(box_min, box_max, block_dim, np.zeros(0, np.int64), empty, empty, edges=edges,
                     rotation=np.eye(3) if rotation is None else rotation, margin=margin, splits=splits)
    points = np.asarray(scene.points, np.float64).reshape(-1, 3)
    point_block, block_points = assign_points(grid, points, margin)
    block_cameras, camera_block, coverage = assign_cameras(grid, scene.train, points, point_block,
                                                           coverage_threshold, **coverage_kwargs)
    partition = dataclasses.replace(
        grid, point_block=point_block, block_points=block_points, block_cameras=block_cameras,
        up=estimate_up(scene.train, strict=False) if up is None else np.asarray(up, np.float64),
        criterion="centre" if coverage_threshold is None else "centre+coverage",
        coverage_threshold=coverage_threshold, camera_block=camera_block, camera_coverage=coverage,
        camera_names=[cam.name for cam in scene.train])
    if validate:
        partition.validate()
    return partition
