"""Front-to-back alpha compositing of sorted Gaussian × tile lists, with a hand-written backward.

Every pair (Gaussian g, tile t) carries the six coefficients of its Mahalanobis form in tile-local
pixel coordinates (u, v) measured from the tile centre:

    ½ dᵀ Q d = k0·u² + k1·uv + k2·v² + k3·u + k4·v + k5,   d = (u, v) - (mean - tile centre),

so log α = ln o - ½ dᵀ Q d for all pixels of a chunk of tiles is one batched matmul of fixed pixel
features [u², uv, v², u, v, 1] with per-pair "logit" coefficients. Local coordinates keep the float32
cancellation small. Colours get an extra channel of ones, so the same matmul that composites colour
also accumulates alpha. When the render will be differentiated, the forward keeps each chunk's blending
weights and transmittances for the backward, up to ``SAVE_FOR_BACKWARD_BYTES`` per render; beyond that
(large images) the backward recomputes them chunk by chunk, so memory stays bounded by one chunk whatever
the image size. Masks are applied with ``threshold`` and products rather than boolean indexing, which is
several times faster on CPU.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from momentum_gs.render.tiles import ALPHA_MIN, TilePlan

ALPHA_MAX = 0.99  # α is clamped here so that 1 - α never reaches 0 (transmittance stays invertible)
TRANS_MIN = 1e-4  # a Gaussian is dropped (and the pixel done) once it would push T to or below this
# Per render, the most bytes of weights, transmittances and clamp masks the forward keeps for the backward
# (instead of recomputing them there); a 160×120 training view needs about 15 MB.
SAVE_FOR_BACKWARD_BYTES = 1 << 28
_SAVED_BYTES_PER_ELEMENT = 9  # float32 weight + float32 transmittance + bool mask
_LOG_ALPHA_MAX = math.log(ALPHA_MAX)
_LOG_ALPHA_SKIP = math.log(ALPHA_MIN) - 1.0


def pixel_features(tile_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[P, 6] features (u², uv, v², u, v, 1) of the pixel centres of a tile, P = tile_size², row-major."""
    centre = (torch.arange(tile_size, dtype=dtype, device=device) + 0.5) - 0.5 * tile_size
    v, u = torch.meshgrid(centre, centre, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)


