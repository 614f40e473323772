"""The "builtin" render backend: our tile rasterizer, made of PyTorch ops on any device and of our C++ kernels
(:mod:`momentum_gs.render.kernels`) for CPU renders where the config's ``render.kernels`` allows them."""

from __future__ import annotations

import torch
from torch import Tensor

from momentum_gs.render.composite import median_pairs, pair_coefficients
from momentum_gs.render.kernels.build import use_cpp
from momentum_gs.render.kernels.ops import composite_gaussians, composite_image, intersect, project
from momentum_gs.render.output import RenderOutput, blended_extras, differentiated, extra_values, split_extras
from momentum_gs.render.tiles import TilePlan, reach

# Bound on tiles × pixels × list length composited at once. On CPU, 1 MB float32 buffers keep a chunk's
# temporaries in cache (measured fastest); on GPU, bigger chunks mean fewer kernel launches.
CHUNK_ELEMS_CPU = 1 << 18
CHUNK_ELEMS_GPU = 1 << 24


def render_builtin(means, quats, scales, opacities, colors, world_to_cam, K, width, height, background,
                   near: float, far: float, eps2d: float, tile_size: int, extras: tuple[str, ...] = (),
                   orthographic: bool = False) -> RenderOutput:
    """The tile rasterizer (same arguments as ``render``, background resolved): the C++ kernels where
    ``use_cpp``, else PyTorch ops."""
    proj = project(means, quats, scales, world_to_cam, K, width, height, near, far, eps2d, orthographic)
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
    return RenderOutput(image, alpha, proj.radii, proj.means2d, proj.depths, pairs=int(gauss_ids.numel()), **maps)


def _untile(per_tile: Tensor, plan: TilePlan) -> Tensor:
    """[tiles, D, P] channel-first row-major tiles -> [tiles_y·s, tiles_x·s, D] image."""
    s, depth = plan.tile_size, per_tile.shape[1]
    grid = per_tile.reshape(plan.tiles_y, plan.tiles_x, depth, s, s).permute(0, 3, 1, 4, 2)
    return grid.reshape(plan.tiles_y * s, plan.tiles_x * s, depth)
