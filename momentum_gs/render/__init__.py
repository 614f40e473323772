"""Rendering: one ``render()`` with named backends ("torch": pure-PyTorch tile rasterizer)."""

from momentum_gs.render.projection import Projection, project_gaussians, quat_to_rotmat
from momentum_gs.render.rasterize import BACKENDS, RenderOutput, render
from momentum_gs.render.reference import render_dense

__all__ = [
    "BACKENDS",
    "Projection",
    "RenderOutput",
    "project_gaussians",
    "quat_to_rotmat",
    "render",
    "render_dense",
]