def pair_coefficients(means2d: Tensor, conics: Tensor, plan: TilePlan) -> Tensor:
    """[M, 6] quadratic-form coefficients of every pair in tile-local pixel coordinates (differentiable)."""
    size = plan.tile_size
    tile_xy = torch.stack([plan.tile_ids % plan.tiles_x, plan.tile_ids // plan.tiles_x], dim=-1)
    mx, my = (means2d[plan.gauss_ids] - (tile_xy.to(means2d.dtype) + 0.5) * size).unbind(-1)
    a, b, c = conics[plan.gauss_ids].unbind(-1)
    lin_x, lin_y = a * mx + b * my, b * mx + c * my
    const = 0.5 * (lin_x * mx + lin_y * my)
    return torch.stack([0.5 * a, b, 0.5 * c, -lin_x, -lin_y, const], dim=-1)


@functools.lru_cache(maxsize=None)
def _skip_threshold(dtype: torch.dtype) -> float:
    """The largest value below ALPHA_MIN in ``dtype``: ``threshold`` keeps x > it, i.e. x >= ALPHA_MIN."""
    limit = torch.tensor(ALPHA_MIN, dtype=dtype)
    return float(torch.nextafter(limit, torch.zeros_like(limit)))


def _weights(feats: Tensor, logits: Tensor, with_mask: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """Blending weights of one chunk.

    Args: feats [P, 6]; logits [B, L, 6], so that log(o·exp(-q)) = feats · logits.
    Returns: weights wᵢ = αᵢTᵢ [B, P, L] (0 where skipped or after the early stop), the transmittance
        after each pair T_{i+1} clamped to >= TRANS_MIN [B, P, L] (a safe divisor), and, if asked,
        where α was not clamped to ALPHA_MAX [B, P, L] bool (None otherwise).
    """
    log_alpha = torch.matmul(feats, logits.transpose(1, 2))
    unclamped = log_alpha < _LOG_ALPHA_MAX if with_mask else None
    # The lower clamp changes no result (exp(_LOG_ALPHA_SKIP) < ALPHA_MIN is skipped anyway) but keeps
    # exp out of its slow path for very negative inputs.
    alpha = log_alpha.clamp_(_LOG_ALPHA_SKIP, _LOG_ALPHA_MAX).exp_()
    alpha = F.threshold_(alpha, _skip_threshold(alpha.dtype), 0.0)
    one_minus = 1.0 - alpha
    trans_after = torch.cumprod(one_minus, dim=-1)
    # Tᵢαᵢ = T_{i+1}αᵢ / (1 - αᵢ); zeroing T_{i+1} <= TRANS_MIN drops exactly the early-stopped suffix.
    weights = F.threshold(trans_after, TRANS_MIN, 0.0).mul_(alpha).div_(one_minus)
    return weights, trans_after.clamp_(min=TRANS_MIN), unclamped


def _chunk_backward(feats: Tensor, logits: Tensor, colors: Tensor, grad_out: Tensor,
                    clamp_possible: bool, saved: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Gradients w.r.t. the logits [B, L, 6] and augmented colours [B, D+1, L] of one chunk.

    Args: feats [P, 6], logits [B, L, 6], colors [B, L, D+1], grad_out [B, D+1, P]; ``saved``: the
        forward's ``_weights(feats, logits, with_mask=True)`` of this chunk, or None to recompute them.

    With wᵢ = αᵢTᵢ, outputs Y = Σ wᵢĉᵢ (ĉ = colour plus a 1 for alpha) and g = ∂L/∂Y per pixel:
        αᵢ ∂L/∂αᵢ = wᵢ (g·ĉᵢ - Σ_{j>i} wⱼ (g·ĉⱼ) / T_{i+1}),
    and ∂α/∂logit = α·feature where α is not clamped.
    """
    weights, trans_after, unclamped = saved if saved is not None else _weights(feats, logits, clamp_possible)
    grad_out_t = grad_out.transpose(1, 2)  # [B, P, D+1]
    g_dot_c = torch.bmm(grad_out_t, colors.transpose(1, 2))  # [B, P, L]
    weighted = weights * g_dot_c
    behind = weighted.sum(-1, keepdim=True) - weighted.cumsum(-1)  # Σ_{j>i} wⱼ (g·ĉⱼ)
    grad_log_alpha = torch.addcdiv(g_dot_c, behind, trans_after, value=-1.0).mul_(weights)
    if clamp_possible:
        grad_log_alpha.mul_(unclamped)
    grad_logits = torch.matmul(feats.T, grad_log_alpha).transpose(1, 2)
    grad_colors = torch.bmm(grad_out, weights)
    return grad_logits, grad_colors


class CompositeTiles(torch.autograd.Function):
    """(coefs [M, 6], opacities [M], colors [M, D], plan, for_backward) -> per tile [T, D+1, P] (colour, alpha).

    Colour excludes the background; the last channel is alpha = 1 - T_final. Empty tiles give zeros.
    ``for_backward``: the render will be differentiated, so the forward may keep what the backward needs.
    """

    @staticmethod
    def forward(ctx, coefs: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan,
                for_backward: bool = False) -> Tensor:
        ctx.plan = plan
        ctx.save_for_backward(coefs, opacities, colors)
        feats = pixel_features(plan.tile_size, coefs.dtype, coefs.device)
        table = _pair_table(coefs, opacities, colors)
        out = coefs.new_zeros(plan.num_tiles, colors.shape[1] + 1, feats.shape[0])
        keep = for_backward and saved_bytes(plan) <= SAVE_FOR_BACKWARD_BYTES
        ctx.chunk_state = [] if keep else None
        for tiles, pairs in plan.chunks:
            chunk = table[pairs]
            state = _weights(feats, chunk[..., :6], with_mask=keep)
            out[tiles] = torch.bmm(chunk[..., 6:].transpose(1, 2), state[0].transpose(1, 2))
            if keep:
                ctx.chunk_state.append(state)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        plan = ctx.plan
        coefs, opacities, colors = ctx.saved_tensors
        feats = pixel_features(plan.tile_size, coefs.dtype, coefs.device)
        table = _pair_table(coefs, opacities, colors)
        grad_table = torch.zeros_like(table)
        clamp_possible = bool((opacities >= ALPHA_MAX).any())
        chunk_state, ctx.chunk_state = ctx.chunk_state, None  # a second backward recomputes
        for i, (tiles, pairs) in enumerate(plan.chunks):
            saved = None
            if chunk_state is not None:
                saved, chunk_state[i] = chunk_state[i], None  # each chunk's state is freed once used
            chunk = table[pairs]
            grad_logits, grad_colors = _chunk_backward(
                feats, chunk[..., :6], chunk[..., 6:], grad_out[tiles], clamp_possible, saved)
            grad_table[pairs] = torch.cat([grad_logits, grad_colors.transpose(1, 2)], dim=-1)
        # logits = (-coefs, with ln o added to the constant term); the last row is the padding pair.
        grad_logits = grad_table[:-1, :6]
        grad_opacities = grad_logits[:, 5] / opacities.clamp(min=torch.finfo(opacities.dtype).tiny)
        return -grad_logits, grad_opacities, grad_table[:-1, 6:-1], None, None


@torch.no_grad()
def median_pairs(coefs: Tensor, opacities: Tensor, plan: TilePlan) -> Tensor:
    """[T, P] int64 per pixel: the pair at which the transmittance crosses one half, M where none is drawn.

    That is the last drawn pair (α >= 1/255) whose transmittance in front of it is still above 0.5 — the
    surface a pixel sees at its median depth; when T never falls to 0.5 it is the last drawn pair. (The
    early stop never matters here: after a pair with T > 0.5 and α <= 0.99, T > 1e-4.) M = len(coefs)
    indexes a padding row, so ``values_with_padding[result]`` gathers a per-pair value with a fill.
    """
    feats = pixel_features(plan.tile_size, coefs.dtype, coefs.device)
    table = _pair_table(coefs, opacities, coefs.new_zeros(len(coefs), 0))
    out = torch.full((plan.num_tiles, feats.shape[0]), len(coefs), dtype=torch.int64, device=coefs.device)
    for tiles, pairs in plan.chunks:
        alpha = torch.matmul(feats, table[pairs][..., :6].transpose(1, 2))
        alpha = F.threshold_(alpha.clamp_(_LOG_ALPHA_SKIP, _LOG_ALPHA_MAX).exp_(), _skip_threshold(alpha.dtype), 0.0)
        trans_before = torch.cumprod(1.0 - alpha, dim=-1) / (1.0 - alpha)  # [B, P, L]
        front = (alpha > 0) & (trans_before > 0.5)
        length = front.shape[-1]
        last = length - 1 - front.flip(-1).to(torch.uint8).argmax(-1)  # [B, P]
        picked = pairs[:, None, :].expand(-1, feats.shape[0], -1).gather(-1, last[..., None])[..., 0]
        out[tiles] = torch.where(front.any(-1), picked, len(coefs))
    return out


def saved_bytes(plan: TilePlan) -> int:
    """Bytes the forward keeps for the backward when it keeps every chunk's weights (see the module docstring)."""
    pixels = plan.tile_size * plan.tile_size
    return sum(pairs.numel() for _, pairs in plan.chunks) * pixels * _SAVED_BYTES_PER_ELEMENT


def _pair_table(coefs: Tensor, opacities: Tensor, colors: Tensor) -> Tensor:
    """[M+1, 6 + D + 1] per pair: logits, colour, 1. Row M is the transparent pair that pads the lists."""
    log_opacity = torch.log(opacities.clamp(min=torch.finfo(opacities.dtype).tiny))
    logits = torch.cat([-coefs[:, :5], (log_opacity - coefs[:, 5])[:, None]], dim=-1)
    table = torch.cat([logits, colors, torch.ones_like(opacities)[:, None]], dim=-1)
    padding = table.new_zeros(1, table.shape[1])
    padding[0, 5] = torch.finfo(table.dtype).min  # far below the skip level: never draws
    return torch.cat([table, padding])
