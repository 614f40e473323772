"""Rendering: one ``render()`` with named backends ("torch": pure-PyTorch tile rasterizer)."""

from momentum_gs.render.gsplat_backend import render_gsplat
from momentum_gs.render.projection import Projection, project_gaussians, quat_to_rotmat
from momentum_gs.render.rasterize import BACKENDS, EXTRA_CHANNELS, RenderOutput, render
from momentum_gs.render.reference import render_dense

BACKENDS["gsplat"] = render_gsplat  # imports gsplat on its first call only (CUDA; pip install .[cuda])

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
