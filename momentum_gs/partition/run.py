"""``mgs partition``: load a scene, partition it, save the partition file and its map, return a summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from momentum_gs.config import DataConfig
from momentum_gs.data.scene import load_scene
from momentum_gs.data.up import scene_up
from momentum_gs.errors import UserError
from momentum_gs.partition.assign import make_partition
from momentum_gs.partition.auto import auto_partition
from momentum_gs.partition.coarse import assign_by_drops, check_threshold, import_camera_matrix, ssim_drops
from momentum_gs.partition.draw import draw_partition
from momentum_gs.partition.partition import DEFAULT_MARGIN, Partition


def partition_main(data_cfg: DataConfig, out_path: str | Path, num_blocks: int | None = None,
                   block_dim: tuple[int, int, int] | None = None, box: tuple | None = None,
                   up: np.ndarray | None = None, margin: float = DEFAULT_MARGIN, coverage_threshold: float | None = 0.1,
                   balance: bool | None = None, map_size: int = 1000, coarse: tuple | None = None,
                   ssim_threshold: float = 0.05, camera_matrix: str | Path | None = None, **coverage_kwargs) -> str:
    """Partition the scene of ``data_cfg`` and write ``out_path`` (.npz) and the map next to it (.png).

    Args:
        num_blocks / block_dim: how many blocks, or the grid (x, y, z); at least one of them.
        box: ((min xyz), (max xyz)) world units, or None for the automatic box.
        up: [3] world up; None: ``scene.json``'s "up" if present, else estimated from the cameras.
        balance: cut at camera quantiles; None → balanced unless both ``box`` and ``block_dim`` are given,
            which reproduces the reference's uniform grid.
        coarse: (model, render config) of a trained run of the scene (:func:`momentum_gs.trained.load_run`):
            cameras then join a block when removing the block's anchors from this coarse model changes their
            render by 1 − SSIM > ``ssim_threshold`` (the reference's criterion, :mod:`momentum_gs.partition.coarse`)
            instead of by coverage.
        camera_matrix: the reference's ``block{n}_ssim{t}.npy``: its camera assignment is taken over.
        coverage_kwargs: ``bins``, ``depth_tolerance``, ``max_points_per_block`` (``assign.view_coverage``).
    Returns:
        The printable summary (grid, box, per-block counts) and the two paths.
    """
    check_coarse(coarse is not None, camera_matrix, ssim_threshold)
    scene = load_scene(data_cfg, images=coarse is not None)  # only the coarse rule compares with images
    up = scene_up(data_cfg.path, scene.train, strict=False)[0] if up is None else up
    if balance is None:
        balance = box is None or block_dim is None
    reassign = coarse is not None or camera_matrix is not None
    if reassign:  # the cameras are assigned below: no coverage to project, no check of the centres alone
        coverage_threshold, coverage_kwargs = None, {}
    if box is not None and block_dim is not None and not balance:
        partition = make_partition(scene, box[0], box[1], tuple(block_dim), margin, coverage_threshold, up=up,
                                   validate=not reassign, **coverage_kwargs)
    else:
        partition = auto_partition(scene, num_blocks, up, box=box, grid=block_dim, balance=balance, margin=margin,
                                   coverage_threshold=coverage_threshold, validate=not reassign, **coverage_kwargs)
    if reassign:
        partition.validate(cameras=False)  # cameras come next; a cell without points stays an error
    if coarse is not None:
        model, render_cfg = coarse
        drops = ssim_drops(model, partition, scene.train, render_cfg)
        partition = assign_by_drops(partition, drops, ssim_threshold)
    elif camera_matrix is not None:
        partition = import_camera_matrix(partition, camera_matrix, [cam.name for cam in scene.train])
    out_path = Path(out_path)
    partition.save(out_path)
    map_path = out_path.with_suffix(".png")
    draw_partition(partition, scene, map_path, map_size)
    return f"{partition.summary()}\npartition: {out_path}\nmap: {map_path}"


def check_coarse(coarse: bool, camera_matrix, ssim_threshold: float) -> None:
    """One line when the coarse rule and the reference's camera matrix are both given, or the threshold is out
    of range (before any scene or run is loaded)."""
    if coarse and camera_matrix is not None:
        raise UserError("give a coarse run (--coarse) or the reference's camera matrix (--cameras-from), not both")
    if coarse:
        check_threshold(ssim_threshold)


def load_partition_for(scene, path: str | Path) -> Partition:
    """Load ``path`` and check it was made for ``scene`` (same points, same training cameras)."""
    partition = Partition.load(path)
    partition.check_scene(len(scene.points), [cam.name for cam in scene.train])
    return partition
