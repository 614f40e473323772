"""The automatic partition: a box and a grid for any number of blocks, with balanced camera counts.

The paper leaves "how to divide any scene into any number of blocks" as future work. Here:
1. up: given, read from the scene, or estimated from the cameras (``frame.estimate_up``); the grid frame
   is the world frame unless up is more than ``snap_deg`` away from every world axis (then rotated).
2. box (grid frame): horizontally the 1st–99th percentiles of the camera centres, padded by 5 %
   (the points' 2nd–98th percentiles replace an axis the cameras barely span, e.g. a single street);
   vertically everything from the points' 2nd percentile to the highest camera, so that no camera sits
   above the box, where the ∞-norm contraction would pull it towards the middle.
3. grid: one cell vertically; n = a·b cells in the ground plane, the factor pair whose cells are the most
   square in world units.
4. cuts (``balance=True``): not uniform. The first ground axis (in x, y, z order) is cut at the quantiles
   of the contracted camera centres; then each column is cut along the second ground axis at the quantiles
   of its own cameras. Cuts fall half-way between neighbouring cameras. The cells still tile [0, 1]³ and
   are stored as explicit edges (``Partition.edges``) that ``block_of`` honours. ``balance=False`` keeps
   the reference's uniform cells.
"""

from __future__ import annotations

import numpy as np

from momentum_gs.data.scene import SceneData
from momentum_gs.errors import UserError
from momentum_gs.partition.assign import make_partition
from momentum_gs.partition.contraction import contract
from momentum_gs.data.up import camera_arrays, estimate_up
from momentum_gs.partition.frame import up_rotation
from momentum_gs.partition.partition import DEFAULT_MARGIN, Partition, uniform_edges


def auto_box(centres: np.ndarray, points: np.ndarray, vertical: int, pad: float = 0.05
             ) -> tuple[np.ndarray, np.ndarray]:
    """([3] min, [3] max) box from [C, 3] camera centres and [P, 3] points, both in the grid frame."""
    if len(points) == 0 and len(centres) == 0:
        raise UserError("cannot choose a partition box: the scene has no cameras and no points")
    points = points if len(points) else centres
    lo, hi = np.percentile(centres, 1, axis=0), np.percentile(centres, 99, axis=0)
    plo, phi = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
    ground = [a for a in range(3) if a != vertical]
    widest = max(hi[a] - lo[a] for a in ground)
    for a in ground:
        if hi[a] - lo[a] < 0.1 * widest or widest <= 0:
            lo[a], hi[a] = min(lo[a], plo[a]), max(hi[a], phi[a])
    lo[vertical] = min(plo[vertical], centres[:, vertical].min())
    hi[vertical] = max(phi[vertical], centres[:, vertical].max())
    size = hi - lo
    if size.max() <= 0:
        raise UserError("cannot choose a partition box: all cameras and points are at one place")
    grow = np.maximum(pad * size, 0.5 * np.maximum(0.02 * size.max() - size, 0.0))  # no axis thinner than 2 %
    return lo - grow, hi + grow


