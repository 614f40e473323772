"""Generated GPS residuals for the field's tests: a lawnmower's plan in capture order, and noise plus a slow wander."""

from __future__ import annotations

import numpy as np

from momentum_gs.data.synthetic.survey import wander


def rows(n_rows: int = 6, per_row: int = 10) -> np.ndarray:
    """[N, 2] a lawnmower's plan in capture order: serpentine rows 200 m long, 120 m apart in all."""
    xs = np.linspace(-100, 100, per_row)
    return np.concatenate([np.c_[xs[:: 1 - 2 * (r % 2)], np.full(per_row, y)]
                           for r, y in enumerate(np.linspace(-60, 60, n_rows))])


def residuals(plan: np.ndarray, noise: float, seed: int = 0, wander_m: float = 0.0, heights: bool = True):
    """[N, 3] GPS noise per axis plus a slow horizontal wander in capture order (altitudes NaN without heights)."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0, noise, (len(plan), 3))
    out[:, :2] += wander(len(plan), wander_m, rng)
    if not heights:
        out[:, 2] = np.nan
    return out
