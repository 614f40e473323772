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

The converters live in ``convert_matrixcity`` and ``convert_mill19``, their shared helpers in
``convert_common``; this module is the public entry point.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.config import DataConfig
from momentum_gs.data.convert_matrixcity import ground_points, matrixcity_to_colmap, opengl_to_opencv, read_points
from momentum_gs.data.convert_mill19 import check_mill19, mill19_layout, prepare_mill19, split_model
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError

__all__ = ["check_mill19", "downsample", "ground_points", "matrixcity_to_colmap", "mill19_layout", "opengl_to_opencv",
           "prepare_mill19", "read_points", "split_model"]


def downsample(scene_dir: str | Path, factor: int = 4, max_width: int = 0) -> list[Path]:
    """Build the image cache that training with ``data.downsample=factor`` (or ``data.max_width``) reads:
    ``images_<factor>`` (``images_w<max_width>``) beside each ``images/``. Returns the folders used."""
    if factor < 1 or max_width < 0:
        raise UserError(f"the downsampling factor must be >= 1 and the maximum width >= 0 (got {factor}, {max_width})")
    scene = load_scene(DataConfig(path=str(scene_dir), downsample=factor, max_width=max_width, test_every=0))
    return sorted({cam.image_path.parents[len(Path(cam.name).parts) - 1] for cam in scene.train + scene.test})
