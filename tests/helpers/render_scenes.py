"""Render inputs for the rasterizer's tests, in float64: random scenes around a random camera and a crowded one
whose pixels reach the early stop; and the check of a render's gradients against the dense reference's."""

from __future__ import annotations

import torch

from momentum_gs.render import render, render_dense

F64 = torch.float64
PARAMS = ("means", "quats", "scales", "opacities", "colors")  # the inputs of ``render`` gradients flow to


def _random_pose(gen: torch.Generator) -> torch.Tensor:
    """[4, 4] float64 world_to_cam: a random rotation and translation."""
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=F64))
    pose = torch.eye(4, dtype=F64)
    pose[:3, :3] = q * torch.sign(torch.linalg.det(q))
    pose[:3, 3] = torch.randn(3, generator=gen, dtype=F64)
    return pose


def random_scene(num: int, width: int, height: int, seed: int = 0, behind: int = 0, opaque: int = 0,
                 min_opacity: float = 0.05) -> dict:
    """``render`` keyword arguments in float64: Gaussians of 0.3..4 px σ around and inside a
    non-centred, non-square-pixel camera, random pose; ``behind`` of them behind the camera, the next
    ``opaque`` ones with o > 0.99 centred on pixel centres (so that α is clamped there)."""
    gen = torch.Generator().manual_seed(seed)
    fx, fy, cx, cy = 1.1 * width, 0.8 * width, 0.4 * width + 0.3, 0.6 * height - 0.2
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=F64)
    z = 1.5 + 4.5 * torch.rand(num, generator=gen, dtype=F64)
    z[:behind] *= -1
    size = torch.tensor([width, height], dtype=F64)
    pix = (torch.rand(num, 2, generator=gen, dtype=F64) * 1.4 - 0.2) * size  # some straddle the border
    pix[behind:behind + opaque] = pix[behind:behind + opaque].floor() + 0.5
    cam = torch.cat([(pix - K[:2, 2]) / K.diagonal()[:2] * z.abs()[:, None], z[:, None]], dim=-1)
    world_to_cam = _random_pose(gen)
    means = (cam - world_to_cam[:3, 3]) @ world_to_cam[:3, :3]  # inverse rigid transform, row-wise
    sigma_px = 0.3 * (4 / 0.3) ** torch.rand(num, 3, generator=gen, dtype=F64)
    opacities = min_opacity + (0.95 - min_opacity) * torch.rand(num, generator=gen, dtype=F64)
    opacities[behind:behind + opaque] = 0.995
    return dict(
        means=means, quats=torch.randn(num, 4, generator=gen, dtype=F64),
        scales=sigma_px * z.abs()[:, None] / K[0, 0], opacities=opacities,
        colors=torch.rand(num, 3, generator=gen, dtype=F64), world_to_cam=world_to_cam, K=K,
        width=width, height=height, background=torch.tensor([0.2, 0.5, 0.8], dtype=F64),
    )


def with_grad(scene: dict) -> dict:
    """``scene`` with copies of its ``PARAMS`` that require gradients."""
    return scene | {k: scene[k].clone().requires_grad_() for k in PARAMS}


def weighted_loss(out, seed: int = 1) -> torch.Tensor:
    """A scalar that depends on every pixel of image and alpha with random weights."""
    gen = torch.Generator().manual_seed(seed)
    w_img = torch.randn(out.image.shape, generator=gen, dtype=out.image.dtype)
    w_alpha = torch.randn(out.alpha.shape, generator=gen, dtype=out.alpha.dtype)
    return (out.image * w_img).sum() + (out.alpha * w_alpha).sum()


def crowded_scene() -> dict:
    """Opaque enough that some pixels reach the early stop (T_final just above 1e-4)."""
    scene = random_scene(400, 24, 18, seed=1, behind=5, opaque=4, min_opacity=0.5)
    t_final = 1 - render_dense(**scene).alpha
    assert t_final.min() > 1e-4 and (t_final < 2e-4).any()
    return scene


def assert_gradients_match_dense(scene: dict, loss, params=PARAMS, **options) -> dict:
    """Backpropagate ``loss(output)`` through ``render`` and ``render_dense`` (with ``options``); the gradients
    of ``params`` and ``means2d`` must be non-zero and equal. Returns the tiled renderer's gradients by name
    (every input and ``means2d``)."""
    grads = []
    for fn in (render, render_dense):
        inputs = with_grad(scene)
        out = fn(**inputs, **options)
        loss(out).backward()
        grads.append({**{k: v.grad for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad},
                      "means2d": out.means2d.grad})
    for name in params + ("means2d",):
        assert grads[0][name].abs().max() > 0, name
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-9, rtol=1e-7, msg=name)
    return grads[0]
