"""Where inactive blocks wait: their complete training state in host memory, or one file per block.

A block's state is a named, versioned dictionary (:func:`block_state`): its anchors (``AnchorSet.to_dict``),
its anchor optimizer's state dict (Adam moments and step counts, and the param groups with their learning-
rate schedules) and its growing/pruning strategy's state dict (statistics and generator state), all on the
CPU. :func:`restore_block` rebuilds the three objects on a device so that training continues exactly as if
the block had never left (``tests/test_block_store.py`` checks it bit for bit).

The shared decoder and its optimizer are not part of a block: they stay on the device (the reference
code kept a stale copy of the decoder's Adam moments in every block; we do not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from momentum_gs.config import Config
from momentum_gs.io.checkpoint import atomic_save, map_tensors
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.optim import make_anchor_optimizer
from momentum_gs.model.strategy import GrowPruneStrategy

FORMAT = "momentum_gs.block"
VERSION = 1
MODES = ("memory", "disk")


def _tensor_bytes(obj: Any) -> int:
    """Bytes held by the tensors in ``obj``."""
    total = 0

    def count(t: torch.Tensor) -> None:
        nonlocal total
        total += t.numel() * t.element_size()

    map_tensors(obj, count)
    return total


def block_state(anchors: AnchorSet, optimizer: torch.optim.Optimizer, strategy: GrowPruneStrategy) -> dict:
    """A CPU copy of one block's complete training state (shares no memory with the live objects).

    Call it between steps (after ``zero_grad``): gradients are not kept.
    """
    state = {"anchors": anchors.to_dict(), "optimizer": optimizer.state_dict(), "strategy": strategy.state_dict()}
    # copy=True: on a CPU run .to("cpu") would otherwise alias the live Adam moments, updated in place.
    state = map_tensors(state, lambda t: t.detach().to("cpu", copy=True))
    return {"format": FORMAT, "version": VERSION, **state}


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


class BlockStore:
    """Inactive blocks' states, by block id.

    Args:
        mode: ``"memory"`` keeps CPU tensors in this process; ``"disk"`` writes ``block_<id>.pt`` files
            atomically into ``folder`` and keeps nothing in memory (slower; for blocks that do not fit in
            host memory). The folder is scratch space for this run: checkpoints save every block
            themselves (``peek``), so a store never needs to be re-opened.
        folder: required for ``"disk"``.
    """

    def __init__(self, mode: str = "memory", folder: str | Path | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown block store mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "disk" and folder is None:
            raise ValueError("a disk block store needs a folder")
        self.mode = mode
        self.folder = None if folder is None else Path(folder)
        if self.mode == "disk":
            self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: dict[int, dict] = {}
        self._on_disk: set[int] = set()

    def path(self, block_id: int) -> Path:
        """The file of ``block_id`` in disk mode."""
        return self.folder / f"block_{int(block_id):04d}.pt"

    def put(self, block_id: int, state: dict) -> None:
        """Store (or replace) the state of ``block_id``; the store takes ownership of ``state``."""
        state = map_tensors(state, lambda t: t.detach().cpu())
        if self.mode == "memory":
            self._memory[int(block_id)] = state
        else:
            atomic_save(state, self.path(block_id))
            self._on_disk.add(int(block_id))

    def peek(self, block_id: int) -> dict:
        """A copy of the state of ``block_id``, left in the store (e.g. to write a checkpoint)."""
        self._check(block_id)
        if self.mode == "memory":
            return map_tensors(self._memory[int(block_id)], torch.clone)
        return torch.load(self.path(block_id), map_location="cpu", weights_only=True)

    def take(self, block_id: int) -> dict:
        """The state of ``block_id``, removed from the store."""
        self._check(block_id)
        if self.mode == "memory":
            return self._memory.pop(int(block_id))
        state = torch.load(self.path(block_id), map_location="cpu", weights_only=True)
        self.path(block_id).unlink()
        self._on_disk.discard(int(block_id))
        return state

    def __contains__(self, block_id: int) -> bool:
        return int(block_id) in (self._memory if self.mode == "memory" else self._on_disk)

    def __len__(self) -> int:
        return len(self.blocks())

    def blocks(self) -> list[int]:
        """Sorted ids of the stored blocks."""
        return sorted(self._memory if self.mode == "memory" else self._on_disk)

    def nbytes(self) -> int:
        """Host memory held by the stored tensors (0 in disk mode)."""
        return sum(_tensor_bytes(state) for state in self._memory.values())

    def disk_bytes(self) -> int:
        """Bytes of the block files (0 in memory mode)."""
        return sum(self.path(b).stat().st_size for b in self._on_disk)

    def _check(self, block_id: int) -> None:
        """KeyError naming the stored blocks when ``block_id`` is not one of them."""
        if block_id not in self:
            raise KeyError(f"block {block_id} is not in the store (it holds {self.blocks()})")
