"""``mgs`` with one injected failure, for the fault-recovery test.

Run under ``torchrun``: on the first attempt, process 1 dies right after global step ``CRASH_AFTER_STEP``
(as a lost GPU or node would); restarted attempts run normally.
"""

import os

from momentum_gs.cli import entry
from momentum_gs.train.distributed import restart_count
from momentum_gs.train.trainer import Trainer


def crash_after(step: int) -> None:
    """Make process 1 exit abruptly after ``step`` on the first attempt."""
    original = Trainer.after_step

    def after_step(self) -> None:
        original(self)
        if self.step == step and self.world.rank == 1 and restart_count() == 0:
            os._exit(13)

    Trainer.after_step = after_step


if __name__ == "__main__":
    crash_after(int(os.environ["CRASH_AFTER_STEP"]))
    entry()