def choose_grid(size: np.ndarray, vertical: int, num_blocks: int) -> tuple[int, int, int]:
    """Cells (x, y, z): 1 vertically, a·b = ``num_blocks`` on the ground with the squarest cells for a box
    of ``size`` [3] world units."""
    h1, h2 = [a for a in range(3) if a != vertical]
    best = min((abs(np.log((size[h1] / a) / (size[h2] / (num_blocks // a)))), a)
               for a in range(1, num_blocks + 1) if num_blocks % a == 0)
    dims = [1, 1, 1]
    dims[h1], dims[h2] = best[1], num_blocks // best[1]
    return tuple(dims)


def quantile_cuts(values: np.ndarray, cells: int) -> np.ndarray:
    """[cells + 1] edges from 0 to 1 splitting ``values`` (contracted coordinates) into ``cells`` groups of
    nearly equal size; every cut lies half-way between two distinct values."""
    if cells == 1:
        return np.array([0.0, 1.0])
    v = np.sort(np.asarray(values, np.float64))
    gaps = np.flatnonzero(v[1:] > v[:-1]) + 1  # cut before v[i] for i in gaps
    if len(gaps) < cells - 1:
        raise UserError(f"cannot split {len(v)} cameras into {cells} blocks along one axis (only "
                        f"{len(gaps) + 1} distinct positions); use fewer blocks")
    cuts, prev = [], 0
    for k in range(1, cells):
        allowed = gaps[gaps > prev]
        allowed = allowed[: len(allowed) - (cells - 1 - k)]  # leave room for the cuts still to come
        i = int(allowed[np.argmin(np.abs(allowed - k * len(v) / cells))])
        cuts.append(0.5 * (v[i - 1] + v[i]))
        prev = i
    return np.array([0.0, *cuts, 1.0])


def balanced_edges(u: np.ndarray, block_dim: tuple[int, int, int], vertical: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell edges (``Partition.edges`` layout) putting nearly equal numbers of the [C, 3] contracted camera
    centres ``u`` in every cell; the vertical axis keeps uniform cuts."""
    ex, ey, ez = (e.copy() for e in uniform_edges(block_dim))
    dx, dy, _ = block_dim
    if vertical != 0:
        ex = quantile_cuts(u[:, 0], dx)
    ix = (u[:, 0:1] >= ex[None, 1:-1]).sum(1)
    for i in range(dx):
        column = u[ix == i]
        if vertical != 1:
            ey[i] = quantile_cuts(column[:, 1], dy)
        iy = (column[:, 1:2] >= ey[i][None, 1:-1]).sum(1)
        for j in range(dy):
            if vertical != 2:
                ez[i, j] = quantile_cuts(column[iy == j, 2], block_dim[2])
    return ex, ey, ez


def auto_partition(scene: SceneData, num_blocks: int | None = None, up: np.ndarray | None = None, *,
                   box: tuple | None = None, grid: tuple[int, int, int] | None = None, balance: bool = True,
                   margin: float = DEFAULT_MARGIN, coverage_threshold: float | None = 0.1, snap_deg: float = 10.0,
                   validate: bool = True, **coverage_kwargs) -> Partition:
    """Partition ``scene`` into ``num_blocks`` blocks with an automatic box and grid (module docstring).

    Args:
        up: [3] world up (None: estimated from the training cameras).
        box: ((min xyz), (max xyz)) world units to use instead of the automatic box (then no rotation).
        grid: cells (x, y, z) instead of the automatic ground-plane grid (``num_blocks`` may then be None).
        balance: cut at camera quantiles (True) or uniformly in contracted space (False, the reference).
        margin, coverage_threshold, validate, coverage_kwargs: as in :func:`make_partition`.
    """
    if num_blocks is None and grid is None:
        raise UserError("give the number of blocks (--blocks N) or the grid (--block-dim X Y Z)")
    if num_blocks is not None and num_blocks < 1:
        raise UserError(f"the number of blocks must be at least 1, got {num_blocks}")
    if grid is not None and (len(grid) != 3 or min(grid) < 1):
        raise UserError(f"block_dim must be three positive integers, got {tuple(grid)}")
    if grid is not None and num_blocks is not None and int(np.prod(grid)) != num_blocks:
        raise UserError(f"block_dim {tuple(grid)} makes {int(np.prod(grid))} blocks, not {num_blocks}")
    if box is not None and not np.all(np.asarray(box[1], float) > np.asarray(box[0], float)):
        raise UserError(f"the box's max corner must exceed its min corner on every axis, got {box}")
    if up is not None and not np.linalg.norm(up) > 0:
        raise UserError(f"the up direction must be a non-zero vector, got {up}")
    centres, _ = camera_arrays(scene.train)
    if len(centres) == 0:
        raise UserError("the scene has no training cameras to partition")
    up = estimate_up(scene.train) if up is None else np.asarray(up, np.float64) / np.linalg.norm(up)
    if box is None:
        rotation, vertical = up_rotation(up, snap_deg)
        points = np.asarray(scene.points, np.float64).reshape(-1, 3) @ rotation.T
        box_min, box_max = auto_box(centres @ rotation.T, points, vertical)
    else:
        rotation, vertical = np.eye(3), int(np.argmax(np.abs(up)))
        box_min, box_max = (np.asarray(b, np.float64) for b in box)
    grid = tuple(grid) if grid is not None else choose_grid(box_max - box_min, vertical, num_blocks)
    edges = None
    if balance:
        edges = balanced_edges(contract(centres @ rotation.T, box_min, box_max), grid, vertical)
    return make_partition(scene, box_min, box_max, grid, margin, coverage_threshold, edges=edges,
                          rotation=rotation, up=up, splits="balanced" if balance else "uniform",
                          validate=validate, **coverage_kwargs)
