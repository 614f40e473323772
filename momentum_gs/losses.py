"""Pure loss and metric functions shared by training, evaluation and benchmarks.

Images are [H, W, 3] (or a batch [B, H, W, 3]) with values in [0, 1].
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from momentum_gs.config import OptimConfig
from momentum_gs.render.kernels.build import use_cpp
from momentum_gs.render.kernels.ops import FusedMeanSSIM

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


@functools.lru_cache(maxsize=16)
def _cached_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`gaussian_window`, built once per size, σ, dtype and device (never modified in place)."""
    return gaussian_window(size, sigma, device=device, dtype=dtype)


def _to_nchw(image: torch.Tensor) -> torch.Tensor:
    """[H, W, C] or [B, H, W, C] → [B, C, H, W]."""
    if image.dim() == 3:
        image = image[None]
    return image.permute(0, 3, 1, 2)


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Per-channel 'same' Gaussian filter with zero padding (separable: identical to the 2-D window).

    The window is symmetric, so the filter is its own adjoint: blurring a gradient back-propagates it.
    """
    c, r = x.shape[1], window.shape[0] // 2
    x = F.conv2d(x, window.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(x, window.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def _conv_layout(dtype: torch.dtype) -> torch.memory_format:
    """The memory format in which the depthwise blur runs fastest on the CPU: oneDNN's float32 kernels
    want channels-last, the generic kernels of other dtypes contiguous [B, C, H, W]."""
    return torch.channels_last if dtype == torch.float32 else torch.contiguous_format


class _MeanSSIM(torch.autograd.Function):
    """Mean SSIM of two [B, C, H, W] images, with a hand-written backward.

    SSIM needs the local moments E[x], E[y], E[x² + y²] and E[xy] (the variances enter only as their sum), all
    from one blur of the images and their products stacked along the channels. The backward blurs the three
    maps of ∂SSIM/∂moment that it needs in one call too (the blur is self-adjoint).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([x, y, x * x + y * y, x * y], dim=1)
        moments = _blur(stacked.contiguous(memory_format=_conv_layout(x.dtype)), window)
        mu_x, mu_y, e_sq, e_xy = moments.split(x.shape[1], dim=1)
        mu_xy, mu_sq = mu_x * mu_y, mu_x * mu_x + mu_y * mu_y
        luminance = 2 * mu_xy + SSIM_C1                   # A1 = 2μxμy + C1
        contrast = 2 * (e_xy - mu_xy) + SSIM_C2           # A2 = 2σxy + C2
        luminance_norm = mu_sq + SSIM_C1                  # B1 = μx² + μy² + C1
        contrast_norm = (e_sq - mu_sq) + SSIM_C2          # B2 = σx² + σy² + C2
        denominator = luminance_norm * contrast_norm
        ssim_map = luminance * contrast / denominator
        ctx.save_for_backward(x, y, mu_x, mu_y, luminance, contrast, luminance_norm, contrast_norm, denominator,
                              ssim_map)
        ctx.window = window
        return ssim_map.mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, y, mu_x, mu_y, luminance, contrast, luminance_norm, contrast_norm, denominator, ssim_map = \
            ctx.saved_tensors
        # with S = A1·A2 / (B1·B2) and D = B1·B2, the moments' gradients are 2·scale times
        #   ∂/∂E[x] = E[y]·p + E[x]·q,   ∂/∂E[y] = E[x]·p + E[y]·q,   ∂/∂E[x² + y²] = −S / (2·B2),   ∂/∂E[xy] = A1 / D
        # where p = (A2 − A1) / D and q = S·(B1 − B2) / D
        scale = grad / ssim_map.numel()
        inverse = 1 / denominator
        p = (contrast - luminance) * inverse
        q = ssim_map * (luminance_norm - contrast_norm) * inverse
        need_x, need_y = ctx.needs_input_grad[:2]
        maps = ([mu_y * p + mu_x * q] if need_x else []) + ([mu_x * p + mu_y * q] if need_y else [])
        maps += [ssim_map / contrast_norm, luminance * inverse]
        *by_mean, by_sq, by_xy = _blur(torch.cat(maps, dim=1), ctx.window).split(x.shape[1], dim=1)
        grad_x = (2 * scale) * (by_mean[0] - by_sq * x + by_xy * y) if need_x else None
        grad_y = (2 * scale) * (by_mean[-1] - by_sq * y + by_xy * x) if need_y else None
        return grad_x, grad_y, None


