"""Fusing depth maps into a truncated signed distance field (TSDF) on a regular grid, in torch.

Every grid point seen by a view (in front of the camera, inside the image, where the view has a depth d) gets
the projective signed distance d − z (z: the point's camera depth), positive in front of the surface. Points
more than the truncation τ behind the surface are hidden and left alone; the rest add min(d − z, τ)/τ to a
running mean (equal weights), and the colour of the pixel where they are within τ of the surface. The mean's
zero level set is the fused surface (:mod:`momentum_gs.mesh.marching`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

# Grid points fused at once: bounds the temporaries of one view's projection (about 100 bytes a point).
POINTS_PER_CHUNK = 1 << 21
NEAR = 1e-6  # camera depth (world units) at or below which a point counts as behind the camera


@dataclass
class DepthView:
    """One view to fuse: depth [H, W] camera z (0 where nothing), colour [H, W, 3] in [0, 1], K [3, 3],
    world_to_cam [4, 4] (OpenCV axes); all on the fusion's device."""

    depth: Tensor
    color: Tensor
    K: Tensor
    world_to_cam: Tensor


@dataclass
class Grid:
    """A box of grid points: point (i, j, k) is at ``origin + voxel·(i, j, k)`` in the grid frame, whose
    world position is ``rotation.T @ p`` (``rotation``: world → grid frame)."""

    origin: Tensor  # [3] float64
    voxel: float
    shape: tuple[int, int, int]
    rotation: Tensor  # [3, 3] float64

    def world_points(self, start: int, stop: int) -> Tensor:
        """[stop − start, 3] float64 world positions of the grid points with flat indices start..stop−1."""
        index = torch.arange(start, stop, dtype=torch.int64, device=self.origin.device)
        ny, nz = self.shape[1], self.shape[2]
        ijk = torch.stack([index // (ny * nz), index // nz % ny, index % nz], dim=-1)
        return (self.origin + self.voxel * ijk.to(torch.float64)) @ self.rotation


def fuse(grid: Grid, views: Iterable[DepthView], trunc: float) -> tuple[Tensor, Tensor, Tensor]:
    """Fuse ``views`` (any iterable, taken one at a time) into ``grid`` with truncation ``trunc`` (world units).

    Returns: tsdf [X, Y, Z] float32 in [-1, 1] (1 where unseen), weight [X, Y, Z] float32 (views that
        observed each point), color [X, Y, Z, 3] float32 mean colour of the views that saw it near the surface.
    """
    total = grid.shape[0] * grid.shape[1] * grid.shape[2]
    device = grid.origin.device
    tsdf_sum = torch.zeros(total, dtype=torch.float32, device=device)
    weight = torch.zeros(total, dtype=torch.float32, device=device)
    color_sum = torch.zeros(total, 3, dtype=torch.float32, device=device)
    color_weight = torch.zeros(total, dtype=torch.float32, device=device)
    for view in views:  # view by view, so that a caller can show progress per view (``views`` may be lazy)
        for start in range(0, total, POINTS_PER_CHUNK):
            stop = min(start + POINTS_PER_CHUNK, total)
            sdf, pixel = _view_sdf(grid.world_points(start, stop), view)
            used = sdf > -trunc
            tsdf_sum[start:stop] += torch.where(used, (sdf / trunc).clamp(max=1.0), 0.0).float()
            weight[start:stop] += used.float()
            near = used & (sdf < trunc)
            color_sum[start:stop] += view.color.reshape(-1, 3)[pixel] * near[:, None]
            color_weight[start:stop] += near.float()
    tsdf = torch.where(weight > 0, tsdf_sum / weight.clamp(min=1), 1.0)
    color = color_sum / color_weight.clamp(min=1)[:, None]
    return tsdf.reshape(grid.shape), weight.reshape(grid.shape), color.reshape(*grid.shape, 3)


def _view_sdf(points: Tensor, view: DepthView) -> tuple[Tensor, Tensor]:
    """Per world point [N, 3] float64: d − z (−inf where the view has no depth for it) and its flat pixel index."""
    height, width = view.depth.shape
    u, v, z = _project(points, view.K, view.world_to_cam)
    inside = (z > NEAR) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    col = u.clamp(0, width - 1).long()
    row = v.clamp(0, height - 1).long()
    pixel = row * width + col
    depth = view.depth.reshape(-1)[pixel].to(torch.float64)
    seen = inside & (depth > 0)
    return torch.where(seen, depth - z, -torch.inf), pixel


def sees_box(view_K: Tensor, world_to_cam: Tensor, width: int, height: int, corners: Tensor) -> bool:
    """Whether a camera can see any of a box given by its 8 world ``corners`` [8, 3] (conservative: a box
    partly behind the camera counts as seen)."""
    u, v, z = _project(corners, view_K, world_to_cam)
    if (z <= NEAR).all():
        return False
    if (z <= NEAR).any():
        return True
    return bool((u.max() >= 0) & (u.min() < width) & (v.max() >= 0) & (v.min() < height))


def _project(points: Tensor, K: Tensor, world_to_cam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel coordinates u, v and camera depth z [N] (float64) of world ``points`` [N, 3]; u, v are finite
    (computed with z = 1) where z <= ``NEAR``."""
    w2c, K = world_to_cam.to(torch.float64), K.to(points.device, torch.float64)
    cam = points.to(torch.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    z_safe = torch.where(z > NEAR, z, 1.0)
    return K[0, 0] * cam[:, 0] / z_safe + K[0, 2], K[1, 1] * cam[:, 1] / z_safe + K[1, 2], z
