"""Scene contraction: all of space into the unit cube, the scene box linearly into its middle half.

The formula is CityGaussian's (``contract_to_unisphere`` with the ∞-norm), used by Momentum-GS for both the
partition and the merge. For a point x and a box [lo, hi] (both [3], world units):

1. x̂ = 2 (x − lo) / (hi − lo) − 1               the box becomes [−1, 1]³;
2. m = ‖x̂‖∞; if m > 1: x̂ ← (2 − 1/m) x̂ / m     everything outside goes into the shell 1 < ‖x̂‖∞ < 2;
3. u = x̂ / 4 + 1/2                              the box lands on [0.25, 0.75]³, space on (0, 1)³.

The map is continuous, the identity-up-to-scale inside the box, and monotone along every axis inside it;
outside, the ∞-norm couples the axes (a point far along x is pulled towards the box centre in y and z too).
"""

from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def _like(value, ref: Array) -> Array:
    """``value`` as an array of the same kind (numpy / torch), dtype and device as ``ref``."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(np.asarray(value), dtype=ref.dtype, device=ref.device)
    return np.asarray(value, dtype=ref.dtype)


def contract(xyz: Array, box_min, box_max) -> Array:
    """[M, 3] world points → [M, 3] contracted coordinates in [0, 1]³ (numpy or torch, same kind back).

    ``box_min``/``box_max`` are [3] world units (the box must have positive size on every axis). Computed in
    float64 for numpy input; torch input keeps its dtype (pass float64 where cell boundaries matter).
    """
    if not isinstance(xyz, torch.Tensor):
        xyz = np.asarray(xyz, dtype=np.float64)
    lo, hi = _like(box_min, xyz), _like(box_max, xyz)
    x = 2.0 * (xyz - lo) / (hi - lo) - 1.0
    if isinstance(x, torch.Tensor):
        m = x.abs().amax(dim=-1, keepdim=True).clamp(min=1.0)
    else:
        m = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1.0)
    # m is clamped to 1 inside the box, where the factor (2 - 1/m) / m is then exactly 1: no branch needed.
    return x * ((2.0 - 1.0 / m) / m) / 4.0 + 0.5


def uncontract(u: np.ndarray, box_min, box_max) -> np.ndarray:
    """Inverse of :func:`contract` for numpy [M, 3] points strictly inside (0, 1)³ → world units."""
    x = (np.asarray(u, dtype=np.float64) - 0.5) * 4.0
    n = np.abs(x).max(axis=-1, keepdims=True)  # n = 2 - 1/m outside the box (1 < n < 2), n <= 1 inside
    m = 1.0 / (2.0 - np.clip(n, 1.0, 2.0 - 1e-12))
    x = x * m / np.maximum(n, 1.0)
    lo, hi = np.asarray(box_min, np.float64), np.asarray(box_max, np.float64)
    return (x + 1.0) / 2.0 * (hi - lo) + lo
