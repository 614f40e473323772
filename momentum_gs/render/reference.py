"""A brute-force renderer (every Gaussian against every pixel) with the tile rasterizer's semantics.

Written independently of ``projection``/``tiles``/``composite`` (explicit 3×3 matrices, eigvalsh,
matrix inverse, autograd through cumprod) so that tests comparing the two catch mistakes in either.
O(N·H·W) memory: only for tiny scenes in tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from momentum_gs.render.projection import ALPHA_REACH
from momentum_gs.render.output import RenderOutput, check_extras


def _rotation(quats: Tensor) -> Tensor:
    """[N, 4] (w, x, y, z) -> [N, 3, 3], as R = (w² - v·v)I + 2vvᵀ + 2w[v]ₓ for the unit quaternion."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, v = q[:, 0], q[:, 1:]
    cross = torch.zeros(q.shape[0], 3, 3, dtype=q.dtype, device=q.device)
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    cross = cross - cross.transpose(1, 2)
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    return ((w * w - (v * v).sum(-1))[:, None, None] * eye + 2 * v[:, :, None] * v[:, None, :]
            + 2 * w[:, None, None] * cross)


def _screen_gaussians(means, quats, scales, world_to_cam, K, width, height, near, far, eps2d):
    """means2d [N, 2], conics [N, 2, 2], depths [N], radii [N] (float, 0 = culled)."""
    W, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    p = torch.einsum("ij,nj->ni", W, means) + t
    z = p[:, 2]
    ok = (z > near) & (z < far)
    z = torch.where(ok, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    means2d = torch.stack([fx * p[:, 0] / z + cx, fy * p[:, 1] / z + cy], -1)
    # Jacobian with the ray slope clamped to the frustum widened by 0.3 half-FoVs (gsplat/3DGS rule).
    mx, my = 0.3 * width / (2 * fx), 0.3 * height / (2 * fy)
    sx = torch.minimum(torch.maximum(p[:, 0] / z, -cx / fx - mx), (width - cx) / fx + mx)
    sy = torch.minimum(torch.maximum(p[:, 1] / z, -cy / fy - my), (height - cy) / fy + my)
    J = torch.zeros(len(z), 2, 3, dtype=p.dtype, device=p.device)
    J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * sx / z
    J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * sy / z
    R = _rotation(quats)
    cov3d = R @ torch.diag_embed(scales * scales) @ R.transpose(1, 2)
    JW = J @ W
    cov2d = JW @ cov3d @ JW.transpose(1, 2) + eps2d * torch.eye(2, dtype=p.dtype, device=p.device)
    ok = ok & (torch.linalg.det(cov2d) > 0)
    cov2d = torch.where(ok[:, None, None], cov2d, torch.eye(2, dtype=p.dtype, device=p.device))
    radius = torch.ceil(3 * torch.linalg.eigvalsh(cov2d.detach())[:, -1].sqrt())
    x, y = means2d.detach().unbind(-1)
    reach = ALPHA_REACH * torch.diagonal(cov2d.detach(), dim1=-2, dim2=-1).sqrt()
    ok = ok & (x + reach[:, 0] > 0) & (x - reach[:, 0] < width) & (y + reach[:, 1] > 0) & (y - reach[:, 1] < height)
    return means2d, torch.linalg.inv(cov2d), p[:, 2], torch.where(ok, radius, torch.zeros_like(radius))


def _pixel_alphas(means2d, conics, radii, opacities, width: int, height: int) -> Tensor:
    """[H, W, N] α of every Gaussian at every pixel centre, 0 where skipped (α < 1/255 or culled).

    The tile rasterizer lists a Gaussian in every tile that touches the box around its α >= 1/255
    ellipse, so it evaluates every pixel where α >= 1/255: no tile test is needed here.
    """
    dtype, device = means2d.dtype, means2d.device
    rows = torch.arange(height, dtype=dtype, device=device)
    cols = torch.arange(width, dtype=dtype, device=device)
    pix = torch.stack(torch.meshgrid(cols + 0.5, rows + 0.5, indexing="xy"), -1)  # [H, W, 2] (x, y)
    d = pix[:, :, None, :] - means2d  # [H, W, N, 2]
    power = 0.5 * torch.einsum("hwni,nij,hwnj->hwn", d, conics, d)
    alpha = torch.clamp(opacities * torch.exp(-power), max=0.99)
    use = (radii > 0) & (alpha >= 1 / 255)
    return torch.where(use, alpha, torch.zeros_like(alpha))


def _surface(means, quats, scales, world_to_cam) -> dict[str, Tensor]:
    """{"depth": [N, 1] camera z, "normal": [N, 3] camera-facing normal (axis of the smallest scale)}."""
    W, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    p = torch.einsum("ij,nj->ni", W, means) + t
    pick = torch.nn.functional.one_hot(scales.argmin(-1), 3).to(means.dtype)  # [N, 3], the smallest axis
    normal = torch.einsum("ij,njk,nk->ni", W, _rotation(quats), pick)
    facing = torch.where(torch.einsum("ni,ni->n", normal, p) > 0, -1.0, 1.0).to(means.dtype)
    return {"depth": p[:, 2:], "normal": normal * facing[:, None]}


def render_dense(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    world_to_cam: Tensor, K: Tensor, width: int, height: int, background: Tensor | None = None,
    near: float = 0.01, far: float = 1e10, eps2d: float = 0.3, tile_size: int = 8, extras: tuple[str, ...] = (),
) -> RenderOutput:
    """Same arguments and output as ``render`` (pure autograd, every Gaussian at every pixel; ``tile_size``
    changes nothing)."""
    world_to_cam, K = world_to_cam.to(means), K.to(means)
    if background is None:
        background = torch.zeros(colors.shape[-1], dtype=means.dtype, device=means.device)
    means2d, conics, depths, radii = _screen_gaussians(
        means, quats, scales, world_to_cam, K, width, height, near, far, eps2d)
    if means2d.requires_grad:
        means2d.retain_grad()
    order = torch.argsort(depths.detach(), stable=True)
    alpha = _pixel_alphas(means2d[order], conics[order], radii[order], opacities[order], width, height)

    keep = torch.cumprod(1 - alpha.detach(), -1) > 1e-4  # stop before T would reach 1e-4
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1]], -1), -1)
    t_final = torch.prod(1 - alpha, -1, keepdim=True)
    image = torch.einsum("hwn,nd->hwd", alpha * trans, colors[order]) + t_final * background
    surface = _surface(means, quats, scales, world_to_cam) if extras else {}
    extras = check_extras(extras)
    maps = {name: torch.einsum("hwn,nd->hwd", alpha * trans, surface[name][order])
            for name in extras if name != "median_depth"}
    if "median_depth" in extras:  # the last drawn Gaussian still in front of T = 0.5
        front = (alpha.detach() > 0) & (trans.detach() > 0.5)
        index = torch.arange(front.shape[-1], device=front.device)
        last = torch.where(front, index, -1).amax(-1)  # [H, W], -1 where none
        z = torch.cat([depths[order], depths.new_zeros(1)])
        maps["median_depth"] = z[torch.where(last >= 0, last, front.shape[-1])][..., None]
    return RenderOutput(image, 1 - t_final, radii.to(torch.int32), means2d, depths, **maps)
