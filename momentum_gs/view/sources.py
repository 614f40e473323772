"""What the viewer renders: the blocks of a trained run (:class:`RunSource`), or those a training process has
loaded while it trains (:class:`TrainingSource`). Both give the (anchors, decoder) parts of the blocks asked
for, the appearance table, the training cameras and the partition, and a lock held while a frame is rendered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.trained import checkpoint_parts, read_checkpoint


class RunSource:
    """The blocks of a trained run's latest checkpoint, each cropped to its cell (as ``mgs eval`` merges them),
    kept apart so that any subset renders. Never changes, so its lock does nothing."""

    def __init__(self, run_dir: str | Path, device: torch.device | None = None):
        run_dir = Path(run_dir)
        cfg, _, ckpt, self.device = read_checkpoint(
            run_dir, device, f", so there is no model to view; train the run (`mgs train --resume --out {run_dir}`) "
            "or pick another", "the run diverged: view an earlier checkpoint or train again")
        # read_checkpoint found the run's own partition (moved or copied runs too) and checked it is the one trained
        # with; checkpoint_parts checks its blocks are the checkpoint's, and below its cameras are the scene's
        self.partition, self.anchors, self.decoders, self.appearance = checkpoint_parts(ckpt, cfg, self.device)
        for decoder in self.decoders:
            decoder.eval()
        self.cfg, self.step, self.run_dir = cfg, int(ckpt["step"]), run_dir
        scene = load_scene(cfg.data, images=False)
        if self.partition is not None:
            self.partition.check_scene(len(scene.points), [camera.name for camera in scene.train])
        self.cameras = scene.train
        self.lock = contextlib.nullcontext()
        self.version = 0  # the model never changes

    @property
    def num_blocks(self) -> int:
        """Blocks of the run (1 without a partition)."""
        return len(self.anchors)

    def parts(self, blocks) -> list:
        """The (anchors, decoder) parts of the blocks numbered in ``blocks``, in block order."""
        return [(self.anchors[b], self.decoders[b]) for b in sorted(blocks) if 0 <= b < len(self.anchors)]

    def status(self) -> str:
        """A line of Markdown about the model."""
        anchors = sum(a.num_anchors for a in self.anchors)
        return f"**{self.run_dir.name}**, step {self.step}: {anchors} anchors in {self.num_blocks} block(s)"


class TrainingSource:
    """The blocks a :class:`~momentum_gs.train.trainer.Trainer` has loaded, while it trains (rank 0).

    The trainer holds :attr:`lock` during each step and the viewer while it renders, so a frame never sees
    parameters half updated; rendering uses no random numbers and no gradients, so training runs as without
    the viewer. :meth:`step_done` is called by the trainer after each step and waits while paused.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.cfg = trainer.cfg
        self.device = trainer.device
        self.partition = trainer.partition
        self.cameras = trainer.scene.train
        self.lock = threading.Lock()
        self.paused = threading.Event()
        self.version = 0  # the step the trainer has finished
        self.metrics = None  # the last step's Metrics (on the device until read)
        self.finished = False  # set when training has ended and the viewer goes on showing the result
        self._parked_parts: dict[int, tuple[int, tuple]] = {}  # block id → (its steps when parked, its part)

    @property
    def appearance(self):
        """The trainer's appearance table."""
        return self.trainer.appearance

    @property
    def num_blocks(self) -> int:
        """Blocks of the run."""
        return len(self.trainer.blocks)

    def parts(self, blocks) -> list:
        """The (anchors, decoder) parts of ``blocks`` (call under :attr:`lock`): a loaded block as it trains, a
        parked one as it was parked (with the shared decoder as it is now)."""
        parts = []
        for b in sorted(blocks):
            if not 0 <= b < self.num_blocks:
                continue
            block = self.trainer.blocks[b]
            if block.loaded:
                self._parked_parts.pop(block.id, None)  # training again: its parked copy is out of date
                parts.append((block.anchors, block.decoder or self.trainer.decoder))
            elif (parked := self._parked(block)) is not None:
                parts.append(parked)
        return parts

    def _parked(self, block):
        """(anchors, decoder) of a parked block from the trainer's block store, rebuilt once each time it is
        parked (its step count tells); None when the store does not hold it."""
        cached = self._parked_parts.get(block.id)
        if cached is not None and cached[0] == block.steps:
            return cached[1]
        part = self.trainer.placement.parked_part(block.id, self.trainer.decoder)
        if part is None:
            return None
        self._parked_parts[block.id] = (block.steps, part)
        return part

    def step_done(self, step: int, metrics) -> None:
        """After a step (the trainer's thread): remember it; wait here while the viewer's pause is on."""
        self.version, self.metrics = step, metrics
        while self.paused.is_set() and not self.trainer.stop_requested:
            time.sleep(0.05)

    def status(self) -> str:
        """Step, loss, PSNR and the loaded blocks, as a line of Markdown (read under :attr:`lock`)."""
        trainer = self.trainer
        line = f"step **{self.version}** / {trainer.total_steps}"
        if self.metrics is not None:
            values = self.metrics.read()
            line += f", loss {values['loss']:.4f}, PSNR {values['psnr']:.2f} dB"
        if self.finished:
            return line + "; **training done**: the final model, until Ctrl-C in the terminal"
        loaded = [str(block.id) for block in trainer.blocks if block.loaded]
        parked = [str(block.id) for block in trainer.blocks if not block.loaded and trainer.placement.parked(block.id)]
        line += f"; blocks training: {', '.join(loaded) or 'none'}"
        line += f"; parked (as last trained): {', '.join(parked)}" if parked else ""
        return line + (" (paused)" if self.paused.is_set() else "")
