"""Where inactive blocks wait: their complete training state in host memory, or one file per block.

The store holds block states as :meth:`~momentum_gs.train.blocks.Block.state_dict` makes them (the format is
:mod:`momentum_gs.train.blocks`'s), on the CPU, and hands them back as they were put: it never builds or reads
their sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from momentum_gs.io.checkpoint import atomic_save, map_tensors

MODES = ("memory", "disk")


def _tensor_bytes(obj: Any) -> int:
    """Bytes held by the tensors in ``obj``."""
    total = 0

    def count(t: torch.Tensor) -> None:
        nonlocal total
        total += t.numel() * t.element_size()

    map_tensors(obj, count)
    return total


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
