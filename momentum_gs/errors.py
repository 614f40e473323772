"""The one exception type the command line turns into a one-line message, and how a command's end is said."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user (a file, a config key, a dataset): the message says what and how to fix it.

    The command line prints ``error: <message>`` and exits with status 2; nothing else is printed.
    """


class DataWarning(UserWarning):
    """Input that is read, but not as it was written (e.g. point colours clipped to 8 bits): the command line
    prints ``warning: <message>`` on one line and goes on."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after writing a checkpoint; the message says how to continue.

    The command line prints the message and exits with status 130.
    """


def listing(names, limit: int = 3) -> str:
    """The first ``limit`` of ``names``, comma-separated, with ", ..." when there are more: lists in messages."""
    names = list(names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """``Type: first line of the message`` (at most ``limit`` characters of it), for errors such as torch's
    loading errors that run to many lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__


def exit_status(work: Callable[[], object]) -> int:
    """Run ``work`` and return the exit status a command ends with: 0; 2 after a :class:`UserError`, said as one
    ``error:`` line; 130 after :class:`Interrupted` (its message) or Ctrl-C ("interrupted"). ``mgs`` and each
    training process it starts end this way."""
    try:
        work()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:  # outside training, or a second Ctrl-C while the checkpoint is written
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
