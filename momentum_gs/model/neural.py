"""Per-view neural Gaussians: cull anchors to the camera, decode them, assemble their k children.

Two rules pick the anchors a view decodes (``RenderConfig.anchor_filter``):

- "reference" (:func:`reference_visible_anchors`, the default): the paper's code. Scaffold-GS's
  ``visible_filter`` runs the 3DGS preprocessing on the anchors as Gaussians and keeps those with a radius
  > 0: in front of z = 0.2, EWA footprint (3σ, 0.3 px² blur, Jacobian clamped at 1.3× the half field of
  view) touching a 16-px tile of the image.
- "bound" (:func:`visible_anchors`): a circle that contains every footprint the rasterizer could draw, so it
  never drops an anchor the rasterizer would draw. It decodes more off-screen anchors than the reference,
  which stops at 3σ and clamps the Jacobian of far off-screen anchors; the reference, in turn, keeps tiny
  anchors up to ~3.5 px outside the image (its least radius is 3 px) that "bound" drops. Either difference
  changes the visit counts pruning uses and the normalisation of the consistency loss, hence the reference
  is the default.

Nothing here rasterizes; the trainer passes ``NeuralGaussians.means/quats/scales/opacities/colors`` to
``momentum_gs.render.render``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from momentum_gs.config import ANCHOR_FILTERS
from momentum_gs.data.camera import Camera
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import DecodedAnchors, Decoder, DecoderInputs
from momentum_gs.render.kernels.build import use_cpp
from momentum_gs.render.kernels.ops import FusedChildren, reference_visible
from momentum_gs.render.projection import ALPHA_REACH

REFERENCE_TILE = 16  # pixels; the tile edge (BLOCK_X = BLOCK_Y) of the reference rasterizer
REFERENCE_FOV_REACH = 1.3  # the reference clamps the EWA Jacobian's ray at 1.3 × tan(half field of view)
REFERENCE_BLUR = 0.3  # pixels², added to the diagonal of the anchor's 2D covariance


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
    """bool [N]: anchors in front of the near plane whose screen footprint touches the image ("bound" rule).

    Not the paper's rule (that is :func:`reference_visible_anchors`): a conservative superset of the
    anchors the rasterizer would draw, kept as ``anchor_filter="bound"``. It never drops a drawn anchor and
    keeps more off-screen anchors than the reference; only tiny anchors centred up to ~3.5 px outside the
    image are kept by the reference and not here.

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


@torch.no_grad()
def reference_visible_anchors(positions: torch.Tensor, scales: torch.Tensor, world_to_cam: torch.Tensor,
                              K: torch.Tensor, width: int, height: int, near: float = 0.2) -> torch.Tensor:
    """bool [N]: the paper's anchor pre-filter (Scaffold-GS ``visible_filter``), radius > 0 in 3DGS terms.

    Each anchor is a Gaussian with scales ``scales`` and identity rotation (Σ = diag(s²), world frame). Kept
    when its camera z > ``near``, its 2D covariance J W Σ Wᵀ Jᵀ + 0.3 I is invertible, and the box of
    half-size ceil(3 sqrt(λ_max)) px around its centre touches a 16-px tile of the image. Like the
    reference: the Jacobian's ray is clamped at 1.3 width / (2 fx) (resp. height / (2 fy)) around the
    principal point, and the tile grid covers ceil(width / 16) × ceil(height / 16) tiles, so on the right
    and bottom it may keep anchors up to the next multiple of 16 px. Computed in ``positions``' dtype.

    Args:
        positions: [N, 3] world units.  scales: [N, 3] world units (``exp(scalings[:, :3])``).
        world_to_cam: [4, 4].  K: [3, 3] pixels.  width, height: pixels.  near: camera z, world units.
    """
    world_to_cam, K = world_to_cam.to(positions), K.to(positions)
    t = positions @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    in_front = t[:, 2] > near
    z = torch.where(in_front, t[:, 2], torch.ones_like(t[:, 2]))
    a, b, c = _reference_cov2d(t, z, scales, world_to_cam[:3, :3], K, width, height)
    det = a * c - b * b
    mid = 0.5 * (a + c)
    lambda_max = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.1))
    radius = torch.ceil(3.0 * torch.sqrt(lambda_max))
    # the reference's pixel coordinates put pixel centres on integers; ours (K) on +0.5
    u = K[0, 0] * t[:, 0] / z + K[0, 2] - 0.5
    v = K[1, 1] * t[:, 1] / z + K[1, 2] - 0.5
    drawn = _touches_a_tile(u, radius, width) & _touches_a_tile(v, radius, height)
    return in_front & (det != 0) & torch.isfinite(radius) & (radius > 0) & drawn


