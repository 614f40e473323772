"""The one render entry point: Gaussians + pinhole camera -> image, with backends behind a name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from momentum_gs.render.composite import median_pairs, pair_coefficients
from momentum_gs.render.kernels.build import use_cpp
from momentum_gs.render.kernels.ops import composite_gaussians, composite_image, intersect, project
from momentum_gs.render.projection import surface_values
from momentum_gs.render.tiles import TilePlan, reach

# Bound on tiles × pixels × list length composited at once. On CPU, 1 MB float32 buffers keep a chunk's
# temporaries in cache (measured fastest); on GPU, bigger chunks mean fewer kernel launches.
CHUNK_ELEMS_CPU = 1 << 18
CHUNK_ELEMS_GPU = 1 << 24
# The per-pixel maps ``render(extras=...)`` can add to its output, and the channels each one takes. All but
# "median_depth" are composited as extra colour channels; the median depth picks one Gaussian per pixel.
EXTRA_CHANNELS = {"depth": 1, "normal": 3, "median_depth": 1}
BLENDED_EXTRAS = ("depth", "normal")


@dataclass
class RenderOutput:
    """What ``render`` returns for one camera.

    Attributes:
        image: [H, W, D] composited colour, background included.
        alpha: [H, W, 1] accumulated opacity 1 - T_final.
        radii: [N] int32 screen radius in pixels; 0 = culled / not drawn.
        means2d: [N, 2] pixel coordinates of the projected means. Its ``.grad`` (∂loss/∂means2d, per
            pixel) is filled by backward; the densification statistics read it.
        depths: [N] camera-space z in world units.
        depth: [H, W, 1] Σ Tᵢαᵢzᵢ, the Gaussians' camera-space z (world units) blended like the colour over
            a background of 0, so NOT divided by alpha (see ``normalised_depth``); None unless asked for.
        normal: [H, W, 3] Σ Tᵢαᵢnᵢ, the Gaussians' camera-facing unit normals (the axis of the smallest
            scale, camera coordinates) blended the same way: not unit length; None unless asked for.
        median_depth: [H, W, 1] camera z of the Gaussian at which the pixel's transmittance crosses 0.5
            (the last drawn one if it never does; 0 where nothing is drawn). Its gradient reaches only that
            Gaussian's z (the choice is piecewise constant). None unless asked for.
    """

    image: Tensor
    alpha: Tensor
    radii: Tensor
    means2d: Tensor
    depths: Tensor
    depth: Tensor | None = None
    normal: Tensor | None = None
    median_depth: Tensor | None = None

    def normalised_depth(self, eps: float = 1e-10) -> Tensor:
        """[H, W, 1] depth / alpha: the mean z of what a pixel sees (0 where nothing is drawn)."""
        if self.depth is None:
            raise ValueError("normalised_depth needs a render with extras=('depth',)")
        return self.depth / self.alpha.clamp(min=eps)


def render(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    world_to_cam: Tensor, K: Tensor, width: int, height: int,
    background: Tensor | None = None, backend: str = "torch",
    near: float = 0.01, far: float = 1e10, eps2d: float = 0.3, tile_size: int = 8,
    extras: Sequence[str] = (),
) -> RenderOutput:
    """Render N 3D Gaussians into one pinhole camera by EWA splatting and front-to-back compositing.

    Args:
        means: [N, 3] world positions. quats: [N, 4] rotations (w, x, y, z), normalised inside.
        scales: [N, 3] standard deviations in world units (already activated).
        opacities: [N] in (0, 1). colors: [N, D] per-Gaussian colour (D = 3 for RGB, any D works).
        world_to_cam: [4, 4] world -> camera (OpenCV axes: x right, y down, z forward).
        K: [3, 3] intrinsics in pixels. width, height: image size in pixels.
        background: [D] colour behind everything (default black).
        backend: "torch" (pure PyTorch, CPU or GPU); see ``BACKENDS``.
        near, far: depth range kept (world units). eps2d: pixel² low-pass dilation of the 2D covariance.
        tile_size: tile side in pixels.
        extras: names from ``EXTRA_CHANNELS`` ("depth", "normal", "median_depth") of the maps to add to the
            output; "depth" and "normal" are composited as extra colour channels (background 0) in the same
            pass as the image, "median_depth" by a second pass without gradients that picks a Gaussian.

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
        background, near=near, far=far, eps2d=eps2d, tile_size=tile_size, extras=extras,
    )


