"""Per-image colour correction, as used for the colour-corrected columns of the paper's tables.

The render is mapped to the ground truth by a least-squares quadratic polynomial in RGB, fitted per image.
It removes global exposure and white-balance differences (which per-image appearance embeddings cannot
predict for held-out views) so that the corrected scores measure geometry and texture. Always report
corrected scores in separate columns from the plain ones. The recipe (clipped pixels ignored, five
re-fits) is that of the colour correction the paper's evaluation applies.
"""

from __future__ import annotations

import torch


def quadratic_features(rgb: torch.Tensor) -> torch.Tensor:
    """[N, 3] colours → [N, 10] terms r, g, b, r², g², b², rg, rb, gb, 1."""
    r, g, b = rgb.unbind(dim=-1)
    return torch.stack([r, g, b, r * r, g * g, b * b, r * g, r * b, g * b, torch.ones_like(r)], dim=-1)


def colour_correct(render: torch.Tensor, gt: torch.Tensor, iterations: int = 5, eps: float = 0.5 / 255) -> torch.Tensor:
    """The render passed through the quadratic colour map that best fits it to ``gt``, clamped to [0, 1].

    The paper's colour-corrected numbers use this recipe: per output channel, the 10 coefficients
    minimising Σ (features(render pixel) · c − gt pixel)² over the pixels that are clipped in neither image
    (that channel outside [eps, 1 − eps] in the render or in ``gt``), solved in float64; the map is applied,
    clamped, and the fit repeated on the corrected render ``iterations`` times. A channel with too few
    unclipped pixels to fit keeps its values.

    Args:
        render, gt: [H, W, 3] in [0, 1], on the same device.

    Returns:
        [H, W, 3] in [0, 1], the dtype and device of ``render``.
    """
    y = gt.reshape(-1, 3).double()
    current = render.reshape(-1, 3).double()
    for _ in range(iterations):
        x = quadratic_features(current)
        mapped = current.clone()
        for c in range(3):
            keep = (current[:, c] > eps) & (current[:, c] < 1 - eps) & (y[:, c] > eps) & (y[:, c] < 1 - eps)
            if int(keep.sum()) < x.shape[1]:
                continue
            xs, ys = x[keep], y[keep, c:c + 1]
            # The 10 × 10 normal equations, solved on the CPU: tiny, and 'gelsd' copes with rank-deficient
            # renders (a flat colour), which CUDA's only lstsq driver does not.
            coefs = torch.linalg.lstsq((xs.T @ xs).cpu(), (xs.T @ ys).cpu(), driver="gelsd").solution
            mapped[:, c] = (x @ coefs.to(x.device))[:, 0]
        current = mapped.clamp(0.0, 1.0)
    return current.reshape(render.shape).to(render.dtype)