def ssim(a: torch.Tensor, b: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity averaged over all pixels and channels (scalar, 1 for identical images).

    11×11 Gaussian window with σ 1.5, C1 = 0.01², C2 = 0.03², zero padding at the borders (the 3DGS
    convention, so the numbers compare with published tables).

    Args:
        a, b: [H, W, 3] or [B, H, W, 3] in [0, 1].
    """
    window = _cached_window(window_size, sigma, a.dtype, a.device)
    # the same function in C++ (momentum_gs/render/kernels/csrc/ssim.cpp), for windows of up to 63 taps
    if use_cpp(a) and a.dtype == b.dtype and window_size <= 63:
        batch = a if a.dim() == 4 else a[None]
        return FusedMeanSSIM.apply(batch, b if b.dim() == 4 else b[None], window, SSIM_C1, SSIM_C2)
    return _MeanSSIM.apply(_to_nchw(a), _to_nchw(b), window)


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


def flatten_loss(scales: torch.Tensor) -> torch.Tensor:
    """Mean over M of each Gaussian's smallest scale ([M, 3] world units; 0 if M = 0): pressed towards 0 it
    makes every Gaussian a disc, whose shortest axis is then a surface normal."""
    if scales.shape[0] == 0:
        return scales.sum()
    return scales.amin(dim=-1).mean()


def depth_to_normals(depth: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-space unit normals of the surface a depth map describes, facing the camera.

    Args: depth [H, W, 1] camera z (world units; 0 = nothing), K [3, 3] pixel intrinsics.
    Returns: normals [H, W, 3] from central differences of the unprojected points (zero on the one-pixel
        border), and valid [H, W, 1] bool: the pixel and its four neighbours have a depth.
    """
    height, width = depth.shape[:2]
    ys = torch.arange(height, dtype=depth.dtype, device=depth.device) + 0.5
    xs = torch.arange(width, dtype=depth.dtype, device=depth.device) + 0.5
    ray_y, ray_x = torch.meshgrid((ys - K[1, 2]) / K[1, 1], (xs - K[0, 2]) / K[0, 0], indexing="ij")
    points = depth * torch.stack([ray_x, ray_y, torch.ones_like(ray_x)], dim=-1)  # [H, W, 3]
    along_x = points[1:-1, 2:] - points[1:-1, :-2]
    along_y = points[2:, 1:-1] - points[:-2, 1:-1]
    # y down × x right points towards the camera (-z) for a surface facing it
    inner = F.normalize(torch.cross(along_y, along_x, dim=-1), dim=-1)
    normals = F.pad(inner.permute(2, 0, 1), (1, 1, 1, 1)).permute(1, 2, 0)
    has = depth[..., 0] > 0
    near = has[1:-1, 1:-1] & has[1:-1, 2:] & has[1:-1, :-2] & has[2:, 1:-1] & has[:-2, 1:-1]
    valid = F.pad(near, (1, 1, 1, 1))[..., None]
    return normals, valid


def depth_normal_loss(depth: torch.Tensor, alpha: torch.Tensor, normal: torch.Tensor,
                      K: torch.Tensor) -> torch.Tensor:
    """Mean over covered pixels of α − n̄·N: how far the blended Gaussian normals n̄ = ΣTᵢαᵢnᵢ ([H, W, 3], as
    rendered) stray from the normals N of the rendered surface (``depth_to_normals`` of depth / α).

    Σ Tᵢαᵢ (1 − nᵢ·N) summed over a pixel's Gaussians equals α − n̄·N, so each Gaussian is turned towards the
    surface it lies on, and the surface towards the Gaussians, in proportion to its weight. Pixels without a
    depth in their 3×3 cross are left out; 0 when there are none.
    """
    surface, valid = depth_to_normals(depth / alpha.clamp(min=1e-6), K)
    valid = valid & (alpha > 0.5)
    per_pixel = alpha - (normal * surface).sum(-1, keepdim=True)
    count = valid.sum()
    return torch.where(valid, per_pixel, torch.zeros_like(per_pixel)).sum() / count.clamp(min=1)


SPARSE_DEPTH_BETA = 0.05  # relative depth error where the sparse-depth term turns from quadratic to linear


def sparse_depth_loss(depth: torch.Tensor, alpha: torch.Tensor, pixels: torch.Tensor, targets: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """The weighted mean, over the SfM points a photo saw (``pixels`` [n, 2] int64 x, y; ``targets`` [n] depths;
    ``weights`` [n]), of the smooth-L1 relative error of the rendered depth (``depth`` / ``alpha``, [H, W, 1]) there:
    robust to a wrong point, and the same pull near and far. Points on pixels the render leaves mostly empty
    (α ≤ 0.5) are left out; 0 when none is left."""
    a = alpha[pixels[:, 1], pixels[:, 0], 0]
    rendered = depth[pixels[:, 1], pixels[:, 0], 0] / a.clamp(min=1e-6)
    error = F.smooth_l1_loss(rendered / targets, torch.ones_like(targets), reduction="none", beta=SPARSE_DEPTH_BETA)
    w = torch.where(a > 0.5, weights, torch.zeros_like(weights))
    return (w * error).sum() / w.sum().clamp(min=1e-12)


DEPTH_SMOOTH_EDGE = 10.0  # per unit of colour step (0-1) between two pixels: their depth step's weight falls by e


def depth_smooth_loss(depth: torch.Tensor, alpha: torch.Tensor, photo: torch.Tensor,
                      edge: float = DEPTH_SMOOTH_EDGE) -> torch.Tensor:
    """Mean, over the pairs of neighbouring pixels (across and down) that the render covers (α > 0.5 at both), of
    the step of the rendered log depth (``depth`` / ``alpha``, [H, W, 1]) between them times exp(−``edge`` · c), for
    c the mean step of the ``photo``'s channels ([H, W, 3], 0-1) there: the depth held flat where the photo shows no
    edge, and free to step where it does. 0 where no pair is covered."""
    log_depth = (depth / alpha.clamp(min=1e-6)).clamp(min=1e-6).log()[..., 0]
    solid = alpha[..., 0] > 0.5
    total, count = log_depth.new_zeros(()), log_depth.new_zeros(())
    for dim in (0, 1):
        both = solid.narrow(dim, 0, solid.shape[dim] - 1) & solid.narrow(dim, 1, solid.shape[dim] - 1)
        calm = torch.exp(-edge * photo.diff(dim=dim).abs().mean(-1))
        step = log_depth.diff(dim=dim).abs() * calm
        total = total + torch.where(both, step, torch.zeros_like(step)).sum()
        count = count + both.sum()
    return total / count.clamp(min=1)
