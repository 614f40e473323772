"""The one render entry point: Gaussians + pinhole camera -> image, with backends behind a name."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from momentum_gs.render.builtin import render_builtin
from momentum_gs.render.gsplat_backend import render_gsplat
from momentum_gs.render.output import RenderOutput, check_extras

# Backend name -> function with ``render``'s arguments (background resolved), each filling RenderOutput the
# same way, including means2d.grad. "gsplat" imports gsplat on its first call only (CUDA; pip install .[cuda]).
BACKENDS: dict[str, Callable[..., RenderOutput]] = {"builtin": render_builtin, "gsplat": render_gsplat}


def render(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    world_to_cam: Tensor, K: Tensor, width: int, height: int,
    background: Tensor | None = None, backend: str = "builtin",
    near: float = 0.01, far: float = 1e10, eps2d: float = 0.3, tile_size: int = 8,
    extras: Sequence[str] = (), orthographic: bool = False,
) -> RenderOutput:
    """Render N 3D Gaussians into one pinhole camera by EWA splatting and front-to-back compositing.

    Args:
        means: [N, 3] world positions. quats: [N, 4] rotations (w, x, y, z), normalised inside.
        scales: [N, 3] standard deviations in world units (already activated).
        opacities: [N] in (0, 1). colors: [N, D] per-Gaussian colour (D = 3 for RGB, any D works).
        world_to_cam: [4, 4] world -> camera (OpenCV axes: x right, y down, z forward).
        K: [3, 3] intrinsics in pixels. width, height: image size in pixels.
        background: [D] colour behind everything (default black).
        backend: "builtin" (our tile rasterizer: PyTorch ops on any device, our C++ kernels for CPU tensors)
            or "gsplat" (CUDA); see ``BACKENDS``.
        near, far: depth range kept (world units). eps2d: pixel² low-pass dilation of the 2D covariance.
        tile_size: tile side in pixels.
        extras: names from ``EXTRA_CHANNELS`` ("depth", "normal", "median_depth") of the maps to add to the
            output; "depth" and "normal" are composited as extra colour channels (background 0) in the same
            pass as the image, "median_depth" by a second pass without gradients that picks a Gaussian.
        orthographic: parallel rays along the camera's z instead of a pinhole: pixel (fx·x + cx, fy·y + cy),
            fx and fy in pixels per world unit (a map's camera looking straight down).

    Semantics follow gsplat/3DGS: α = min(0.99, o·exp(-½dᵀΣ⁻¹d)) per pixel centre, skipped below
    1/255, composited by increasing depth until the transmittance would drop to 1e-4 or below;
    image = Σ Tᵢαᵢcᵢ + T_final·background.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; available: {', '.join(sorted(BACKENDS))}")
    _check_shapes(means, quats, scales, opacities, colors, world_to_cam, K)
    extras = check_extras(extras)
    if background is None:
        background = torch.zeros(colors.shape[-1], dtype=colors.dtype, device=colors.device)
    return BACKENDS[backend](
        means, quats, scales, opacities, colors, world_to_cam.to(means), K.to(means), width, height,
        background, near=near, far=far, eps2d=eps2d, tile_size=tile_size, extras=extras, orthographic=orthographic,
    )


def _check_shapes(means, quats, scales, opacities, colors, world_to_cam, K) -> None:
    """Raise ValueError naming the first argument whose shape does not fit N Gaussians."""
    num = means.shape[0]
    expected = {"means": (means, (num, 3)), "quats": (quats, (num, 4)), "scales": (scales, (num, 3)),
                "opacities": (opacities, (num,)), "colors": (colors, (num, colors.shape[-1])),
                "world_to_cam": (world_to_cam, (4, 4)), "K": (K, (3, 3))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"render: {name} has shape {tuple(tensor.shape)}, expected {shape}")
