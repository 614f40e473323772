"""``mgs`` with one process's decoder nudged, for the replica-check test.

Run under ``torchrun``: after global step ``DIVERGE_AFTER_STEP``, process 1 adds 1e-3 to one weight of its
shared decoder, as a silent hardware or library fault would; ``distributed.check_every`` must catch it.
"""

import os

import torch

from momentum_gs.cli import entry
from momentum_gs.train.trainer import Trainer


def diverge_after(step: int) -> None:
    original = Trainer.train_step

    def train_step(self, views):
        out = original(self, views)
        if self.step == step and self.world.rank == 1:
            with torch.no_grad():
                next(self.decoder.parameters()).view(-1)[0] += 1e-3
        return out

    Trainer.train_step = train_step


if __name__ == "__main__":
    diverge_after(int(os.environ["DIVERGE_AFTER_STEP"]))
    entry()
