"""The one exception type the command line turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user (a file, a config key, a dataset): the message says what and how to fix it.

    The command line prints ``error: <message>`` and exits with status 2; nothing else is printed.
    """


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after writing a checkpoint; the message says how to continue.

    The command line prints the message and exits with status 130.
    """
