"""The config's lengths against the scene they train: the bounds that need the scene's size and coordinates,
checked once its points and cameras are read, before training starts.

:func:`check_scene_scale` refuses, in one line with the real reason, an anchor grid coarser than the scene (it
would hold one or a few anchors), a grid or a growing level finer than 64-bit cell indices can number at the
scene's coordinates, and a near plane beyond every point the cameras could see (every anchor culled). An
automatic voxel size (``model.voxel_size=0``) is known once each block's points have given it: the training
checks it then with :func:`check_anchor_grid`, before anything trains.
"""

from __future__ import annotations

import math

import numpy as np

from momentum_gs.config.tree import Config
from momentum_gs.errors import UserError

# Anchors and grown cells are numbered round(position / cell) in int64; 2^62 leaves a factor 2 for rounding.
MAX_CELL_INDEX = 2.0**62


def check_scene_scale(cfg: Config, points: np.ndarray, camera_centres: np.ndarray) -> None:
    """Raise a UserError when ``cfg``'s world-unit lengths cannot work on this scene.

    Args:
        cfg: the run's config (``model.voxel_size``, the growing levels, ``render.near``).
        points: [P, 3] SfM points, world units.
        camera_centres: [C, 3] training camera centres, world units.
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) == 0:
        return
    if cfg.model.voxel_size > 0:  # automatic (0): checked by check_anchor_grid once the points have given it
        check_anchor_grid(cfg, cfg.model.voxel_size, points)
    _check_near(cfg.render.near, points, np.asarray(camera_centres, np.float64).reshape(-1, 3))


def check_anchor_grid(cfg: Config, voxel: float, points: np.ndarray, block: int | None = None) -> None:
    """Raise a UserError when the anchor grid of spacing ``voxel`` (world units) cannot work on ``points`` ([P, 3]
    world units): as coarse as their extent, or (growing's finest cells too) too fine to number in 64 bits at
    their coordinates. ``block``: the block whose points gave ``voxel`` with ``model.voxel_size=0`` (automatic),
    None for the config's own voxel size."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) == 0:
        return
    if block is None:
        voxel_is, extent_of, hint = (f"config key 'model.voxel_size' is {voxel:.4g}", "the scene's",
                                     "give a value well below it (0: about the points' spacing)")
    else:
        voxel_is, extent_of, hint = (f"the automatic voxel size of block {block} (model.voxel_size=0: its points' "
                                     f"spacing) is {voxel:.4g}", f"block {block}'s", "set model.voxel_size well below it")
    extent = float((points.max(axis=0) - points.min(axis=0)).max())
    if extent > 0 and voxel >= extent:
        raise UserError(f"{voxel_is}, at least {extent_of} extent ({extent:.4g} world units, the longest side of the "
                        f"SfM points' box): the anchor grid would hold them in one or a few anchors; {hint}")
    reach = float(np.abs(points).max())
    if reach / voxel >= MAX_CELL_INDEX:
        raise UserError(f"{voxel_is}: at the scene's coordinates (up to {reach:.4g} world units) its cells cannot be "
                        f"numbered in 64 bits; give at least {reach / MAX_CELL_INDEX:.3g}")
    _check_growing(cfg, voxel, reach)


def _check_growing(cfg: Config, voxel: float, reach: float) -> None:
    """Growing's finest cell against the points' coordinates (up to ``reach`` world units)."""
    strategy = cfg.strategy
    if strategy.levels > 1 and strategy.update_until > 0:
        # log2 of the finest growing cell, voxel x init_factor / hierarchy_factor^(levels - 1): the power overflows
        finest = math.log2(voxel * strategy.init_factor) - (strategy.levels - 1) * math.log2(strategy.hierarchy_factor)
        if reach > 0 and math.log2(reach) - finest >= math.log2(MAX_CELL_INDEX):
            raise UserError(f"config keys 'strategy.levels' ({strategy.levels}) and 'strategy.hierarchy_factor' "
                            f"({strategy.hierarchy_factor}) make growing's finest cell 2^{finest:.0f} world units, "
                            f"too fine to number in 64 bits at the scene's coordinates (up to {reach:.4g}); give "
                            "fewer levels or a smaller factor")


def _check_near(near: float, points: np.ndarray, centres: np.ndarray) -> None:
    """``render.near`` against the farthest any point can be from a camera (the farthest corner of the points'
    box from each centre, an upper bound of every depth)."""
    if near <= 0 or len(centres) == 0:
        return
    lo, hi = points.min(axis=0), points.max(axis=0)
    corners = np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)  # [8, 3]
    farthest = float(np.linalg.norm(corners[None] - centres[:, None], axis=-1).max())
    if near >= farthest:
        raise UserError(f"config key 'render.near' is {near:.4g}, beyond every SfM point (the farthest is at most "
                        f"{farthest:.4g} world units from a training camera): every anchor would be culled; give "
                        "a value well below the cameras' distance to the scene (default 0.2)")
