"""What a render returns (``RenderOutput``) and the extra per-pixel maps every backend can add to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from momentum_gs.render.projection import surface_values

# The per-pixel maps ``render(extras=...)`` can add to its output, and the channels each one takes. All but
# "median_depth" are composited as extra colour channels; the median depth picks one Gaussian per pixel.
EXTRA_CHANNELS = {"depth": 1, "normal": 3, "median_depth": 1}
BLENDED_EXTRAS = ("depth", "normal")


@dataclass
class RenderOutput:
    """What ``render`` returns for one camera.

    Attributes:
        image: [H, W, D] composited colour, background included.
        alpha: [H, W, 1] accumulated opacity 1 - T_final.
        radii: [N] int32 screen radius in pixels; 0 = culled / not drawn.
        means2d: [N, 2] pixel coordinates of the projected means. Its ``.grad`` (∂loss/∂means2d, per
            pixel) is filled by backward; the densification statistics read it.
        depths: [N] camera-space z in world units.
        depth: [H, W, 1] Σ Tᵢαᵢzᵢ, the Gaussians' camera-space z (world units) blended like the colour over
            a background of 0, so NOT divided by alpha (see ``normalised_depth``); None unless asked for.
        normal: [H, W, 3] Σ Tᵢαᵢnᵢ, the Gaussians' camera-facing unit normals (the axis of the smallest
            scale, camera coordinates) blended the same way: not unit length; None unless asked for.
        median_depth: [H, W, 1] camera z of the Gaussian at which the pixel's transmittance crosses 0.5
            (the last drawn one if it never does; 0 where nothing is drawn). Its gradient reaches only that
            Gaussian's z (the choice is piecewise constant). None unless asked for.
        pairs: the Gaussian × tile pairs composited (the render's work); None where the backend does not count them.
    """

    image: Tensor
    alpha: Tensor
    radii: Tensor
    means2d: Tensor
    depths: Tensor
    depth: Tensor | None = None
    normal: Tensor | None = None
    median_depth: Tensor | None = None
    pairs: int | None = None

    def normalised_depth(self, eps: float = 1e-10) -> Tensor:
        """[H, W, 1] depth / alpha: the mean z of what a pixel sees (0 where nothing is drawn)."""
        if self.depth is None:
            raise ValueError("normalised_depth needs a render with extras=('depth',)")
        return self.depth / self.alpha.clamp(min=eps)


def check_extras(extras: Sequence[str]) -> tuple[str, ...]:
    """``extras`` as a tuple without repeats; ValueError for a name not in ``EXTRA_CHANNELS``."""
    extras = (extras,) if isinstance(extras, str) else tuple(dict.fromkeys(extras))
    for name in extras:
        if name not in EXTRA_CHANNELS:
            raise ValueError(f"unknown render extra {name!r}; available: {', '.join(EXTRA_CHANNELS)}")
    return extras


def blended_extras(extras: tuple[str, ...]) -> tuple[str, ...]:
    """The names in ``extras`` that are composited as colour channels (``BLENDED_EXTRAS``), in order."""
    return tuple(name for name in extras if name in BLENDED_EXTRAS)


def extra_values(means: Tensor, quats: Tensor, scales: Tensor, world_to_cam: Tensor,
                 extras: tuple[str, ...]) -> Tensor:
    """[N, E] per-Gaussian values of ``extras``, in order, that compositing turns into the maps: z [1]
    for "depth", the camera-facing normal [3] for "normal" (see ``surface_values``)."""
    z, normals = surface_values(means, quats, scales, world_to_cam)
    values = {"depth": z[:, None], "normal": normals}
    return torch.cat([values[name] for name in extras], dim=-1)


def split_extras(maps: Tensor, extras: tuple[str, ...]) -> dict[str, Tensor]:
    """[H, W, E] composited ``extra_values`` channels -> {name: [H, W, channels]}."""
    return dict(zip(extras, maps.split([EXTRA_CHANNELS[name] for name in extras], dim=-1)))


def differentiated(*tensors: Tensor) -> bool:
    """True when a render made from ``tensors`` will be differentiated: grad mode is on and one requires grad.
    Backends use it to keep (or compute) only what a backward, or the statistics after it, will read."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
