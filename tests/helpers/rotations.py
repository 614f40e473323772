"""Random rotations for the tests of the SfM frame."""

from __future__ import annotations

import numpy as np


def random_rotation(rng) -> np.ndarray:
    """A [3, 3] rotation matrix (determinant +1) drawn with the numpy Generator ``rng``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q
