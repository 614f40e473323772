"""Around the viewer's server: the address checked before it starts (and a warning when it listens beyond this
machine), viser imported only when a viewer is asked for, two of its libraries' habits tamed, and the command's
wait until Ctrl-C or SIGTERM."""

from __future__ import annotations

import errno
import logging
import random
import signal
import socket
import sys
import time

from momentum_gs.errors import UserError
from momentum_gs.ranges import PORT

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOST = ("0.0.0.0", "::")


def check_port(host: str, port: int) -> None:
    """A UserError when ``port`` cannot be bound on ``host`` (viser would quietly take the next free one), or
    when ``host`` is empty (it would listen everywhere and print an address no browser opens)."""
    if not host.strip():
        raise UserError("--host is empty; give the address to listen on: 127.0.0.1 (this machine, the default) "
                        "or 0.0.0.0 (every interface)")
    if not PORT.holds(port):
        raise UserError(f"--port {port}: give a port between 1 and 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server binds: connections of a viewer that just stopped (TIME_WAIT) do not block the port;
        # a program listening on it does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is in use (another viewer?); pass --port with a free one")
            raise UserError(f"cannot serve the viewer on {host}:{port} ({exc.strerror or exc}); check --host")


def warn_if_open(host: str) -> None:
    """One warning line when the viewer listens beyond this machine."""
    if host not in LOCAL_HOSTS:
        print(f"warning: the viewer listens on {host}: anyone who can reach this machine can see the scene "
              "(the default, 127.0.0.1, keeps it to this machine)", file=sys.stderr, flush=True)


def browser_url(host: str, port: int) -> str:
    """The address to open in a browser: for a viewer on every interface (0.0.0.0, ::), this machine's name,
    which other machines can open too."""
    host = socket.gethostname() if host in ANY_HOST else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def import_viser():
    """The viser module, or a UserError saying how to install it."""
    try:
        import viser
    except ImportError:
        raise UserError("the viewer needs the viser package: pip install 'momentum_gs[view]'") from None
    return viser


def own_random_for_pings() -> None:
    """Give the websockets library its own random generator: it draws the payload of every keep-alive ping from
    Python's global one, which training seeds and saves in its checkpoints (the viewer must not move it)."""
    from websockets.asyncio import connection

    if not isinstance(connection.random, random.Random):
        connection.random = random.Random()


def quiet_handshake_errors() -> None:
    """No traceback on the console for a client that is not a browser (a bare TCP connect, a port scanner):
    the websockets server logs a failed opening handshake with its whole stack at ERROR."""
    logging.getLogger("websockets.server").setLevel(logging.CRITICAL)


def serve_until_interrupted(viewer, line: str) -> None:
    """Print ``line``, then serve until Ctrl-C or SIGTERM (a service manager's stop), close the ``viewer``
    (:class:`~momentum_gs.view.server.Viewer`) and say so."""
    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        print(line, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        viewer.close()
        print("viewer stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
