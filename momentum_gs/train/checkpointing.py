"""The trainer's checkpoints: the whole training state as one named dictionary (blocks, decoder, teacher,
optimizers, block weights, random generators), written by rank 0, read back by every process, and the check that
no checkpoint is written after a loss stopped being finite."""

from __future__ import annotations

from pathlib import Path

import torch

from momentum_gs.config import Config
from momentum_gs.errors import UserError, one_line
from momentum_gs.io.checkpoint import checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.model.decoder import Decoder
from momentum_gs.train import distributed as D
from momentum_gs.train.placement import Placement
from momentum_gs.train.seeding import rng_state, set_rng_state
from momentum_gs.train.teacher import MomentumTeacher
from momentum_gs.train.views import WorkDeal
from momentum_gs.train.weighting import BlockWeighting
from momentum_gs.trained import checkpoint_problem


class Checkpointing:
    """Saving and resuming for :class:`~momentum_gs.train.trainer.Trainer`, which sets the attributes below."""

    cfg: Config
    folder: RunFolder
    world: D.World
    step: int  # global steps completed
    placement: Placement
    decoder: Decoder
    appearance: torch.nn.Embedding | None
    decoder_opt: torch.optim.Optimizer | None
    teacher: MomentumTeacher | None
    weighting: BlockWeighting
    partition_digest: str  # the partition file's SHA-256 ("" without a partition)
    first_bad_step: torch.Tensor  # the first global step whose loss was not finite (0: none yet)
    deal: WorkDeal | None  # the deal by each view's last work, where several processes share a step's views

    def state(self) -> dict | None:
        """Everything needed to continue exactly where training stands (collective when G > 1).

        Each process contributes the blocks it keeps; rank 0 gets the whole state, the others None.
        """
        blocks = self.placement.gather_states()
        if blocks is None:  # not rank 0
            return None
        partition = self.cfg.blocks.partition
        state = {
            "blocks": blocks,
            "decoder": self.decoder.state_dict(),
            "appearance": None if self.appearance is None else self.appearance.state_dict(),
            "decoder_optimizer": None if self.decoder_opt is None else self.decoder_opt.state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "weighting": self.weighting.state_dict(),
            "partition": partition,
            # The same file relative to the run folder, where train.run puts a copy of it, so that a moved run
            # finds its own.
            "partition_in_run": self.folder.relative(partition) if partition else None,
            "partition_sha256": self.partition_digest,
            "rng": rng_state(),
        }
        if self.deal is not None:  # only where processes deal a step's views by their work
            state["view_work"] = self.deal.state_dict()
        return state

    def check_finite(self) -> None:
        """Stop with one line if a step's loss was not finite (NaN or inf), before the model reaches a
        checkpoint; the last good checkpoint stays the latest."""
        bad = int(self.first_bad_step)
        if bad:
            last = latest_checkpoint(self.folder.ckpt)
            keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
            raise UserError(f"training diverged: the loss is not finite from global step {bad} on (NaN or inf); "
                            f"stopped without saving; {keep}. Check the data and lower the learning rates")

    def save(self) -> Path:
        """Write ``ckpt/step_<N>.pt`` (rank 0 writes, every process takes part) and return its path; refuses
        (UserError) when a loss since the start was not finite."""
        self.check_finite()
        path = self.folder.checkpoint(self.step)
        state = self.state()
        if state is not None:
            save_checkpoint(path, self.step, state)
            keep = self.cfg.log.keep_checkpoints
            for old in checkpoints(path.parent)[:-keep] if keep else []:
                old.unlink(missing_ok=True)
        D.barrier(self.world)  # the file exists for everyone once save() returns
        return path

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save` (blocks, decoder, teacher, optimizers, generators).

        Every process reads the whole checkpoint and holds every block until the schedule hands each to
        one process, so a checkpoint resumes with any number of processes.
        """
        ckpt = load_checkpoint(path, map_location="cpu")  # parked blocks stay on the CPU
        problem = checkpoint_problem(ckpt, self.cfg)  # every tensor's shape and the step, before anything loads
        if problem is None:
            try:
                self._restore(path, ckpt)
            except UserError:
                raise
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:  # a section missing
                problem = one_line(exc, 160)
        if problem is not None:
            raise UserError(f"{path} does not fit this run ({problem}); resume it with the config it was trained "
                            "with, or start a new run in another folder")

    def _restore(self, path: Path, ckpt: dict) -> None:
        """:meth:`load`'s body: every section of ``ckpt`` into the trainer (a block's own sections checked now,
        though the block is restored when it is next loaded)."""
        self.placement.check_states(path, ckpt["blocks"])
        if ckpt.get("partition_sha256", self.partition_digest) != self.partition_digest:
            raise UserError(f"the partition file {self.cfg.blocks.partition} is not the one {path} was trained "
                            "with (it was replaced or changed); put the original back or start a new run")
        self.placement.restore(ckpt["blocks"])
        self.decoder.load_state_dict(ckpt["decoder"])
        if self.appearance is not None:
            self.appearance.load_state_dict(ckpt["appearance"])
        if self.decoder_opt is not None:
            self.decoder_opt.load_state_dict(ckpt["decoder_optimizer"])
        if self.teacher is not None:
            self.teacher.load_state_dict(ckpt["teacher"])
        self.weighting.load_state_dict(ckpt["weighting"])
        set_rng_state(ckpt["rng"])
        if self.deal is not None and ckpt.get("view_work") is not None:  # else dealt by the SfM points until renders
            self.deal.load_state_dict(ckpt["view_work"])
        self.step = int(ckpt["step"])

    def resume(self) -> Path | None:
        """Load the latest checkpoint of the run folder, if any; returns its path (None if there is none)."""
        path = latest_checkpoint(self.folder.ckpt)
        if path is not None:
            self.load(path)
        return path
