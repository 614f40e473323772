"""The C++ CPU kernels as autograd functions and ops, each with the semantics of its PyTorch reference (the
fallback where :func:`~momentum_gs.render.kernels.build.use_cpp` is false): ``pair_coefficients``, the
per-pair gathers and ``CompositeTiles`` as one C++ loop per tile, forward and backward
(``composite_gaussians``; ``FusedCompositeTiles`` keeps the per-pair interface for benchmarks); the
projection, forward and backward, as one loop per Gaussian (``project``); the tile lists as one counting pass
and a radix sort by depth (``intersect``); for the loss, the mean SSIM and its gradient (``FusedMeanSSIM``,
``csrc/ssim.cpp``, with the semantics of ``losses._MeanSSIM``); and, for the model, the kept neural Gaussians
of the visible anchors (``FusedChildren``, ``csrc/children.cpp``, with the semantics of
``neural.kept_children``).

``csrc/composite.cpp`` walks each tile's pairs front to back over the tile's pixels (vectorised, early
exit once every pixel is done) on the kernels' threads (``csrc/parallel.h``), one tile per thread at a time,
and its backward recomputes α and T the same way instead of keeping them: no [tiles, P, L] temporaries, no
padding. It supports float32 and float64 and any number of colour channels, and matches
``composite.CompositeTiles`` (the reference, and the fallback) to rounding.

``csrc/projection.cpp`` does the projection and the tile lists with the semantics of
``projection.project_gaussians`` and ``tiles.intersect_tiles`` (the references, and the fallbacks): the same
values to rounding, the same gradients, the same pairs in the same order.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from momentum_gs.render.composite import _LOG_ALPHA_SKIP, ALPHA_MAX, TRANS_MIN, CompositeTiles, pair_coefficients
from momentum_gs.render.kernels.build import build, use_cpp
from momentum_gs.render.projection import ALPHA_REACH, FRUSTUM_MARGIN, Projection, project_gaussians
from momentum_gs.render.tiles import ALPHA_MIN, TilePlan, intersect_tiles

# composite.py's constants, in the order the C++ side reads them.
_LIMITS = [ALPHA_MIN, math.log(ALPHA_MAX), _LOG_ALPHA_SKIP, TRANS_MIN]



def project(means: Tensor, quats: Tensor, scales: Tensor, world_to_cam: Tensor, K: Tensor, width: int,
            height: int, near: float = 0.01, far: float = 1e10, eps2d: float = 0.3,
            orthographic: bool = False) -> Projection:
    """``projection.project_gaussians`` (same arguments and result), as one C++ loop per Gaussian where
    ``use_cpp`` and the camera needs no gradient (``FusedProjection``; an orthographic camera only where nothing
    needs one); else that function itself."""
    tensors = (means, quats, scales, world_to_cam, K)
    if (not use_cpp(means) or any(t.dtype != means.dtype for t in tensors)
            or world_to_cam.requires_grad or K.requires_grad
            or (orthographic and any(t.requires_grad for t in tensors))):
        return project_gaussians(means, quats, scales, world_to_cam, K, width, height, near, far, eps2d,
                                 orthographic)
    settings = [float(width), float(height), near, far, eps2d, FRUSTUM_MARGIN, ALPHA_REACH, float(orthographic)]
    means2d, covars2d, conics, depths, radii = FusedProjection.apply(means, quats, scales, world_to_cam, K, settings)
    return Projection(means2d, covars2d, conics, depths, radii)


class FusedProjection(torch.autograd.Function):
    """(means [N, 3], quats [N, 4], scales [N, 3], world_to_cam, K, settings) -> (means2d, covars2d, conics,
    depths, radii) as ``project_gaussians``; gradients reach means, quats and scales from means2d, conics and
    depths (covars2d and radii are not differentiable). Keeps only its inputs: the backward recomputes."""

    @staticmethod
    def forward(ctx, means, quats, scales, world_to_cam, K, settings):
        inputs = [t.contiguous() for t in (means, quats, scales, world_to_cam, K)]
        num = means.shape[0]
        means2d, conics = means.new_empty(num, 2), means.new_empty(num, 3)
        covars2d, depths = means.new_empty(num, 2, 2), means.new_empty(num)
        radii = torch.empty(num, dtype=torch.int32)
        build().ops.project_forward(*inputs, settings, means2d, covars2d, conics, depths, radii)
        ctx.mark_non_differentiable(covars2d, radii)
        ctx.settings = settings
        ctx.save_for_backward(*inputs)
        return means2d, covars2d, conics, depths, radii

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_means2d, grad_covars2d, grad_conics, grad_depths, grad_radii):
        inputs = ctx.saved_tensors
        means = inputs[0]
        outputs = [g.contiguous() if g is not None else means.new_zeros(shape)
                   for g, shape in ((grad_means2d, (len(means), 2)), (grad_conics, (len(means), 3)),
                                    (grad_depths, (len(means),)))]
        grads = [torch.empty_like(t) for t in inputs[:3]]
        build().ops.project_backward(*inputs, ctx.settings, *outputs, *grads)
        return *grads, None, None, None


def reference_visible(positions: Tensor, scales: Tensor, world_to_cam: Tensor, K: Tensor, width: int, height: int,
                       near: float, ray_reach: float, blur: float, tile: int) -> Tensor:
    """bool [N]: the paper's anchor pre-filter (``neural.reference_visible_anchors``, the reference, whose
    arguments and constants these are) in one C++ loop over the anchors; CPU float tensors only."""
    world_to_cam, K = world_to_cam.to(positions).contiguous(), K.to(positions).contiguous()
    out = torch.empty(positions.shape[0], dtype=torch.bool)
    settings = [float(width), float(height), near, ray_reach, blur, float(tile)]
    build().ops.reference_visible(positions.contiguous(), scales.contiguous(), world_to_cam, K, settings, out)
    return out


class FusedChildren(torch.autograd.Function):
    """(positions [N, 3], offsets [N, k, 3], scalings [N, 6], anchor_index [V], opacity [V, k], cov [V, k, 7],
    color [V, k, 3], kept [M]) -> the kept children's (means, quats, scales, opacities, colors), as the last
    step of ``neural.generate_gaussians`` (see csrc/children.cpp); gradients reach the six float inputs.
    CPU tensors of one float dtype; keeps only its inputs (the backward recomputes)."""

    @staticmethod
    def forward(ctx, positions, offsets, scalings, anchor_index, opacity, cov, color, kept):
        inputs = [t.contiguous() for t in (positions, offsets, scalings, anchor_index, opacity, cov, color, kept)]
        num = kept.shape[0]
        outputs = [positions.new_empty(shape) for shape in ((num, 3), (num, 4), (num, 3), (num,), (num, 3))]
        build().ops.children_forward(*inputs, *outputs)
        ctx.save_for_backward(*inputs)
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        inputs = ctx.saved_tensors
        grads = [torch.zeros_like(inputs[i]) for i in (0, 1, 2, 4, 5, 6)]
        build().ops.children_backward(*inputs, *(g.contiguous() for g in grad_outputs), *grads)
        grad_positions, grad_offsets, grad_scalings, grad_opacity, grad_cov, grad_color = grads
        return grad_positions, grad_offsets, grad_scalings, None, grad_opacity, grad_cov, grad_color, None


def intersect(means2d: Tensor, extents: Tensor, depths: Tensor, tiles_x: int, tiles_y: int,
              tile_size: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """``tiles.intersect_tiles`` (same arguments; the same pairs in the same order) and the tiles' offsets
    into them, in one C++ pass where ``use_cpp``; else that function and None for the offsets."""
    if not use_cpp(means2d) or not means2d.dtype == extents.dtype == depths.dtype:
        return *intersect_tiles(means2d, extents, depths, tiles_x, tiles_y, tile_size), None
    rows = [t.detach().contiguous() for t in (means2d, extents, depths)]
    return tuple(build().ops.intersect_tiles(*rows, tiles_x, tiles_y, tile_size))


def composite_gaussians(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan,
                        for_backward: bool = False) -> Tensor:
    """Per tile [T, D+1, P] composited colour and alpha of the pairs in ``plan``, from per-Gaussian rows:
    means2d [N, 2] pixels, conics [N, 3], opacities [N], colors [N, D]. Where ``use_cpp``, one C++ pass
    that makes each pair's coefficients and reads its Gaussian's rows inside the tile loop
    (``FusedGaussianTiles``); else ``pair_coefficients``, the per-pair gathers and ``CompositeTiles``."""
    if use_cpp(means2d) and means2d.dtype == conics.dtype == opacities.dtype == colors.dtype:
        return FusedGaussianTiles.apply(means2d, conics, opacities, colors, plan)
    coefs = pair_coefficients(means2d, conics, plan)
    return CompositeTiles.apply(coefs, opacities[plan.gauss_ids], colors[plan.gauss_ids], plan, for_backward)


def _gaussian_tiles(inputs: list[Tensor], plan: TilePlan, out: Tensor) -> None:
    """Composite the pairs of ``plan`` from per-Gaussian rows ``inputs`` (means2d, conics, opacities, colors,
    contiguous) into ``out`` [T, D+1, P] (any values on entry), in C++."""
    build().ops.gaussians_forward(*inputs, plan.gauss_ids.contiguous(), plan.tile_offsets, plan.tiles_x,
                                  plan.tile_size, _LIMITS, out)


_workspace = threading.local()  # per thread: the tiles buffer of the last render without gradients


def composite_image(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan,
                    background: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """(image [H, W, D], rest [H, W, C − D]) of a render nobody differentiates, D = ``background``'s length:
    ``FusedGaussianTiles``'s tiles, then image = colour + (1 − alpha)·background and rest the other channels
    (alpha last), cropped to ``width`` × ``height``, in one C++ pass (``untile``). The same values as the
    differentiable path's untiling, crop and background ops (three roundings each, as those ops).

    The tiles are composited into a buffer kept per thread and reused while the size stays: a full-resolution
    view's tiles (docs/benchmarks/rendering.md) are above glibc's mmap threshold, so a fresh one is new pages that the
    kernel faults in one by one on every render. CPU tensors, ``use_cpp`` true, no gradients."""
    inputs = [t.detach().contiguous() for t in (means2d, conics, opacities, colors)]
    shape = (plan.num_tiles, colors.shape[1] + 1, plan.tile_size * plan.tile_size)
    tiles = getattr(_workspace, "tiles", None)
    if tiles is None or tuple(tiles.shape) != shape or tiles.dtype != means2d.dtype:
        _workspace.tiles = tiles = None  # the old buffer is freed before the new one is made
        _workspace.tiles = tiles = means2d.new_empty(shape)
    _gaussian_tiles(inputs, plan, tiles)
    depth = background.numel()
    image = means2d.new_empty(height, width, depth)
    rest = means2d.new_empty(height, width, shape[1] - depth)
    build().ops.untile(tiles, background.to(tiles).contiguous(), plan.tiles_x, image, rest)
    return image, rest


class FusedGaussianTiles(torch.autograd.Function):
    """(means2d [N, 2], conics [N, 3], opacities [N], colors [N, D], plan) -> per tile [T, D+1, P], as
    ``pair_coefficients`` + gathers + ``CompositeTiles``; the backward returns per-Gaussian gradients summed
    over each Gaussian's pairs in pair order (the same bits at any thread count). CPU tensors only."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan) -> Tensor:
        inputs = [t.contiguous() for t in (means2d, conics, opacities, colors)]
        out = means2d.new_empty(plan.num_tiles, colors.shape[1] + 1, plan.tile_size * plan.tile_size)
        _gaussian_tiles(inputs, plan, out)
        ctx.plan = plan
        ctx.save_for_backward(*inputs, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        *inputs, out = ctx.saved_tensors
        plan = ctx.plan
        grads = [torch.zeros_like(t) for t in inputs]
        build().ops.gaussians_backward(*inputs, plan.gauss_ids.contiguous(), plan.tile_offsets, plan.tiles_x,
                                       plan.tile_size, _LIMITS, out, grad_out.contiguous(), *grads)
        return *grads, None


class FusedCompositeTiles(torch.autograd.Function):
    """(coefs [M, 6], opacities [M], colors [M, D], plan) -> per tile [T, D+1, P], as ``CompositeTiles``.

    Keeps only its inputs and output for the backward (which recomputes α and T); CPU tensors only.
    """

    @staticmethod
    def forward(ctx, coefs: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan) -> Tensor:
        coefs, opacities, colors = coefs.contiguous(), opacities.contiguous(), colors.contiguous()
        out = coefs.new_empty(plan.num_tiles, colors.shape[1] + 1, plan.tile_size * plan.tile_size)
        build().ops.composite_forward(coefs, opacities, colors, plan.tile_offsets, plan.tile_size, _LIMITS, out)
        ctx.plan = plan
        ctx.save_for_backward(coefs, opacities, colors, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        coefs, opacities, colors, out = ctx.saved_tensors
        grads = torch.zeros_like(coefs), torch.zeros_like(opacities), torch.zeros_like(colors)
        build().ops.composite_backward(coefs, opacities, colors, ctx.plan.tile_offsets, ctx.plan.tile_size,
                                       _LIMITS, out, grad_out.contiguous(), *grads)
        return *grads, None


class FusedMeanSSIM(torch.autograd.Function):
    """(x, y [B, H, W, C] CPU images, window [K], c1, c2) -> mean SSIM (scalar), as ``losses._MeanSSIM`` on
    the same images; keeps four maps [4, B, H, W, C] for the backward."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float) -> Tensor:
        x, y, window = x.contiguous(), y.contiguous(), window.contiguous()
        maps = x.new_empty((4,) + tuple(x.shape))
        total = build().ops.ssim_forward(x, y, window, c1, c2, maps)
        ctx.save_for_backward(x, y, window, maps)
        return x.new_tensor(total / max(x.numel(), 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, y, window, maps = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        grad_x, grad_y = (torch.empty_like(t) if need else t.new_empty(0) for t, need in ((x, need_x), (y, need_y)))
        scale = grad.to(torch.float64) / max(x.numel(), 1)  # a CPU scalar: read inside the kernel
        build().ops.ssim_backward(x, y, window, maps, scale, need_x, need_y, grad_x, grad_y)
        return grad_x if need_x else None, grad_y if need_y else None, None, None, None
