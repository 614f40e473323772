"""The real brighton_beach capture (18 drone photos, COLMAP 4.x models): where it is, if anywhere, and its
cameras' centres. The folder is read-only: tests that write copy from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from momentum_gs.data.colmap.model import ColmapModel, qvec_to_rotmat


def _dataset() -> Path | None:
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "datasets" / "brighton_beach"]
    if os.environ.get("MGS_SHARED"):
        candidates.append(Path(os.environ["MGS_SHARED"]) / "datasets" / "brighton_beach")
    return next((c for c in candidates if (c / "sparse" / "0").is_dir()), None)


DATA = _dataset()  # the dataset's folder (shared/datasets/brighton_beach beside the checkout, or under $MGS_SHARED)


def camera_centres(model: ColmapModel) -> dict[str, np.ndarray]:
    """Each image's camera centre in the model's world frame, by image name."""
    return {im.name: -qvec_to_rotmat(im.qvec).T @ im.tvec for im in model.images.values()}
