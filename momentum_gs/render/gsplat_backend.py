"""The "gsplat" render backend: gsplat's fused CUDA rasterizer (``pip install .[cuda]``) behind ``render()``.

gsplat is imported on the first call, never at package import, and its CUDA extension is compiled by gsplat
itself (JIT, minutes) the first time one of its kernels runs; that needs a GPU and nvcc.

Against the "builtin" backend (:mod:`momentum_gs.render.builtin`), gsplat 1.5.3 has the same pinhole
projection and frustum-clamped EWA Jacobian, the same ``eps2d`` dilation, pixel centres at (j + 0.5, i + 0.5),
α skipped below 1/255, the early stop at T <= 1e-4 and the background weighted by T_final. Its 2D-mean
gradient is in pixels like ours (gsplat's own strategy also scales it by width/2, height/2 into NDC), so
``means2d.grad`` needs no conversion. What differs:

- α is clamped at 0.999 (ours 0.99): Gaussians with opacity above 0.99 render differently at their core.
- Neither draws a Gaussian outside the box around its α >= 1/255 ellipse (gsplat's opacity-aware box),
  and both evaluate every pixel inside it, so both draw the same pixels; gsplat rounds its box up to
  whole pixels, which adds only pixels where α < 1/255. Tiles are gsplat's 16 px (its only tested
  size): ``tile_size`` is ignored, which changes no pixel.
- When the render will be differentiated, ``radii`` are ours (ceil of 3σ of the largest axis, from our
  projection without gradients), not gsplat's tighter per-axis ones, so that the densification statistics
  count the same Gaussians as drawn. Without gradients (evaluation, validation) nothing reads them for
  statistics and they are gsplat's (the larger of its two half-widths, 0 where culled): no second projection.
- ``means2d`` rows of the Gaussians gsplat culls are 0 (ours keeps their projection); their gradient is 0
  with either backend.

The depth and normal maps (``extras``) are made as in the builtin backend: extra colour channels over a zero
background (which is also how gsplat's own "RGB+D" mode makes its depth, from the same camera z).
"""

from __future__ import annotations

import functools
import importlib.util
import weakref
from pathlib import Path

import torch
from torch import Tensor

from momentum_gs.errors import UserError
from momentum_gs.render.builtin import render_builtin
from momentum_gs.render.output import RenderOutput, differentiated, extra_values, split_extras
from momentum_gs.render.projection import project_gaussians

GSPLAT_TILE_SIZE = 16


@functools.cache
def load_gsplat():
    """The ``gsplat`` module, or None when it is not installed (or does not import); tried once."""
    try:
        import gsplat
    except ImportError:
        return None
    return gsplat


def gsplat_reference():
    """gsplat's own pure-PyTorch reference of its kernels (``gsplat/cuda/_torch_impl.py``) as a module, loaded
    by path: importing the gsplat package would build its CUDA extension. None when gsplat is not installed."""
    spec = importlib.util.find_spec("gsplat")
    path = spec and Path(spec.submodule_search_locations[0]) / "cuda" / "_torch_impl.py"
    if path is None or not path.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("gsplat_torch_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def gsplat_problem(device: torch.device | str) -> str | None:
    """Why the gsplat backend cannot render on ``device`` (one line), or None when it can.

    Checks the device first, so that on a CPU device gsplat is never imported.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return (f"render backend 'gsplat' needs a CUDA device, not {device.type}: "
                "set device=cuda, or render.backend=builtin")
    if load_gsplat() is None:
        return "gsplat is not installed: pip install .[cuda] on a machine with CUDA (or set render.backend=builtin)"
    return None


def render_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                  world_to_cam: Tensor, K: Tensor, width: int, height: int, background: Tensor,
                  near: float, far: float, eps2d: float, tile_size: int, extras: tuple[str, ...] = (),
                  orthographic: bool = False) -> RenderOutput:
    """``render``'s backend function (background resolved) through ``gsplat.rasterization`` (an orthographic
    camera as its ``camera_model="ortho"``).

    Same arguments and units as :func:`momentum_gs.render.render`; the tensors must be on a CUDA device and
    are rendered in float32 (gsplat's kernels). Returns image [H, W, D], alpha [H, W, 1], radii [N] int32
    (ours), means2d [N, 2] pixels whose ``.grad`` backward fills (∂loss/∂means2d, pixels), depths [N], and
    the maps named in ``extras``.
    """
    problem = gsplat_problem(means.device)
    if problem is not None:
        raise UserError(problem)
    if "median_depth" in extras:
        raise UserError("render backend 'gsplat' has no median depth: render it with render.backend=builtin")
    if means.shape[0] == 0:  # nothing to launch kernels on: the builtin rasterizer gives the background
        return render_builtin(means, quats, scales, opacities, colors, world_to_cam, K, width, height, background,
                              near=near, far=far, eps2d=eps2d, tile_size=tile_size, extras=extras,
                              orthographic=orthographic)
    from gsplat import rasterization

    channels = colors.shape[-1]
    if extras:  # depth and normal only: median_depth was refused above
        colors = torch.cat([colors, extra_values(means, quats, scales, world_to_cam, extras)], dim=-1)
        background = torch.cat([background, background.new_zeros(colors.shape[-1] - channels)])
    gaussians = [t.float().contiguous() for t in (means, quats, scales, opacities, colors)]
    # packed=False keeps per-Gaussian rows [1, N, ...]: the anchors are frustum-culled before decoding, so
    # most Gaussians are in view and the packed layout would save little.
    image, alpha, meta = rasterization(
        *gaussians, world_to_cam.float()[None].contiguous(), K.float()[None].contiguous(), width, height,
        near_plane=near, far_plane=far, eps2d=eps2d, packed=False, tile_size=GSPLAT_TILE_SIZE,
        backgrounds=background.float()[None], render_mode="RGB", rasterize_mode="classic",
        camera_model="ortho" if orthographic else "pinhole",
    )
    if differentiated(means, quats, scales):
        with torch.no_grad():  # for the densification statistics: the Gaussians our rasterizer would draw
            radii = project_gaussians(means, quats, scales, world_to_cam, K, width, height, near, far, eps2d,
                                      orthographic).radii
    else:  # nothing will collect statistics from this render: gsplat's radii, without a second projection
        per_axis = meta["radii"][0]
        radii = torch.where((per_axis > 0).all(dim=-1), per_axis.amax(dim=-1), 0).to(torch.int32)
    depths = means @ world_to_cam[2, :3] + world_to_cam[2, 3]
    maps = split_extras(image[0, ..., channels:], extras)
    return RenderOutput(image[0, ..., :channels], alpha[0], radii, _means2d_with_grad(meta["means2d"]), depths,
                        **maps)


def _means2d_with_grad(screen: Tensor) -> Tensor:
    """[N, 2] view of gsplat's [1, N, 2] projected means whose ``.grad`` is filled by backward.

    The rasterizer consumes ``screen``, not the view, so a hook on ``screen`` copies its gradient over
    (accumulating, like ``retain_grad``). The hook holds the view weakly: no reference cycle through the graph.
    """
    means2d = screen[0]
    if screen.requires_grad:
        means2d.retain_grad()  # so that reading .grad is legal (and None until backward)
        target = weakref.ref(means2d)

        def store(grad: Tensor) -> None:
            view = target()
            if view is not None:
                view.grad = grad[0] if view.grad is None else view.grad + grad[0]

        screen.register_hook(store)
    return means2d
