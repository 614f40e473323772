"""Multi-view photometric consistency (``geometry.lambda_multiview``): a training photo's pixels, put in 3D at the
depth the model renders there, must look the same in a neighbouring photo as in their own.

The photos are compared, not the renders: a Gaussian at a wrong depth that fits its colour in every view (a skirt
between a roof's edge and the ground, coloured by view) still lands on the wrong part of the neighbour's photo.
The comparison is the normalized cross-correlation of 7 × 7 grey windows of the photos at half size (14 × 14 pixels),
which a change of exposure between the photos does not move; windows without texture tell nothing about depth and
are left out. A pixel the neighbour cannot see (its depth there lies behind the neighbour's own rendered surface) is
left out too: the neighbour's surface is the one it rendered when it was last trained (:class:`ViewDepths`), so the
test costs no extra render.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NCC_WINDOW = 7  # pixels a side of the windows compared
TEXTURE_MIN = 2e-4  # grey variance (0-1 grey) under which a window has too little texture to place a depth
OCCLUDED = 0.02  # a pixel is hidden from the neighbour where its depth there is this much past the neighbour's surface
SCALE = 2  # the photos are compared at 1/2 size: 4 times fewer pixels, and windows of 14 full-size pixels


def neighbour_views(cameras: list, count: int = 4, max_angle_deg: float = 30.0) -> list[list[int]]:
    """Per training camera, the ``count`` nearest others (by centre) whose optical axes are within
    ``max_angle_deg`` of its own: the photos that see most of what it sees from a different place."""
    centres = torch.stack([c.center.double() for c in cameras])
    axes = torch.stack([c.world_to_cam[2, :3].double() for c in cameras])
    cos_max = math.cos(math.radians(max_angle_deg))
    out = []
    for i in range(len(cameras)):
        distance = (centres - centres[i]).norm(dim=1)
        fits = (axes @ axes[i] >= cos_max) & (distance > 0)
        order = torch.argsort(torch.where(fits, distance, torch.full_like(distance, math.inf)))
        out.append([int(j) for j in order[:count] if fits[j]])
    return out


class ViewDepths:
    """The surface (camera z at 1/SCALE size, the nearest of each SCALE × SCALE pixels, float16) each training view
    rendered when it was last trained, by (block, view): what tells whether a neighbour sees a pixel; and each view's
    photo as the term compares it (grey, 1/SCALE size), made once, where the photo is (on the training device)."""

    def __init__(self) -> None:
        self.depths: dict[tuple[int, int], torch.Tensor] = {}
        self.greys: dict[int, torch.Tensor] = {}

    def keep(self, block: int, view: int, depth: torch.Tensor, alpha: torch.Tensor) -> None:
        """Keep a rendered view's surface (``depth``, ``alpha`` [H, W, 1], blended); empty pixels are infinitely far."""
        with torch.no_grad():
            z = torch.where(alpha > 0.5, depth / alpha.clamp(min=1e-6), torch.full_like(depth, math.inf))
            self.depths[(block, view)] = _blocks(z).amin(3).amin(1)[..., 0].to(torch.float16)

    def get(self, block: int, view: int) -> torch.Tensor | None:
        return self.depths.get((block, view))

    def grey(self, view: int, photo: torch.Tensor | None = None) -> torch.Tensor | None:
        """[H / SCALE, W / SCALE] ``view``'s photo as the term compares it, made from ``photo`` [H, W, 3] the first
        time it is given; None before."""
        if view not in self.greys and photo is not None:
            with torch.no_grad():
                self.greys[view] = _half(photo.to(torch.float32)).mean(-1)
        return self.greys.get(view)


def _halved_K(camera, like: torch.Tensor) -> torch.Tensor:
    """[3, 3] ``camera``'s intrinsics for its image at 1/SCALE size (pixel centres at .5 stay centres)."""
    K = camera.K.to(like).clone()
    K[:2] /= SCALE
    return K


