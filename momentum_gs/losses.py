"""Pure loss and metric functions shared by training, evaluation and benchmarks.

Images are [H, W, 3] (or a batch [B, H, W, 3]) with values in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from momentum_gs.config import OptimConfig

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (scalar)."""
    return (a - b).abs().mean()


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32) -> torch.Tensor:
    """[size] normalized 1-D Gaussian; the 2-D SSIM window is its outer product."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    w = torch.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _to_nchw(image: torch.Tensor) -> torch.Tensor:
    """[H, W, C] or [B, H, W, C] → [B, C, H, W]."""
    if image.dim() == 3:
        image = image[None]
    return image.permute(0, 3, 1, 2)


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Per-channel 'same' Gaussian filter with zero padding (separable: identical to the 2-D window)."""
    c, r = x.shape[1], window.shape[0] // 2
    x = F.conv2d(x, window.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(x, window.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity averaged over all pixels and channels (scalar, 1 for identical images).

    11×11 Gaussian window with σ 1.5, C1 = 0.01², C2 = 0.03², zero padding at the borders (the 3DGS
    convention, so the numbers compare with published tables).

    Args:
        a, b: [H, W, 3] or [B, H, W, 3] in [0, 1].
    """
    x, y = _to_nchw(a), _to_nchw(b)
    window = gaussian_window(window_size, sigma, device=x.device, dtype=x.dtype)
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov_xy = _blur(x * y, window) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, 20·log10(1 / sqrt(MSE)), per image: scalar for [H, W, 3], [B] for a batch."""
    mse = ((a - b) ** 2).flatten(start_dim=-3).mean(dim=-1)
    return 20.0 * torch.log10(1.0 / torch.sqrt(mse))


def channel_mean_psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The mean over R, G, B of each channel's PSNR in dB ([H, W, 3] → scalar): the paper's code's validation
    PSNR for block weighting. Higher than :func:`psnr` when the channels' errors differ (Jensen)."""
    mse = ((a - b) ** 2).flatten(end_dim=-2).mean(dim=0)  # [3]
    return (20.0 * torch.log10(1.0 / torch.sqrt(mse))).mean()


def scale_regularizer(scales: torch.Tensor) -> torch.Tensor:
    """Mean volume proxy of the neural Gaussians: mean over M of s_x·s_y·s_z ([M, 3] world units; 0 if M = 0)."""
    if scales.shape[0] == 0:
        return scales.sum()
    # the product written out: torch.prod's backward looks for zeros on the host, a GPU sync every step
    return (scales[:, 0] * scales[:, 1] * scales[:, 2]).mean()


def reconstruction_loss(image: torch.Tensor, gt: torch.Tensor, scales: torch.Tensor,
                        cfg: OptimConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1 − λ)·L1 + λ·(1 − SSIM) + λ_scale·mean(prod(scales)).

    Args:
        image, gt: [H, W, 3] in [0, 1].  scales: [M, 3] child scales of the rendered Gaussians.
        cfg: ``lambda_dssim`` (λ) and ``lambda_scale``.

    Returns:
        total (scalar, differentiable) and its weighted terms ``l1``, ``dssim``, ``scale`` (detached; they
        sum to the total).
    """
    parts = {
        "l1": (1.0 - cfg.lambda_dssim) * l1(image, gt),
        "dssim": cfg.lambda_dssim * (1.0 - ssim(image, gt)),
        "scale": cfg.lambda_scale * scale_regularizer(scales),
    }
    total = parts["l1"] + parts["dssim"] + parts["scale"]
    return total, {name: value.detach() for name, value in parts.items()}
