"""Per-image colour correction, as used for the colour-corrected columns of the paper's tables.

The render is mapped to the ground truth by a least-squares quadratic polynomial in RGB, fitted per image.
It removes global exposure and white-balance differences (which per-image appearance embeddings cannot
predict for held-out views) so that the corrected scores measure geometry and texture. Always report
corrected scores in separate columns from the plain ones.
"""

from __future__ import annotations

import torch


def quadratic_features(rgb: torch.Tensor) -> torch.Tensor:
    """[N, 3] colours → [N, 10] terms r, g, b, r², g², b², rg, rb, gb, 1."""
    r, g, b = rgb.unbind(dim=-1)
    return torch.stack([r, g, b, r * r, g * g, b * b, r * g, r * b, g * b, torch.ones_like(r)], dim=-1)


def colour_correct(render: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The render passed through the quadratic colour map that best fits it to ``gt``, clamped to [0, 1].

    Per image: the 10 × 3 coefficients minimising Σ‖features(render pixel) · C − gt pixel‖² over all pixels,
    solved in float64. The identity map is one candidate and clamping only moves values towards [0, 1],
    so for images in [0, 1] the corrected render is never further from ``gt`` in MSE (PSNR never drops).

    Args:
        render, gt: [H, W, 3] in [0, 1], on the same device.

    Returns:
        [H, W, 3] in [0, 1], the dtype and device of ``render``.
    """
    x = quadratic_features(render.reshape(-1, 3).double())
    y = gt.reshape(-1, 3).double()
    # Solve the 10 × 10 normal equations on the CPU: tiny, and 'gelsd' copes with rank-deficient renders
    # (a flat colour), which CUDA's only lstsq driver does not.
    gram, rhs = (x.T @ x).cpu(), (x.T @ y).cpu()
    coefs = torch.linalg.lstsq(gram, rhs, driver="gelsd").solution.to(x.device)
    return (x @ coefs).clamp(0.0, 1.0).reshape(render.shape).to(render.dtype)