def _render_torch(means, quats, scales, opacities, colors, world_to_cam, K, width, height, background,
                  near: float, far: float, eps2d: float, tile_size: int, extras: tuple[str, ...] = ()
                  ) -> RenderOutput:
    """The pure-PyTorch tile rasterizer (same arguments as ``render``, background resolved)."""
    proj = project(means, quats, scales, world_to_cam, K, width, height, near, far, eps2d)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    extents = reach(proj.covars2d, opacities, proj.radii)
    gauss_ids, tile_ids, offsets = intersect(proj.means2d, extents, proj.depths, tiles_x, tiles_y, tile_size)
    chunk_elems = CHUNK_ELEMS_CPU if means.device.type == "cpu" else CHUNK_ELEMS_GPU
    plan = TilePlan(tile_size, tiles_x, tiles_y, gauss_ids, tile_ids, chunk_elems, offsets)

    channels, blended = colors.shape[-1], blended_extras(extras)
    if blended:  # the maps ride along as colour channels: one compositing pass, gradients included
        colors = torch.cat([colors, extra_values(means, quats, scales, world_to_cam, blended)], dim=-1)
    for_backward = differentiated(proj.means2d, proj.conics, opacities, colors)
    if not for_backward and use_cpp(colors) and means.dtype == colors.dtype == opacities.dtype == background.dtype:
        # eval, video, export: no tiles tensor for autograd, one pass for the untiling, crop and background
        image, rest = composite_image(proj.means2d, proj.conics, opacities, colors, plan, background, width,
                                      height)
        alpha, maps = rest[..., -1:], split_extras(rest[..., :-1], blended)
    else:
        per_tile = composite_gaussians(proj.means2d, proj.conics, opacities, colors, plan, for_backward)
        composited = _untile(per_tile, plan)[:height, :width]
        color, alpha = composited[..., :channels], composited[..., -1:]
        image = color + (1.0 - alpha) * background
        maps = split_extras(composited[..., channels:-1], blended)
    if "median_depth" in extras:
        coefs = pair_coefficients(proj.means2d.detach(), proj.conics.detach(), plan)
        picked = median_pairs(coefs, opacities[gauss_ids].detach(), plan)[:, None, :]
        z_pairs = torch.cat([proj.depths[gauss_ids], proj.depths.new_zeros(1)])  # the last row: nothing drawn
        maps["median_depth"] = _untile(z_pairs[picked], plan)[:height, :width]
    return RenderOutput(image, alpha, proj.radii, proj.means2d, proj.depths, **maps)


def check_extras(extras: Sequence[str]) -> tuple[str, ...]:
    """``extras`` as a tuple without repeats; ValueError for a name not in ``EXTRA_CHANNELS``."""
    extras = (extras,) if isinstance(extras, str) else tuple(dict.fromkeys(extras))
    for name in extras:
        if name not in EXTRA_CHANNELS:
            raise ValueError(f"unknown render extra {name!r}; available: {', '.join(EXTRA_CHANNELS)}")
    return extras


def blended_extras(extras: tuple[str, ...]) -> tuple[str, ...]:
    """The names in ``extras`` that are composited as colour channels (``BLENDED_EXTRAS``), in order."""
    return tuple(name for name in extras if name in BLENDED_EXTRAS)


def extra_values(means: Tensor, quats: Tensor, scales: Tensor, world_to_cam: Tensor,
                 extras: tuple[str, ...]) -> Tensor:
    """[N, E] per-Gaussian values of ``extras``, in order, that compositing turns into the maps: z [1]
    for "depth", the camera-facing normal [3] for "normal" (see ``surface_values``)."""
    z, normals = surface_values(means, quats, scales, world_to_cam)
    values = {"depth": z[:, None], "normal": normals}
    return torch.cat([values[name] for name in extras], dim=-1)


def split_extras(maps: Tensor, extras: tuple[str, ...]) -> dict[str, Tensor]:
    """[H, W, E] composited ``extra_values`` channels -> {name: [H, W, channels]}."""
    return dict(zip(extras, maps.split([EXTRA_CHANNELS[name] for name in extras], dim=-1)))


def differentiated(*tensors: Tensor) -> bool:
    """True when a render made from ``tensors`` will be differentiated: grad mode is on and one requires grad.
    Backends use it to keep (or compute) only what a backward, or the statistics after it, will read."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _check_shapes(means, quats, scales, opacities, colors, world_to_cam, K) -> None:
    """Raise ValueError naming the first argument whose shape does not fit N Gaussians."""
    num = means.shape[0]
    expected = {"means": (means, (num, 3)), "quats": (quats, (num, 4)), "scales": (scales, (num, 3)),
                "opacities": (opacities, (num,)), "colors": (colors, (num, colors.shape[-1])),
                "world_to_cam": (world_to_cam, (4, 4)), "K": (K, (3, 3))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"render: {name} has shape {tuple(tensor.shape)}, expected {shape}")


def _untile(per_tile: Tensor, plan: TilePlan) -> Tensor:
    """[tiles, D, P] channel-first row-major tiles -> [tiles_y·s, tiles_x·s, D] image."""
    s, depth = plan.tile_size, per_tile.shape[1]
    grid = per_tile.reshape(plan.tiles_y, plan.tiles_x, depth, s, s).permute(0, 3, 1, 4, 2)
    return grid.reshape(plan.tiles_y * s, plan.tiles_x * s, depth)


# Backend name -> function with ``render``'s arguments (background resolved). A GPU backend (e.g.
# "gsplat") registers itself here; it must fill RenderOutput the same way, including means2d.grad.
BACKENDS: dict[str, Callable[..., RenderOutput]] = {"torch": _render_torch}