def _in_other(z: torch.Tensor, camera, other) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels of ``camera``'s image at 1/SCALE size at camera depth ``z`` [h, w] as seen by ``other`` at 1/SCALE
    size: x, y (pixels, centres at .5) and z."""
    h, w = z.shape
    K, Ko = _halved_K(camera, z), _halved_K(other, z)
    v = (torch.arange(h, dtype=z.dtype, device=z.device)[:, None] + 0.5 - K[1, 2]) / K[1, 1]
    u = (torch.arange(w, dtype=z.dtype, device=z.device)[None, :] + 0.5 - K[0, 2]) / K[0, 0]
    a, b = camera.world_to_cam.to(z), other.world_to_cam.to(z)
    relative = b[:3, :3] @ a[:3, :3].T
    shift = b[:3, 3] - relative @ a[:3, 3]
    # each coordinate of the point in ``other``: relative @ (u z, v z, z) + shift, written out (a 3 × 3 product
    # over every pixel is slow as a matrix product)
    x, y, zo = ((relative[i, 0] * u + relative[i, 1] * v + relative[i, 2]) * z + shift[i] for i in range(3))
    safe = zo.clamp(min=1e-6)
    return Ko[0, 0] * x / safe + Ko[0, 2], Ko[1, 1] * y / safe + Ko[1, 2], zo


def _box_sums(maps: torch.Tensor) -> torch.Tensor:
    """[C, H, W] sums over the NCC_WINDOW × NCC_WINDOW window around each pixel (zeros past the edges), by running
    sums along each axis: a few operations a pixel whatever the window."""
    r = NCC_WINDOW // 2
    x = maps
    for dim in (1, 2):
        running = F.pad(x, (r + 1, r) if dim == 2 else (0, 0, r + 1, r)).cumsum(dim)
        n = running.shape[dim]
        x = running.narrow(dim, NCC_WINDOW, n - NCC_WINDOW) - running.narrow(dim, 0, n - NCC_WINDOW)
    return x


class _BoxSums(torch.autograd.Function):
    """:func:`_box_sums` with its backward: the window sum is its own adjoint."""

    @staticmethod
    def forward(ctx, maps: torch.Tensor) -> torch.Tensor:
        return _box_sums(maps)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _box_sums(grad)


def _window_ncc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized cross-correlation of ``a`` and ``b`` [H, W] over the windows whose every pixel ``mask`` keeps, and
    the windows kept (those with texture in ``a``)."""
    m = mask.to(a.dtype)
    a, b = (a - 0.5) * m, (b - 0.5) * m  # centred, so that float32 running sums stay small; NCC does not move
    count, sa, sb, saa, sbb, sab = _BoxSums.apply(torch.stack([m, a, b, a * a, b * b, a * b]))
    n = NCC_WINDOW * NCC_WINDOW
    var_a = saa / n - (sa / n) ** 2
    var_b = sbb / n - (sb / n) ** 2
    cov = sab / n - sa * sb / n ** 2
    kept = (count > n - 0.5) & (var_a > TEXTURE_MIN)
    return cov / torch.sqrt((var_a * var_b).clamp(min=1e-12)), kept


def _blocks(image: torch.Tensor) -> torch.Tensor:
    """[H, W, C] → [H // SCALE, SCALE, W // SCALE, SCALE, C]: each SCALE × SCALE pixels (a last odd row or column
    left out), a view where it can be. Reduced over dimension 3, then 1, it is pooled in a fraction of the time that
    PyTorch's pooling takes on the same [H, W, C] image (channels-last to it)."""
    h, w = image.shape[0] // SCALE, image.shape[1] // SCALE
    return image[:h * SCALE, :w * SCALE].reshape(h, SCALE, w, SCALE, image.shape[2])


def _half(image: torch.Tensor) -> torch.Tensor:
    """[H, W, C] → [H // SCALE, W // SCALE, C], the mean of each SCALE × SCALE pixels."""
    return _blocks(image).mean(3).mean(1)


def multiview_loss(depth: torch.Tensor, alpha: torch.Tensor, grey: torch.Tensor, camera, other_grey: torch.Tensor,
                   other_depth: torch.Tensor, other) -> torch.Tensor:
    """The mean of (1 − NCC) / 2 over ``camera``'s textured windows seen by ``other``, at 1/SCALE size: its photo
    (``grey``) against the neighbour's (``other_grey``) sampled where the rendered surface (``depth``, ``alpha``
    [H, W, 1], blended) lands in ``other``; both photos and ``other_depth``, the neighbour's surface, as
    :class:`ViewDepths` keeps them. 0 where no window is left."""
    depth, alpha = _half(depth), _half(alpha)
    z = depth[..., 0] / alpha[..., 0].clamp(min=1e-6)
    x, y, zo = _in_other(z, camera, other)
    ho, wo = other_grey.shape
    grid = torch.stack([2.0 * x / wo - 1.0, 2.0 * y / ho - 1.0], dim=-1)[None]
    seen = F.grid_sample(other_grey.to(z)[None, None], grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[0, 0]
    with torch.no_grad():
        surface = other_depth.to(z)
        sx = x.long().clamp(0, surface.shape[1] - 1)
        sy = y.long().clamp(0, surface.shape[0] - 1)
        visible = zo <= surface[sy, sx] * (1.0 + OCCLUDED)
        inside = (x >= 0.5) & (x <= wo - 0.5) & (y >= 0.5) & (y <= ho - 0.5) & (zo > 0)
        mask = inside & visible & (alpha[..., 0] > 0.5)
    ncc, kept = _window_ncc(grey.to(z), seen, mask)
    # the mean over the kept windows, 0 where none is kept, written without reading ``kept`` on the host (on a GPU
    # a read waits for the whole step's work)
    error = torch.where(kept, (1.0 - ncc.clamp(-1.0, 1.0)) * 0.5, torch.zeros_like(ncc))
    return error.sum() / kept.sum().clamp(min=1)
