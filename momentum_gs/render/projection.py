"""Project 3D Gaussians to 2D screen-space Gaussians (EWA splatting, pinhole camera, OpenCV axes)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
import torch.nn.functional as F

from momentum_gs.render.tiles import ALPHA_MIN

# How far outside the image (as a fraction of the half field of view) the ray used for the EWA Jacobian
# may point. The affine approximation blows up for points far off-screen; gsplat and 3DGS clamp the same way.
FRUSTUM_MARGIN = 0.3
# Mahalanobis distance at which even an opaque Gaussian's α falls below ALPHA_MIN: sqrt(2·ln 255).
ALPHA_REACH = math.sqrt(-2.0 * math.log(ALPHA_MIN))
# The largest radius kept (int32's largest); a larger one (a huge Gaussian) is clamped to it, not wrapped.
RADIUS_MAX = 2**31 - 1


@dataclass
class Projection:
    """Screen-space Gaussians of one camera; N rows, culled rows have ``radii == 0``.

    Attributes:
        means2d: [N, 2] pixel coordinates (x right, y down; the centre of pixel (row i, col j) is at
            (j + 0.5, i + 0.5)).
        covars2d: [N, 2, 2] pixel² covariances, low-pass dilation ``eps2d·I`` included.
        conics: [N, 3] (a, b, c) of the inverse covariance [[a, b], [b, c]], in 1/pixel².
        depths: [N] camera-space z in world units.
        radii: [N] int32, ceil(3·sqrt(λ_max)) in pixels; 0 where culled.
    """

    means2d: Tensor
    covars2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N, 4] quaternions (w, x, y, z; any norm) -> [N, 3, 3] rotation matrices."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def _ewa_jacobian(p_cam: Tensor, z_safe: Tensor, K: Tensor, width: int, height: int,
                  orthographic: bool = False) -> Tensor:
    """[N, 2, 3] Jacobian of (fx·x/z + cx, fy·y/z + cy) w.r.t. the camera point (pixels / world unit); with
    ``orthographic``, of (fx·x + cx, fy·y + cy): [[fx, 0, 0], [0, fy, 0]] for every point, exact."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if orthographic:
        zero, one = torch.zeros_like(z_safe), torch.ones_like(z_safe)
        return torch.stack([torch.stack([fx * one, zero, zero], -1), torch.stack([zero, fy * one, zero], -1)], -2)
    margin_x, margin_y = FRUSTUM_MARGIN * 0.5 * width / fx, FRUSTUM_MARGIN * 0.5 * height / fy
    # Ray slopes limited to the (widened) frustum, so off-screen Gaussians keep a sane footprint.
    sx = torch.clamp(p_cam[:, 0] / z_safe, -(cx / fx + margin_x), (width - cx) / fx + margin_x)
    sy = torch.clamp(p_cam[:, 1] / z_safe, -(cy / fy + margin_y), (height - cy) / fy + margin_y)
    zero = torch.zeros_like(z_safe)
    row_x = torch.stack([fx / z_safe, zero, -fx * sx / z_safe], dim=-1)
    row_y = torch.stack([zero, fy / z_safe, -fy * sy / z_safe], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def project_gaussians(
    means: Tensor, quats: Tensor, scales: Tensor, world_to_cam: Tensor, K: Tensor,
    width: int, height: int, near: float = 0.01, far: float = 1e10, eps2d: float = 0.3, orthographic: bool = False,
) -> Projection:
    """Project Gaussians into one pinhole camera (or, ``orthographic``, one looking along parallel rays: pixel
    (fx·x + cx, fy·y + cy), fx pixels per world unit) and cull the ones that cannot be drawn.

    Args:
        means: [N, 3] world positions. quats: [N, 4] (w, x, y, z). scales: [N, 3] world units (activated).
        world_to_cam: [4, 4] world -> camera (OpenCV axes). K: [3, 3] intrinsics in pixels.
        width, height: image size in pixels. near, far: depth range kept (world units, exclusive).
        eps2d: pixel² added to the 2D covariance diagonal (anti-aliasing low-pass filter).

    Culled (radius 0): z <= near, z >= far, non positive-definite 2D covariance, or no pixel of the image
    where its α could reach 1/255 (the bounding box of that ellipse at opacity 1 misses the image, as in
    gsplat). Culled rows keep finite values so that backward never meets inf · 0.
    """
    R_wc, t_wc = world_to_cam[:3, :3], world_to_cam[:3, 3]
    p_cam = means @ R_wc.T + t_wc
    depths = p_cam[:, 2]
    in_range = (depths > near) & (depths < far)
    z_safe = torch.where(in_range, depths, torch.ones_like(depths))
    plane = p_cam[:, :2] if orthographic else p_cam[:, :2] / z_safe[:, None]
    means2d = plane * K.diagonal()[:2] + K[:2, 2]  # views: no index tensor to copy

    # Σ_cam = (W R S)(W R S)ᵀ and Σ_2d = (J W R S)(J W R S)ᵀ: symmetric PSD by construction.
    jacobian = _ewa_jacobian(p_cam, z_safe, K, width, height, orthographic)
    half_cov = jacobian @ (R_wc @ quat_to_rotmat(quats)) * scales[:, None, :]
    eye = torch.eye(2, dtype=means.dtype, device=means.device)
    covars2d = half_cov @ half_cov.transpose(1, 2) + eps2d * eye
    a, b, c = covars2d[:, 0, 0], covars2d[:, 0, 1], covars2d[:, 1, 1]
    det = a * c - b * b
    valid = in_range & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c, -b, a], dim=-1) / det_safe[:, None]

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lambda_max = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.0))
        radius = torch.ceil(3.0 * torch.sqrt(lambda_max)).clamp(max=RADIUS_MAX)  # int32 below
        # the box where α can reach 1/255 (at opacity 1): half-widths ALPHA_REACH·σ_x, ALPHA_REACH·σ_y
        x, y = means2d[:, 0], means2d[:, 1]
        rx, ry = ALPHA_REACH * torch.sqrt(a), ALPHA_REACH * torch.sqrt(c)
        on_image = (x + rx > 0) & (x - rx < width) & (y + ry > 0) & (y - ry < height)
        radii = torch.where(valid & on_image, radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d, covars2d, conics, depths, radii)


def surface_values(means: Tensor, quats: Tensor, scales: Tensor, world_to_cam: Tensor) -> tuple[Tensor, Tensor]:
    """Per Gaussian, the values behind the depth and normal maps (differentiable).

    Args: means [N, 3] world positions, quats [N, 4] (w, x, y, z), scales [N, 3], world_to_cam [4, 4].
    Returns: z [N], camera-space depth in world units; normals [N, 3], unit, camera coordinates: the axis
        of the smallest scale (the normal of a flattened Gaussian), flipped so that it faces the camera
        (its dot product with the ray from the camera to the mean is <= 0). Where scales tie, argmin picks one.
    """
    R_wc, t_wc = world_to_cam[:3, :3], world_to_cam[:3, 3]
    p_cam = means @ R_wc.T + t_wc
    axes = R_wc @ quat_to_rotmat(quats)  # columns: the Gaussian's axes in camera coordinates
    thinnest = scales.argmin(dim=-1)[:, None, None].expand(-1, 3, 1)
    normals = axes.gather(2, thinnest)[..., 0]
    away = (normals * p_cam).sum(-1, keepdim=True) > 0
    return p_cam[:, 2], torch.where(away, -normals, normals)
