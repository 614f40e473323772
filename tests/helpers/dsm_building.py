"""A surface model of one building on flat ground, for the tests of the DSM's guide and solve."""

from __future__ import annotations

import numpy as np

CELL = 0.5  # a pixel's size, in the heights' units
ROOF, GROUND = (200, 90, 60), (120, 120, 120)


def a_building(top: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heights [60, 80], colours [60, 80, 3], spread [60, 80]): a 20 × 30-cell roof 12 above flat ground, rows
    ``top`` to ``top + 20``, columns 25 to 55, its colours as they are, every height agreed on by the photos (spread
    a tenth of a cell)."""
    dsm = np.zeros((60, 80), np.float32)
    dsm[top:top + 20, 25:55] = 12.0
    colour = np.empty((60, 80, 3), np.uint8)
    colour[:] = GROUND
    colour[top:top + 20, 25:55] = ROOF
    return dsm, colour, np.full(dsm.shape, 0.1 * CELL, np.float32)
