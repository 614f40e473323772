"""The one exception type the command line turns into a one-line message."""


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
