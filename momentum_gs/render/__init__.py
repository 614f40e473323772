"""Rendering: one ``render()`` with named backends ("builtin": our tile rasterizer, PyTorch ops on any device
and our C++ kernels on a CPU; "gsplat": gsplat's CUDA rasterizer)."""

from momentum_gs.render.output import EXTRA_CHANNELS, RenderOutput
from momentum_gs.render.projection import Projection, project_gaussians, quat_to_rotmat
from momentum_gs.render.rasterize import BACKENDS, render
from momentum_gs.render.reference import render_dense

__all__ = [
    "BACKENDS",
    "EXTRA_CHANNELS",
    "Projection",
    "RenderOutput",
    "project_gaussians",
    "quat_to_rotmat",
    "render",
    "render_dense",
]
