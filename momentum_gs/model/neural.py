"""Per-view neural Gaussians: cull anchors to the camera, decode them, assemble their k children.

Nothing here rasterizes; the trainer passes ``NeuralGaussians.means/quats/scales/opacities/colors`` to
``momentum_gs.render.render``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from momentum_gs.data.camera import Camera
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import DecodedAnchors, Decoder, DecoderInputs
from momentum_gs.render.projection import ALPHA_REACH


@dataclass
class NeuralGaussians:
    """The M kept neural Gaussians of one view and the bookkeeping the strategy and teacher need.

    Attributes:
        means: [M, 3] world units.  quats: [M, 4] unit wxyz.  scales: [M, 3] world units.
        opacities: [M] in (0, 1).  colors: [M, 3] RGB in (0, 1).
        visible: bool [N] anchors that passed culling (V of them).
        anchor_index: [V] long, the indices of the visible anchors (``visible.nonzero()``).
        selection: bool [V * k] children kept (opacity > 0), anchor-major.
        kept: [M] long, the indices of the kept children among the V * k (``selection.nonzero()``).
        neural_opacity: [V, k] all decoded opacities of the visible anchors.
        decoded: the decoder outputs for the visible anchors.
        inputs: what the decoder saw (a teacher decoder can decode the same).
        anchor_scalings: [V, 6] log-scales of the visible anchors (for :func:`child_scales`).
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    visible: torch.Tensor
    anchor_index: torch.Tensor
    selection: torch.Tensor
    kept: torch.Tensor
    neural_opacity: torch.Tensor
    decoded: DecodedAnchors
    inputs: DecoderInputs
    anchor_scalings: torch.Tensor

    @property
    def num(self) -> int:
        """M, the number of kept neural Gaussians."""
        return self.means.shape[0]

    def gaussian_anchors(self) -> torch.Tensor:
        """[M] long: the anchor (index among all N) each kept Gaussian comes from."""
        return self.anchor_index[self.kept // self.neural_opacity.shape[1]]

    def child_index(self) -> torch.Tensor:
        """[M] long: index of each kept Gaussian among all N * k children (anchor-major)."""
        k = self.neural_opacity.shape[1]
        return self.gaussian_anchors() * k + self.kept % k


def visible_anchors(positions: torch.Tensor, scales: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor,
                    width: int, height: int, near: float = 0.2) -> torch.Tensor:
    """bool [N]: anchors in front of the near plane whose screen footprint touches the image.

    The footprint is an isotropic circle around the projected centre with radius
    r · max(scales) · max(fx, fy) · ‖p_cam‖ / z² pixels, r = sqrt(2 ln 255) ≈ 3.33 (``ALPHA_REACH``, the
    Mahalanobis distance beyond which the rasterizer draws nothing). ``max(fx, fy)·‖p_cam‖/z²`` bounds the largest
    singular value of the projection Jacobian (it equals it when fx = fy), so the circle contains the
    footprint of any rotation of the anchor's Gaussian: culling never drops an anchor the rasterizer
    would draw (up to the rasterizer's own 0.3 px² blur).

    Args:
        positions: [N, 3] world units.  scales: [N, 3] world units (``exp(scalings[:, :3])``).
        world_to_cam: [4, 4].  K: [3, 3] pixels.  width, height: pixels.  near: camera z, world units.
    """
    world_to_cam, K = world_to_cam.to(positions), K.to(positions)
    p = positions @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    z = p[:, 2]
    in_front = z > near
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    u = K[0, 0] * p[:, 0] / z_safe + K[0, 2]
    v = K[1, 1] * p[:, 1] / z_safe + K[1, 2]
    focal = torch.maximum(K[0, 0], K[1, 1])
    radius = ALPHA_REACH * scales.amax(dim=-1) * focal * p.norm(dim=-1) / z_safe**2
    touches = (u + radius > 0) & (u - radius < width) & (v + radius > 0) & (v - radius < height)
    return in_front & touches & torch.isfinite(radius)


def child_scales(cov: torch.Tensor, anchor_scalings: torch.Tensor) -> torch.Tensor:
    """[V, k, 3] child scales (world units) = exp(scalings[3:6]) ⊙ sigmoid(cov[..., 0:3])."""
    return torch.exp(anchor_scalings[:, None, 3:6]) * torch.sigmoid(cov[..., :3])


def child_rotations(cov: torch.Tensor) -> torch.Tensor:
    """[V, k, 4] unit quaternions (wxyz) = normalize(cov[..., 3:7])."""
    return F.normalize(cov[..., 3:7], dim=-1)


def decoder_inputs(anchors: AnchorSet, anchor_index: torch.Tensor, camera: Camera,
                   appearance_code: torch.Tensor | None = None) -> DecoderInputs:
    """Features, unit view directions and distances of the anchors ``anchor_index`` ([V] long);
    ``appearance_code`` [a] or None."""
    offsets = anchors.positions.index_select(0, anchor_index) - camera.center.to(anchors.positions)
    dists = offsets.norm(dim=-1, keepdim=True)
    appearance = None
    if appearance_code is not None:
        appearance = appearance_code.reshape(1, -1).expand(offsets.shape[0], -1)
    return DecoderInputs(anchors.features.index_select(0, anchor_index), offsets / dists.clamp_min(1e-12), dists,
                         appearance)


def generate_gaussians(anchors: AnchorSet, decoder: Decoder, camera: Camera,
                       appearance_code: torch.Tensor | None = None, near: float = 0.2,
                       visible: torch.Tensor | None = None) -> NeuralGaussians:
    """The neural Gaussians of ``anchors`` seen from ``camera`` (differentiable w.r.t. anchors and decoder).

    Per visible anchor a and child i: μ = a + offset_i ⊙ exp(scalings[0:3]), scale = exp(scalings[3:6]) ⊙
    sigmoid(cov_i[0:3]), rotation = normalize(cov_i[3:7]); only children with opacity > 0 are kept.
    ``visible`` (bool [N]) overrides the culling, e.g. to decode the same anchors twice.

    The two data-dependent sizes, V and M, are read from the device once each (one ``nonzero`` per mask);
    every gather after that is an ``index_select``, which needs no read-back.
    """
    if visible is None:
        with torch.no_grad():
            scales = torch.exp(anchors.scalings[:, :3])
            visible = visible_anchors(anchors.positions, scales, camera.world_to_cam, camera.K, camera.width,
                                      camera.height, near)
    anchor_index = visible.nonzero()[:, 0]
    inputs = decoder_inputs(anchors, anchor_index, camera, appearance_code)
    decoded = decoder.decode(inputs)
    scalings = anchors.scalings.index_select(0, anchor_index)
    positions = anchors.positions.index_select(0, anchor_index)
    means = positions[:, None] + anchors.offsets.index_select(0, anchor_index) * torch.exp(scalings[:, None, :3])
    selection = (decoded.opacity > 0).reshape(-1)
    kept = selection.nonzero()[:, 0]
    return NeuralGaussians(
        means=means.reshape(-1, 3).index_select(0, kept),
        quats=child_rotations(decoded.cov).reshape(-1, 4).index_select(0, kept),
        scales=child_scales(decoded.cov, scalings).reshape(-1, 3).index_select(0, kept),
        opacities=decoded.opacity.reshape(-1).index_select(0, kept),
        colors=decoded.color.reshape(-1, 3).index_select(0, kept),
        visible=visible,
        anchor_index=anchor_index,
        selection=selection,
        kept=kept,
        neural_opacity=decoded.opacity,
        decoded=decoded,
        inputs=inputs,
        anchor_scalings=scalings,
    )
