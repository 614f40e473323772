"""The blocks of a run: what each one owns, how it is built, moved off the device and back, and merged.

A block is one Scaffold-GS anchor set with its own optimizer and growing/pruning strategy, the training
views the partition gave it, and its own step count. With ``blocks.shared_decoder`` off (the ablation rows
"independent blocks") it also owns a decoder and that decoder's optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from momentum_gs.config import Config
from momentum_gs.data.scene import SceneData
from momentum_gs.io.checkpoint import map_tensors
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import Decoder
from momentum_gs.model.optim import make_anchor_optimizer, make_decoder_optimizer
from momentum_gs.model.strategy import GrowPruneStrategy
from momentum_gs.train.block_store import block_state, restore_block
from momentum_gs.train.weighting import validation_views


@dataclass
class Block:
    """One block's training state. ``anchors``/``optimizer``/``strategy`` are None while it is offloaded."""

    id: int
    cameras: list[int]  # indices into scene.train
    val_views: list[int]  # its validation views (a subset of ``cameras``)
    extent: float  # 1.1 × the largest distance of its cameras from their mean (offset learning rate scale)
    steps: int = 0  # steps this block has trained
    anchors: AnchorSet | None = None
    optimizer: torch.optim.Optimizer | None = None
    strategy: GrowPruneStrategy | None = None
    decoder: Decoder | None = None  # only for independent blocks
    decoder_optimizer: torch.optim.Optimizer | None = None
    extra: dict = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        """True while the block's tensors are on the training device."""
        return self.anchors is not None


def camera_extent(scene: SceneData, cameras: list[int]) -> float:
    """1.1 × the largest distance of the cameras' centres from their mean (at least 1e-6)."""
    centres = torch.stack([scene.train[i].center for i in cameras]).double()
    return max(1.1 * float((centres - centres.mean(0)).norm(dim=-1).max()), 1e-6)


def new_block(cfg: Config, scene: SceneData, block_id: int, points: np.ndarray, cameras: list[int],
              device: torch.device, decoder: Decoder | None = None) -> Block:
    """A fresh block on ``device`` from its starting points [P, 3] and its training cameras."""
    extent = camera_extent(scene, cameras)
    anchors = AnchorSet.from_config(points, cfg.model, seed=cfg.seed + block_id, device=device)
    block = Block(block_id, cameras, validation_views(cameras, cfg.weighting.val_every), extent,
                  anchors=anchors, optimizer=make_anchor_optimizer(anchors, cfg.optim, extent),
                  strategy=GrowPruneStrategy.from_config(cfg, anchors))
    if decoder is not None:  # independent blocks: each one trains a copy of the initial decoder
        block.decoder = decoder
        block.decoder_optimizer = make_decoder_optimizer(decoder, None, cfg.optim)
    return block


def snapshot(block: Block) -> dict:
    """A CPU copy of a loaded block's complete state (anchors, optimizers, strategy, step count)."""
    state = block_state(block.anchors, block.optimizer, block.strategy)
    state["steps"] = block.steps
    if block.decoder is not None:
        cpu_copy = lambda t: t.detach().to("cpu", copy=True)  # noqa: E731
        state["decoder"] = map_tensors(block.decoder.state_dict(), cpu_copy)
        state["decoder_optimizer"] = map_tensors(block.decoder_optimizer.state_dict(), cpu_copy)
    return state


def unload(block: Block) -> dict:
    """Take the block off the device; returns its state (for a :class:`BlockStore`)."""
    state = snapshot(block)
    block.anchors = block.optimizer = block.strategy = block.decoder = block.decoder_optimizer = None
    return state


def load(block: Block, state: dict, cfg: Config, device: torch.device) -> None:
    """Put a block back on ``device`` from :func:`snapshot`'s state; training continues exactly."""
    block.anchors, block.optimizer, block.strategy = restore_block(state, cfg, device)
    block.steps = int(state["steps"])
    if "decoder" in state:
        block.decoder = Decoder.from_config(cfg.model).to(device)
        block.decoder.load_state_dict(state["decoder"])
        block.decoder_optimizer = make_decoder_optimizer(block.decoder, None, cfg.optim)
        block.decoder_optimizer.load_state_dict(state["decoder_optimizer"])
