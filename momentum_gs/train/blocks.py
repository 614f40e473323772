"""The blocks of a run: what each one owns, how it is built, and the format of its saved state.

A block is one Scaffold-GS anchor set with its own optimizer and growing/pruning strategy, the training
views the partition gave it, and its own step count. With ``blocks.shared_decoder`` off (the ablation rows
"independent blocks") it also owns a decoder and that decoder's optimizer.

A block's state (:meth:`Block.state_dict`) is a named, versioned dictionary, all on the CPU: ``format`` and
``version``, its anchors (``AnchorSet.to_dict``), its anchor optimizer's state dict (Adam moments and step
counts, and the param groups with their learning-rate schedules), its growing/pruning strategy's state dict
(statistics and generator state), ``steps``, and for independent blocks ``decoder`` and ``decoder_optimizer``.
The same dictionary is parked in a :class:`~momentum_gs.train.block_store.BlockStore`, sent to another process
and written into checkpoints (``"blocks"``, one per block). :meth:`Block.load_state_dict` rebuilds the objects
on a device so that training continues exactly as if the block had never left (``tests/test_block_store.py``
checks it bit for bit).

The shared decoder and its optimizer are not part of a block: they stay on the device (the reference
code kept a stale copy of the decoder's Adam moments in every block; we do not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from momentum_gs.config import Config, check_anchor_grid
from momentum_gs.data.scene import SceneData
from momentum_gs.io.checkpoint import map_tensors
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import Decoder
from momentum_gs.model.optim import make_anchor_optimizer, make_decoder_optimizer
from momentum_gs.model.strategy import GrowPruneStrategy
from momentum_gs.train.weighting import validation_views

FORMAT = "momentum_gs.block"
VERSION = 1


def _cpu_copy(obj):
    """``obj`` with every tensor copied to the CPU; copy=True: on a CPU run ``.to("cpu")`` would otherwise alias
    the live tensors (Adam's moments are updated in place)."""
    return map_tensors(obj, lambda t: t.detach().to("cpu", copy=True))


def block_state(anchors: AnchorSet, optimizer: torch.optim.Optimizer, strategy: GrowPruneStrategy) -> dict:
    """The anchor part of a block's state: a CPU copy of (anchors, anchor optimizer, strategy) under the format
    header, sharing no memory with the live objects. :meth:`Block.state_dict` adds the rest.

    Call it between steps (after ``zero_grad``): gradients are not kept.
    """
    state = {"anchors": anchors.to_dict(), "optimizer": optimizer.state_dict(), "strategy": strategy.state_dict()}
    return {"format": FORMAT, "version": VERSION, **_cpu_copy(state)}


def restore_block(state: dict, cfg: Config, device: torch.device | str) -> tuple[AnchorSet, torch.optim.Adam,
                                                                               GrowPruneStrategy]:
    """Rebuild (anchors, anchor optimizer, strategy) on ``device`` from :func:`block_state`'s dictionary.

    The optimizer is made by ``make_anchor_optimizer`` over the new anchors, then loaded: the saved param
    groups, with their extent-scaled schedules, replace the fresh ones, and the moments move to
    ``device`` (Adam's step counts stay on the CPU, as Adam keeps them). ``cfg.strategy`` gives the
    strategy's settings; its statistics and generator come from ``state``. On a CPU device the new
    objects may share memory with ``state``: pass a state you own (``BlockStore.take`` returns one).
    """
    if state.get("format") != FORMAT or state.get("version", 0) > VERSION:
        raise ValueError(f"not a block state this version reads (format {state.get('format')!r}, "
                         f"version {state.get('version')!r})")
    anchors = AnchorSet.from_dict(state["anchors"], device=device)
    optimizer = make_anchor_optimizer(anchors, cfg.optim, extent=1.0)  # schedules come from the state
    saved = [group.get("name") for group in state["optimizer"]["param_groups"]]
    if saved != [group["name"] for group in optimizer.param_groups]:
        raise ValueError(f"block optimizer groups {saved} do not match {[g['name'] for g in optimizer.param_groups]}")
    optimizer.load_state_dict(state["optimizer"])
    strategy = GrowPruneStrategy.from_config(cfg, anchors)
    strategy.load_state_dict(state["strategy"])
    return anchors, optimizer, strategy


def check_state(state: dict, where: str) -> None:
    """KeyError naming the first section a saved block state (``where``, e.g. ``blocks[0]``) lacks."""
    for key in ("steps", "anchors"):
        if key not in state:
            raise KeyError(f"no {where}.{key}")


def state_anchors(state: dict) -> int:
    """Anchors held by a block state."""
    return int(state["anchors"]["positions"].shape[0])


def state_part(state: dict, cfg: Config, device: torch.device, shared: Decoder) -> tuple[AnchorSet, Decoder]:
    """(anchors, decoder) to render a block as its state holds it: its own decoder (in eval mode) for an
    independent block, else ``shared``."""
    anchors = AnchorSet.from_dict(state["anchors"], device=device)
    if "decoder" not in state:
        return anchors, shared
    decoder = Decoder.from_config(cfg.model).to(device)
    decoder.load_state_dict(state["decoder"])
    return anchors, decoder.eval()


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

    def state_dict(self) -> dict:
        """A CPU copy of the loaded block's complete state (anchors, optimizers, strategy, step count); see the
        module's docstring for its sections."""
        state = block_state(self.anchors, self.optimizer, self.strategy)
        state["steps"] = self.steps
        if self.decoder is not None:
            state["decoder"] = _cpu_copy(self.decoder.state_dict())
            state["decoder_optimizer"] = _cpu_copy(self.decoder_optimizer.state_dict())
        return state

    def load_state_dict(self, state: dict, cfg: Config, device: torch.device) -> None:
        """Put the block on ``device`` from :meth:`state_dict`'s state; training continues exactly."""
        self.anchors, self.optimizer, self.strategy = restore_block(state, cfg, device)
        self.steps = int(state["steps"])
        if "decoder" in state:
            self.decoder = Decoder.from_config(cfg.model).to(device)
            self.decoder.load_state_dict(state["decoder"])
            self.decoder_optimizer = make_decoder_optimizer(self.decoder, None, cfg.optim)
            self.decoder_optimizer.load_state_dict(state["decoder_optimizer"])

    def unload(self) -> dict:
        """Take the block off the device; returns its state (for a store)."""
        state = self.state_dict()
        self.anchors = self.optimizer = self.strategy = self.decoder = self.decoder_optimizer = None
        return state

    def reset_to(self, state: dict) -> dict:
        """Continue from ``state`` (a checkpoint's, or another process's) without loading it: the live tensors,
        if any, are dropped and the block takes the state's step count; returns ``state``, to be parked."""
        self.anchors = self.optimizer = self.strategy = self.decoder = self.decoder_optimizer = None
        self.steps = int(state["steps"])
        return state


def camera_extent(scene: SceneData, cameras: list[int]) -> float:
    """1.1 × the largest distance of the cameras' centres from their mean (at least 1e-6)."""
    centres = torch.stack([scene.train[i].center for i in cameras]).double()
    return max(1.1 * float((centres - centres.mean(0)).norm(dim=-1).max()), 1e-6)


def new_block(cfg: Config, scene: SceneData, block_id: int, points: np.ndarray, cameras: list[int],
              device: torch.device, decoder: Decoder | None = None) -> Block:
    """A fresh block on ``device`` from its starting points [P, 3] and its training cameras."""
    extent = camera_extent(scene, cameras)
    anchors = AnchorSet.from_config(points, cfg.model, seed=cfg.seed + block_id, device=device,
                                    cameras=[scene.train[i] for i in cameras])
    if cfg.model.voxel_size <= 0:  # automatic: the grid these points gave, checked as a given one is before training
        check_anchor_grid(cfg, anchors.voxel_size, points, block_id)
    block = Block(block_id, cameras, validation_views(cameras, cfg.weighting.val_every), extent,
                  anchors=anchors, optimizer=make_anchor_optimizer(anchors, cfg.optim, extent),
                  strategy=GrowPruneStrategy.from_config(cfg, anchors))
    if decoder is not None:  # independent blocks: each one trains a copy of the initial decoder
        block.decoder = decoder
        block.decoder_optimizer = make_decoder_optimizer(decoder, None, cfg.optim)
    return block
