"""Where each block of a run is: loaded on this process's device, parked in its store, or kept by another process.

Every process starts with a copy of every block. Once a block has trained, only the process that trained it
keeps it (``holder``); when the scheduler hands it to another process, it is sent there. ``holder`` is computed
from the schedule alone, so every process agrees on it without talking. Which blocks train at a step is the
scheduler's choice; :class:`Placement` only carries it out.
"""

from __future__ import annotations

from pathlib import Path

import torch

from momentum_gs.config import Config
from momentum_gs.data.scene import SceneData
from momentum_gs.errors import UserError
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import Decoder
from momentum_gs.partition.partition import Partition
from momentum_gs.train import distributed as D
from momentum_gs.train.block_store import BlockStore
from momentum_gs.train.blocks import Block, check_state, new_block, state_anchors, state_part

EVERYONE = -1  # holder of a block every process has an identical copy of (at the start, after a resume)


class Placement:
    """The blocks of a run, each parked in :attr:`store` until :meth:`activate` loads it.

    Args:
        cfg: the resolved config (``blocks.offload`` picks the store; the rest builds and restores blocks).
        scene: the loaded scene (cameras, points).
        partition: the partition (None: one block of every point and camera).
        decoder: the initial decoder; with ``blocks.shared_decoder`` off each block trains its own copy.
        device: where the active blocks live.
        world: the training processes (:mod:`momentum_gs.train.distributed`).
        out_dir: the run folder (a disk store writes into ``offload/`` there).
    """

    def __init__(self, cfg: Config, scene: SceneData, partition: Partition | None, decoder: Decoder,
                 device: torch.device, world: D.World, out_dir: Path):
        self.cfg, self.device, self.world = cfg, device, world
        offload = RunFolder(out_dir).offload / (f"rank{world.rank}" if world.distributed else "")
        self.store = BlockStore(cfg.blocks.offload, offload if cfg.blocks.offload == "disk" else None)
        n = 1 if partition is None else partition.num_blocks
        self.blocks = [self._build(b, scene, partition, decoder) for b in range(n)]
        self.holder = [EVERYONE] * n  # which process keeps each block (EVERYONE: all hold the same copy)
        self.peak_loaded = {"anchors": 0, "total_anchors": 0, "offloaded_bytes": 0}  # largest device share seen

    def _build(self, b: int, scene: SceneData, partition: Partition | None, decoder: Decoder) -> Block:
        """Block ``b`` from its points and cameras, parked in the store."""
        if partition is None:
            points, cameras = scene.points, list(range(len(scene.train)))
        else:
            points = scene.points[partition.block_points[b]]
            cameras = [int(i) for i in partition.block_cameras[b]]
        own = None
        if not self.cfg.blocks.shared_decoder:
            own = Decoder.from_config(self.cfg.model).to(self.device)
            own.load_state_dict(decoder.state_dict())
        block = new_block(self.cfg, scene, b, points, cameras, self.device, own)
        self.store.put(b, block.unload())
        return block

    # ---- moving blocks ----------------------------------------------------------------------------------
    def exchange(self, assignment: list[list[int]]) -> None:
        """Move blocks to the processes that train them (collective when G > 1): ``assignment[rank]`` lists the
        blocks process ``rank`` trains at this step.

        Moves are taken in block order by every process, so each send meets its receive in turn.
        """
        world = self.world
        for rank in range(world.size):
            for b in assignment[rank]:
                source = self.holder[b]
                if source == rank:
                    continue
                if source == EVERYONE:  # everyone holds the same copy: the others drop theirs
                    if world.rank != rank:
                        self._take(b)
                elif world.rank == source:
                    D.send_state(self._take(b), rank)
                elif world.rank == rank:
                    self.store.put(b, self.blocks[b].reset_to(D.receive_state(source)))
                self.holder[b] = rank

    def _take(self, b: int) -> dict:
        """Block ``b``'s state, removed from this process (unloaded first if it is on the device)."""
        block = self.blocks[b]
        return block.unload() if block.loaded else self.store.take(b)

    def holds(self, b: int) -> bool:
        """True if this process keeps the authoritative copy of block ``b`` (rank 0 for shared copies)."""
        return self.holder[b] == self.world.rank or (self.holder[b] == EVERYONE and self.world.is_main)

    def activate(self, active: list[int]) -> list[Block]:
        """Make exactly ``active`` loaded: park the others in the store, bring these in."""
        for block in self.blocks:
            if block.loaded and block.id not in active:
                self.store.put(block.id, block.unload())
        for b in active:
            if not self.blocks[b].loaded:
                self.blocks[b].load_state_dict(self.store.take(b), self.cfg, self.device)
        loaded = sum(block.anchors.num_anchors for block in self.loaded())
        if loaded > self.peak_loaded["anchors"]:
            self.peak_loaded = {"anchors": loaded, "total_anchors": self.local_anchors(),
                                "offloaded_bytes": self.store.nbytes() + self.store.disk_bytes()}
        return [self.blocks[b] for b in active]

    # ---- what is where ----------------------------------------------------------------------------------
    def loaded(self) -> list[Block]:
        """The blocks on this process's device, in block order."""
        return [block for block in self.blocks if block.loaded]

    def parked(self, b: int) -> bool:
        """True if this process's store holds block ``b``."""
        return b in self.store

    def parked_part(self, b: int, shared: Decoder) -> tuple[AnchorSet, Decoder] | None:
        """(anchors, decoder) of block ``b`` as it was parked (``shared`` unless the block has its own decoder);
        None when the store does not hold it."""
        return state_part(self.store.peek(b), self.cfg, self.device, shared) if self.parked(b) else None

    def local_anchors(self) -> int:
        """Anchors of the blocks this process keeps (before merging)."""
        return sum(b.anchors.num_anchors if b.loaded else state_anchors(self.store.peek(b.id))
                   for b in self.blocks if self.holds(b.id))

    # ---- checkpoints ------------------------------------------------------------------------------------
    def gather_states(self) -> list[dict] | None:
        """Every block's state in block order on rank 0, None on the others (collective when G > 1): each
        process contributes the blocks it keeps."""
        mine = {b.id: b.state_dict() if b.loaded else self.store.peek(b.id) for b in self.blocks if self.holds(b.id)}
        gathered = D.gather_to_main(mine, self.world)
        if not self.world.is_main:
            return None
        held = {b: state for part in gathered for b, state in part.items()}
        return [held[b] for b in range(len(self.blocks))]

    def check_states(self, path: Path, states: list[dict]) -> None:
        """Refuse a checkpoint's block states (``path``'s) that lack a section or are not one per block."""
        for b, state in enumerate(states):
            check_state(state, f"blocks[{b}]")
        if len(states) != len(self.blocks):
            raise UserError(f"{path} holds {len(states)} blocks; this run has {len(self.blocks)}")

    def restore(self, states: list[dict]) -> None:
        """Park every block with its state from a checkpoint (checked by :meth:`check_states`); every process
        then holds every block until the schedule hands each to one process."""
        for block, state in zip(self.blocks, states):
            self.store.put(block.id, block.reset_to(state))
        self.holder = [EVERYONE] * len(self.blocks)
