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

    from momentum_gs.train.launch import leave

    print("trained", flush=False)
    atexit.register(os.abort)
    leave(3)
