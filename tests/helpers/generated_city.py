"""A generated city for the viewer's levels of detail: a flat square ground cut into blocks of anchors with a
seeded, untrained decoder (its children mostly opaque), and training cameras looking down at each block. It
offers what the viewer reads from a trained run (:class:`momentum_gs.view.sources.RunSource`): no training, no
files, any size. Used by tests/test_view_levels.py and scripts/bench_view_lod.py."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from momentum_gs.config import load_config
from momentum_gs.data.camera import Camera
from momentum_gs.eval import camera_path
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import Decoder


def look_at(eye, target, width: int, height: int, focal: float) -> Camera:
    """A pinhole camera at ``eye`` looking at ``target`` (world units, z up), its image's top towards +z (or +y
    when it looks straight down)."""
    eye, target = np.asarray(eye, np.float64), np.asarray(target, np.float64)
    forward = (target - eye) / np.linalg.norm(target - eye)
    up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    R = camera_path.look_at(eye, target, up)[:3, :3].T  # rows: the camera's x (right), y (down), z axes
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3], world_to_cam[:3, 3] = R, -R @ eye
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return Camera(name="generated", width=width, height=height, K=torch.tensor(K, dtype=torch.float32),
                  world_to_cam=torch.tensor(world_to_cam, dtype=torch.float32))


class GeneratedCity:
    """``gaussians`` neural Gaussians (anchors × 10) on a ground of ``side`` × ``side`` blocks of
    ``block_size`` world units (the city spans [0, side · block_size]² at z = 0), one shared decoder."""

    def __init__(self, gaussians: int, side: int = 4, block_size: float = 10.0, seed: int = 0):
        self.cfg = load_config()
        self.cfg.render.background = (0.0, 0.0, 0.0)
        self.device, self.partition, self.appearance = torch.device("cpu"), None, None
        self.lock, self.version, self.step = contextlib.nullcontext(), 0, 0
        k, g = self.cfg.model.n_offsets, torch.Generator().manual_seed(seed)
        per_side = max(1, math.isqrt(gaussians // (k * side * side)))
        spacing = block_size / per_side
        torch.manual_seed(seed)
        self.decoder = Decoder.from_config(self.cfg.model).eval()
        with torch.no_grad():
            self.decoder.mlp_opacity[2].bias += 0.8  # most children drawn, as in a trained scene
        self.anchors = []
        for i, j in np.ndindex(side, side):
            cells = torch.stack(torch.meshgrid(torch.arange(per_side), torch.arange(per_side), indexing="ij"), -1)
            xy = (cells.reshape(-1, 2) + torch.rand(per_side**2, 2, generator=g)) * spacing
            xy += torch.tensor([i, j]) * block_size
            positions = torch.cat([xy, 0.05 * spacing * torch.randn(len(xy), 1, generator=g)], 1)
            scalings = torch.tensor([spacing] * 3 + [spacing / 2, spacing / 2, spacing / 8]).log().repeat(len(xy), 1)
            anchors = AnchorSet(positions, spacing, self.cfg.model.feat_dim, k, scalings=scalings)
            with torch.no_grad():
                anchors.offsets.copy_(0.5 * torch.randn(anchors.offsets.shape, generator=g))
                anchors.features.copy_(3 * torch.randn(anchors.features.shape, generator=g))
            self.anchors.append(anchors)
        self.side, self.block_size = side, block_size
        self.cameras = [look_at((x + dx, y + dy, 0.8 * block_size), (x, y, 0.0), 64, 48, 60.0)
                        for x, y in self.block_centres() for dx, dy in ((3, 0), (-3, 0), (0, 3), (0, -3))]

    def block_centres(self) -> list[tuple[float, float]]:
        """The centre (x, y) of each block, in block order."""
        return [((i + 0.5) * self.block_size, (j + 0.5) * self.block_size) for i, j in np.ndindex(self.side, self.side)]

    @property
    def num_blocks(self) -> int:
        """Blocks of the city."""
        return len(self.anchors)

    def parts(self, blocks) -> list:
        """The (anchors, decoder) parts of ``blocks``, in block order."""
        return [(self.anchors[b], self.decoder) for b in sorted(blocks) if 0 <= b < len(self.anchors)]

    def status(self) -> str:
        """A line of Markdown about the city."""
        return f"generated city: {sum(a.num_anchors for a in self.anchors)} anchors in {self.num_blocks} blocks"
