"""Targets of the processes the launcher's tests start (a spawned process imports its target by name)."""

import os
import sys
import time


def wait_a_minute() -> None:
    time.sleep(60)


def fail_in_lines(log: str) -> None:
    """Write a few lines to ``log`` as a training process would, the last an ``error:`` line, and exit 2."""
    with open(log, "a") as file:
        file.write("loading\nerror: the scene is gone\n")
    sys.stdout.flush()
    os._exit(2)


def leave_after_a_teardown_that_aborts() -> None:
    """Print a line, arrange for the interpreter's teardown to abort the process, then end as a training process does."""
    import atexit

    from momentum_gs.train.distributed import leave

    print("trained", flush=False)
    atexit.register(os.abort)
    leave(3)


def end_mgs_after_a_teardown_that_aborts(joined: str) -> None:
    """Run ``mgs --version`` as the ``mgs`` program does, in a process whose teardown would abort; with ``joined``
    "1" as one that joined a process group (as under ``torchrun``)."""
    import atexit

    from momentum_gs.cli import entry
    from momentum_gs.train import distributed

    distributed._joined[0] = joined == "1"
    atexit.register(os.abort)
    sys.argv = ["mgs", "--version"]
    entry()
