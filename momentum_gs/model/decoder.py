"""The Gaussian decoder shared by all blocks (three small MLPs in one module) and the appearance table.

One module so that it can be copied into a teacher twin, averaged, broadcast and saved as a unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from momentum_gs.config import ModelConfig


@dataclass
class DecoderInputs:
    """What the decoder sees for the V visible anchors of one view (a teacher decodes the same inputs).

    Attributes:
        features: [V, c] anchor features.
        view_dirs: [V, 3] unit vectors from the camera centre to the anchors (world frame).
        dists: [V, 1] camera-to-anchor distances, world units.
        appearance: [V, a] appearance code of the view, or None.
    """

    features: torch.Tensor
    view_dirs: torch.Tensor
    dists: torch.Tensor
    appearance: torch.Tensor | None = None


@dataclass
class DecodedAnchors:
    """Decoder outputs for V anchors with k neural Gaussians each.

    Attributes:
        opacity: [V, k] tanh values in (-1, 1); a child is kept where it is > 0.
        cov: [V, k, 7] raw: 3 scale logits (sigmoid later) and 4 quaternion values (wxyz, unnormalized).
        color: [V, k, 3] RGB in (0, 1).
    """

    opacity: torch.Tensor
    cov: torch.Tensor
    color: torch.Tensor


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, activation: nn.Module | None) -> nn.Sequential:
    """Linear(in→hidden) → ReLU → Linear(hidden→out) (→ activation)."""
    layers = [nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)]
    return nn.Sequential(*layers, *([activation] if activation is not None else []))


class Decoder(nn.Module):
    """Maps [feature, view direction (, distance)] of an anchor to its k neural Gaussians' attributes.

    ``mlp_opacity`` (→ k, tanh), ``mlp_cov`` (→ 7k, none), ``mlp_color`` (→ 3k, sigmoid; its input also
    gets the appearance code when ``appearance_dim > 0``).
    """

    def __init__(self, feat_dim: int = 32, n_offsets: int = 10, hidden_dim: int = 32, appearance_dim: int = 0,
                 add_distance: bool = False):
        super().__init__()
        self.n_offsets, self.appearance_dim, self.add_distance = n_offsets, appearance_dim, add_distance
        in_dim = feat_dim + 3 + int(add_distance)
        self.mlp_opacity = _mlp(in_dim, hidden_dim, n_offsets, nn.Tanh())
        self.mlp_cov = _mlp(in_dim, hidden_dim, 7 * n_offsets, None)
        self.mlp_color = _mlp(in_dim + appearance_dim, hidden_dim, 3 * n_offsets, nn.Sigmoid())

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "Decoder":
        """A decoder sized by ``feat_dim``, ``n_offsets``, ``hidden_dim``, ``appearance_dim``, ``add_distance``."""
        return cls(cfg.feat_dim, cfg.n_offsets, cfg.hidden_dim, cfg.appearance_dim, cfg.add_distance)

    def forward(self, features: torch.Tensor, view_dirs: torch.Tensor, dists: torch.Tensor | None = None,
                appearance: torch.Tensor | None = None) -> DecodedAnchors:
        """Decode V anchors.

        Args:
            features: [V, c]; view_dirs: [V, 3] unit vectors; dists: [V, 1] world units (used only with
            ``add_distance``); appearance: [V, a] or [a] (used only with ``appearance_dim > 0``; None →
            zeros, the mean of the embedding's initial distribution).
        """
        x = torch.cat([features, view_dirs], dim=-1)
        if self.add_distance:
            if dists is None:
                raise ValueError("this decoder was built with add_distance=True: pass dists [V, 1]")
            x = torch.cat([x, dists.reshape(-1, 1)], dim=-1)
        x_color = x
        if self.appearance_dim > 0:
            if appearance is None:
                appearance = x.new_zeros(self.appearance_dim)
            x_color = torch.cat([x, appearance.expand(x.shape[0], self.appearance_dim)], dim=-1)
        v, k = x.shape[0], self.n_offsets
        return DecodedAnchors(
            opacity=self.mlp_opacity(x),
            cov=self.mlp_cov(x).reshape(v, k, 7),
            color=self.mlp_color(x_color).reshape(v, k, 3),
        )

    def decode(self, inputs: DecoderInputs) -> DecodedAnchors:
        """``forward`` on a :class:`DecoderInputs` (e.g. a teacher on the student's inputs)."""
        return self(inputs.features, inputs.view_dirs, inputs.dists, inputs.appearance)


def make_appearance(num_views: int, appearance_dim: int, device: torch.device | str = "cpu") -> nn.Embedding | None:
    """Per-training-view appearance table [num_views, appearance_dim] (N(0, 1) init), or None when dim is 0."""
    if appearance_dim <= 0:
        return None
    return nn.Embedding(num_views, appearance_dim, device=device)


def appearance_code(appearance: nn.Embedding | None, uid: int) -> torch.Tensor | None:
    """[a] code of training view ``uid`` (``Camera.uid``), or None without an appearance table."""
    if appearance is None:
        return None
    return appearance.weight[uid]
