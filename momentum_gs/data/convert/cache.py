"""``mgs convert downsample``: build the downsampled image cache of a scene ahead of training."""

from __future__ import annotations

from pathlib import Path

from momentum_gs.config import DataConfig
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError


def downsample(scene_dir: str | Path, factor: int = 4, max_width: int = 0) -> list[Path]:
    """Build the image cache that training with ``data.downsample=factor`` (or ``data.max_width``) reads:
    ``images_<factor>`` (``images_w<max_width>``) beside each ``images/``. Returns the folders used."""
    if factor < 1 or max_width < 0:
        raise UserError(f"the downsampling factor must be >= 1 and the maximum width >= 0 (got {factor}, {max_width})")
    scene = load_scene(DataConfig(path=str(scene_dir), downsample=factor, max_width=max_width, test_every=0))
    return sorted({cam.image_path.parents[len(Path(cam.name).parts) - 1] for cam in scene.train + scene.test})