def _reference_cov2d(t: torch.Tensor, z: torch.Tensor, scales: torch.Tensor, rotation: torch.Tensor,
                     K: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, ...]:
    """(a, b, c), each [N] pixels²: the blurred 2D covariance [[a, b], [b, c]] of axis-aligned world
    Gaussians ``scales`` [N, 3] at camera points ``t`` [N, 3] (``z`` [N], positive), as the reference."""
    fx, fy = K[0, 0], K[1, 1]
    lim_x, lim_y = REFERENCE_FOV_REACH * width / (2 * fx), REFERENCE_FOV_REACH * height / (2 * fy)
    tx = torch.minimum(torch.maximum(t[:, 0] / z, -lim_x), lim_x) * z
    ty = torch.minimum(torch.maximum(t[:, 1] / z, -lim_y), lim_y) * z
    # rows of J W diag(s); J = [[fx/z, 0, -fx tx/z²], [0, fy/z, -fy ty/z²]]
    row_x = (fx / z)[:, None] * rotation[0] - (fx * tx / z**2)[:, None] * rotation[2]
    row_y = (fy / z)[:, None] * rotation[1] - (fy * ty / z**2)[:, None] * rotation[2]
    row_x, row_y = row_x * scales, row_y * scales
    a = (row_x * row_x).sum(-1) + REFERENCE_BLUR
    b = (row_x * row_y).sum(-1)
    c = (row_y * row_y).sum(-1) + REFERENCE_BLUR
    return a, b, c


