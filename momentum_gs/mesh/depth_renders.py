"""The training views as ``mgs mesh`` fuses them: each rendered with its depth and colour, once while the renders
fit in memory, since neighbouring blocks see many of the same views."""

from __future__ import annotations

from collections import OrderedDict

import torch

from momentum_gs.mesh.settings import MeshSettings
from momentum_gs.mesh.tsdf import DepthView

# Renders kept for the next block (depth + colour), in bytes.
RENDER_CACHE_BYTES = 1 << 29
BYTES_PER_PIXEL = 16  # a float32 depth and three float32 colours


class DepthRenders:
    """Depth and colour renders of training views, each made once while they fit in ``RENDER_CACHE_BYTES``."""

    def __init__(self, model, render_cfg, settings: MeshSettings, device: torch.device):
        self.model = model
        self.render_cfg = render_cfg
        self.settings = settings
        self.device = device
        self.kept: OrderedDict[str, DepthView] = OrderedDict()
        self.bytes = 0

    @torch.no_grad()
    def get(self, camera) -> DepthView:
        """The depth view of training ``camera``: [H, W] depth (0 where alpha is below ``min_alpha``), colours."""
        if camera.name in self.kept:
            self.kept.move_to_end(camera.name)
            return self.kept[camera.name]
        view = self._render(camera.to(self.device))
        self.kept[camera.name] = view
        self.bytes += view.depth.numel() * BYTES_PER_PIXEL
        while self.bytes > RENDER_CACHE_BYTES and len(self.kept) > 1:
            _, dropped = self.kept.popitem(last=False)
            self.bytes -= dropped.depth.numel() * BYTES_PER_PIXEL
        return view

    def _render(self, camera) -> DepthView:
        median = self.settings.depth == "median"
        out = self.model.render(camera, self.render_cfg, appearance_index=camera.uid, backend="builtin",
                                extras=("median_depth",) if median else ("depth",)).output
        depth = out.median_depth if median else out.normalised_depth()
        depth = torch.where(out.alpha >= self.settings.min_alpha, depth, 0.0)[..., 0]
        return DepthView(depth, out.image.clamp(0, 1), camera.K.to(self.device), camera.world_to_cam.to(self.device))
