"""``mgs view``: a live web viewer of a trained run until Ctrl-C or SIGTERM: fly through it, switch blocks on and
off, see the cameras and the cells."""

from __future__ import annotations

import argparse
import time

from momentum_gs.commands.common import add_device, device_of, use_run_settings
from momentum_gs.ranges import PORT, add_number
from momentum_gs.render.kernels import kernels_in_use
from momentum_gs.view.server import Viewer, check_port, import_viser, serve_until_interrupted, warn_if_open
from momentum_gs.view.sources import RunSource


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs view``."""
    parser.add_argument("run_dir")
    add_number(parser, "--port", kind=int, allowed=PORT, default=8080, help="port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                             "network)")
    add_device(parser)


def run(args: argparse.Namespace) -> None:
    """Serve the viewer until interrupted."""
    use_run_settings(args.run_dir, device_of(args))
    started = time.perf_counter()
    check_port(args.host, args.port)  # before the model loads: a busy port is one line at once
    import_viser()
    source = RunSource(args.run_dir, device_of(args))
    print(kernels_in_use(source.device), flush=True)  # builds the CPU kernels before the first frame
    viewer = Viewer(source, args.host, args.port, started=started)
    warn_if_open(args.host)
    serve_until_interrupted(viewer, f"viewer of {args.run_dir} (step {source.step}, {source.num_blocks} block(s)) "
                                    f"at {viewer.url}; Ctrl-C to stop")
