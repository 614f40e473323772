"""Cameras assigned by what a coarse model shows, and the reference's own camera matrices.

The reference criterion (CityGaussian v1, kept by Momentum-GS): a training camera belongs to block b if its
centre lies in b's cell, or if removing b's anchors from a coarse model of the whole scene changes the
camera's render by 1 − SSIM > ``threshold`` (0.03 or 0.05 for the paper's scenes). The coarse model is any
trained run of the scene, usually one block (``mgs train`` without ``blocks.partition``). Its anchors are
split by the partition's cells; a view is decoded once and rasterized once whole and once without each
block seen in it (a block with no Gaussian in view changes nothing: its drop is 0).

The reference ships its partitions as boolean matrices ``data_partitions/block{n}_ssim{t}.npy``: one row per
training camera sorted by image name, one column per block (block id = iz·Dx·Dy + iy·Dx + ix, as ours).
:func:`import_camera_matrix` takes them over, so a reproduction trains on exactly the paper's blocks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.losses import ssim
from momentum_gs.model.gaussian_scene import (GaussianScene, PartsScene, decode_parts, gaussian_tensors, rasterize,
                                               resolve_backend)
from momentum_gs.partition.partition import Partition


@torch.no_grad()
def ssim_drops(model: GaussianScene | PartsScene, partition: Partition, cameras: list[Camera],
               render_cfg: RenderConfig, show_progress: bool = True) -> np.ndarray:
    """[C, n] float32: 1 − SSIM between each camera's render of ``model`` and its render without block b's
    anchors (the anchors whose position lies in b's cell); 0 where no Gaussian of b is in view.

    Args:
        model: the coarse model (``eval.load_run``'s model); rendered on its own device, with its mean
            appearance code (the coarse run's view numbering need not be this scene's).
        partition: gives the cells. cameras: the scene's training cameras (their images are not read).
        render_cfg: background, near plane, backend.
    """
    device = model.device
    parts = model.parts if isinstance(model, PartsScene) else [(model.anchors, model.decoder)]
    appearance = getattr(model, "appearance", None)
    anchor_blocks = [partition.block_of(anchors.positions.double()).to(device) for anchors, _ in parts]
    backend = resolve_backend(render_cfg.backend, device)
    drops = np.zeros((len(cameras), partition.num_blocks), np.float32)
    for c, camera in enumerate(tqdm(cameras, desc="coarse renders", unit="view", disable=not show_progress)):
        camera = camera.to(device)
        decoded = decode_parts(parts, camera, render_cfg, appearance)
        tensors = gaussian_tensors(decoded)
        block = torch.cat([anchor_block[g.gaussian_anchors()] for g, anchor_block in zip(decoded, anchor_blocks)])

        def draw(keep: torch.Tensor | None) -> torch.Tensor:
            chosen = tensors if keep is None else [t[keep] for t in tensors]
            return rasterize(chosen, camera, render_cfg, backend).image.clamp(0, 1)

        whole = draw(None)
        for b in torch.unique(block).tolist():
            drops[c, b] = float(1.0 - ssim(whole, draw(block != b)))
    return drops


def assign_by_drops(partition: Partition, drops: np.ndarray, threshold: float) -> Partition:
    """``partition`` with its cameras reassigned: centre in the cell, or an SSIM drop above ``threshold``.

    Raises a UserError naming a block left without cameras.
    """
    check_threshold(threshold)
    n = partition.num_blocks
    member = (partition.camera_block[:, None] == np.arange(n)[None]) | (drops > threshold)
    result = dataclasses.replace(partition, block_cameras=[np.flatnonzero(member[:, b]) for b in range(n)],
                                 criterion="centre+ssim", coverage_threshold=float(threshold), camera_coverage=drops)
    result.validate()
    return result


def check_threshold(threshold: float) -> None:
    """Raise a UserError unless 0 < ``threshold`` < 1 (checked before any render, and again on assignment)."""
    if not 0.0 < threshold < 1.0:
        raise UserError(f"the SSIM threshold must lie between 0 and 1 (the reference uses 0.03-0.05), got {threshold}")


def import_camera_matrix(partition: Partition, path: str | Path, camera_names: list[str]) -> Partition:
    """``partition`` with the cameras of the reference's matrix file (``block{n}_ssim{t}.npy``).

    Its rows are the training cameras sorted by image name (without extension), its columns the blocks.
    ``camera_names`` are the scene's training cameras in our order. A matrix of another shape is a UserError.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"camera matrix {path} not found (the reference ships data_partitions/block8_ssim*.npy)")
    if path.stat().st_size == 0:
        raise UserError(f"camera matrix {path} is empty (0 bytes); copy it again from the reference's data_partitions/")
    try:  # mapped, not read: a header announcing more than the file holds is refused, never allocated
        matrix = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"camera matrix {path} is not a .npy array ({str(exc).splitlines()[0]})") from None
    if not isinstance(matrix, np.ndarray):  # an .npz archive, say
        matrix.close()
        raise UserError(f"camera matrix {path} is an archive of arrays, not one .npy array of cameras × blocks")
    shape = (len(camera_names), partition.num_blocks)
    if matrix.ndim != 2 or matrix.shape != shape or matrix.dtype.kind not in "bui":
        raise UserError(f"camera matrix {path} is {matrix.dtype} {tuple(matrix.shape)}, expected booleans of shape "
                        f"{shape} (training cameras × blocks): was it made for this scene, split and grid?")
    if not np.isin(matrix, (0, 1)).all():
        raise UserError(f"camera matrix {path} holds values other than 0 and 1 ({np.unique(matrix)[:5].tolist()} ...); "
                        "it must say for each training camera and block whether the block trains on it")
    order = sorted(range(len(camera_names)), key=lambda i: Path(camera_names[i]).stem)  # matrix row -> ours
    member = np.zeros(shape, bool)
    member[order] = matrix.astype(bool)
    result = dataclasses.replace(partition, block_cameras=[np.flatnonzero(member[:, b]) for b in range(shape[1])],
                                 criterion=f"imported from {path.name}", coverage_threshold=None,
                                 camera_coverage=None)
    result.validate()
    return result
