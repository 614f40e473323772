"""Bring the public large-scene datasets into the Mill-19 layout that ``momentum_gs.data.scene`` reads.

The layout: ``out/train`` and ``out/val``, each with ``images/`` and a COLMAP model in ``sparse/0/``.
- ``matrixcity_to_colmap``: MatrixCity's NeRF-style ``transforms.json`` (OpenGL camera axes) → COLMAP.
- ``prepare_mill19`` / ``mill19_layout`` / ``split_model`` / ``check_mill19``: the Mill-19 and UrbanScene3D
  releases (Mega-NeRF ``rgbs/`` + the CityGaussian COLMAP models), or any COLMAP model plus a list of
  held-out images, checked so that every image a model lists exists.
- ``downsample``: build the ``images_N`` (or ``images_wW``) cache ahead of training.
Every input is checked before anything is written, and new splits are assembled in a staging folder that
is moved into place at the end: a UserError leaves no half-written dataset behind. Images are symlinked
(``copy=True`` copies them).

The converters live in ``convert.matrixcity``, ``convert.mill19`` and ``convert.cache``, their shared
helpers in ``convert.common``, the command in ``convert.cli``; this package names them all and imports
each on first use, so the command-line parser stays free of PyTorch.
"""

from __future__ import annotations

import importlib

# public name → the submodule that defines it
_HOME = {"matrixcity_to_colmap": "matrixcity", "ground_points": "matrixcity", "opengl_to_opencv": "matrixcity",
         "read_points": "matrixcity", "check_mill19": "mill19", "mill19_layout": "mill19", "prepare_mill19": "mill19",
         "split_model": "mill19", "downsample": "cache"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