def _touches_a_tile(centre: torch.Tensor, radius: torch.Tensor, size: int) -> torch.Tensor:
    """bool [N]: the reference's tile range of [centre - radius, centre + radius] (pixels, [N] each) along one
    image axis of ``size`` pixels is not empty (C ``int()`` truncates toward zero, then clamps to the grid)."""
    tiles = -(-size // REFERENCE_TILE)
    first = torch.clamp(torch.trunc((centre - radius) / REFERENCE_TILE), 0, tiles)
    end = torch.clamp(torch.trunc((centre + radius + REFERENCE_TILE - 1) / REFERENCE_TILE), 0, tiles)
    return end != first


def anchor_mask(anchors: AnchorSet, camera: Camera, near: float = 0.2, anchor_filter: str = "reference"
                ) -> torch.Tensor:
    """bool [N]: the anchors ``camera`` decodes under rule ``anchor_filter`` ("reference" or "bound")."""
    if anchor_filter not in ANCHOR_FILTERS:
        raise ValueError(f"anchor_filter must be one of {ANCHOR_FILTERS}, got {anchor_filter!r}")
    rule = reference_visible_anchors if anchor_filter == "reference" else visible_anchors
    if rule is reference_visible_anchors and use_cpp(anchors.positions):
        rule = fused_reference_visible_anchors
    with torch.no_grad():
        scales = _exp_columns(anchors.scalings, 0)
        return rule(anchors.positions, scales, camera.world_to_cam, camera.K, camera.width, camera.height, near)


def fused_reference_visible_anchors(positions: torch.Tensor, scales: torch.Tensor, world_to_cam: torch.Tensor,
                                    K: torch.Tensor, width: int, height: int, near: float = 0.2) -> torch.Tensor:
    """:func:`reference_visible_anchors` in one C++ loop (``kernels.ops.reference_visible``; CPU tensors)."""
    return reference_visible(positions, scales, world_to_cam, K, width, height, near, REFERENCE_FOV_REACH,
                             REFERENCE_BLUR, REFERENCE_TILE)


def _exp_columns(scalings: torch.Tensor, first: int) -> torch.Tensor:
    """[V, 3] exp(scalings[:, first:first + 3]) of [V, 6] log-scales.

    The exponential runs on the whole contiguous [V, 6] (vectorized, the same values) rather than on the
    strided 3-column view, which element-wise kernels walk one row at a time.
    """
    return torch.exp(scalings)[:, first:first + 3]


def child_scales(cov: torch.Tensor, anchor_scalings: torch.Tensor) -> torch.Tensor:
    """[V, k, 3] child scales (world units) = exp(scalings[3:6]) ⊙ sigmoid(cov[..., 0:3])."""
    return _scales_from_logits(cov[..., :3], anchor_scalings)


def child_rotations(cov: torch.Tensor) -> torch.Tensor:
    """[V, k, 4] unit quaternions (wxyz) = normalize(cov[..., 3:7])."""
    return F.normalize(cov[..., 3:7], dim=-1)


def child_shapes(cov: torch.Tensor, anchor_scalings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(:func:`child_scales`, :func:`child_rotations`) of one ``cov`` [V, k, 7], the same values.

    ``cov`` is split once, so the backward assembles its [V, k, 7] gradient in one concatenation instead of
    zero-filling it for each slice and adding the two.
    """
    logits, rotations = cov.split([3, 4], dim=-1)
    return _scales_from_logits(logits, anchor_scalings), F.normalize(rotations, dim=-1)


def _scales_from_logits(logits: torch.Tensor, anchor_scalings: torch.Tensor) -> torch.Tensor:
    """[V, k, 3] exp(anchor_scalings[:, 3:6]) ⊙ sigmoid(logits) for [V, k, 3] scale logits."""
    return _exp_columns(anchor_scalings, 3)[:, None] * torch.sigmoid(logits)


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
                       anchor_filter: str = "reference", visible: torch.Tensor | None = None) -> NeuralGaussians:
    """The neural Gaussians of ``anchors`` seen from ``camera`` (differentiable w.r.t. anchors and decoder).

    Per visible anchor a and child i: μ = a + offset_i ⊙ exp(scalings[0:3]), scale = exp(scalings[3:6]) ⊙
    sigmoid(cov_i[0:3]), rotation = normalize(cov_i[3:7]); only children with opacity > 0 are kept.
    The anchors decoded are those :func:`anchor_mask` keeps under ``anchor_filter`` ("reference", the
    paper's, or "bound"; see the module docstring) with near plane ``near`` (camera z, world units);
    ``visible`` (bool [N]) overrides the culling, e.g. to decode the same anchors twice.

    The two data-dependent sizes, V and M, are read from the device once each (one ``nonzero`` per mask);
    every gather after that is an ``index_select``, which needs no read-back.
    """
    if visible is None:
        visible = anchor_mask(anchors, camera, near, anchor_filter)
    anchor_index = visible.nonzero()[:, 0]
    inputs = decoder_inputs(anchors, anchor_index, camera, appearance_code)
    decoded = decoder.decode(inputs)
    scalings = anchors.scalings.index_select(0, anchor_index)
    selection = (decoded.opacity > 0).reshape(-1)
    kept = selection.nonzero()[:, 0]
    tensors = (anchors.positions, anchors.offsets, anchors.scalings, decoded.opacity, decoded.cov, decoded.color)
    if use_cpp(anchors.positions) and all(t.dtype == anchors.positions.dtype for t in tensors):
        means, quats, scales, opacities, colors = FusedChildren.apply(
            anchors.positions, anchors.offsets, anchors.scalings, anchor_index, decoded.opacity, decoded.cov,
            decoded.color, kept)
    else:
        means, quats, scales, opacities, colors = kept_children(anchors, anchor_index, scalings, decoded, kept)
    return NeuralGaussians(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        visible=visible,
        anchor_index=anchor_index,
        selection=selection,
        kept=kept,
        neural_opacity=decoded.opacity,
        decoded=decoded,
        inputs=inputs,
        anchor_scalings=scalings,
    )


def kept_children(anchors: AnchorSet, anchor_index: torch.Tensor, scalings: torch.Tensor, decoded: DecodedAnchors,
                  kept: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(means [M, 3], quats [M, 4], scales [M, 3], opacities [M], colors [M, 3]) of the children ``kept`` ([M]
    long, among the V·k) of the visible anchors ``anchor_index`` ([V]), whose log-scales ``scalings`` [V, 6]
    are gathered already. The reference for ``kernels.ops.FusedChildren``, which does the same in one C++ loop."""
    positions = anchors.positions.index_select(0, anchor_index)
    means = positions[:, None] + anchors.offsets.index_select(0, anchor_index) * _exp_columns(scalings, 0)[:, None]
    scales, quats = child_shapes(decoded.cov, scalings)
    return (means.reshape(-1, 3).index_select(0, kept), quats.reshape(-1, 4).index_select(0, kept),
            scales.reshape(-1, 3).index_select(0, kept), decoded.opacity.reshape(-1).index_select(0, kept),
            decoded.color.reshape(-1, 3).index_select(0, kept))
