"""``mgs view``: a live web viewer of a trained run until Ctrl-C or SIGTERM: fly through it, switch blocks on and
off, see the cameras and the cells; a run too large to draw whole in every frame is drawn at levels of detail."""

from __future__ import annotations

import argparse
import time

from momentum_gs.commands.common import add_device, device_of, use_run_settings
from momentum_gs.ranges import FRAME_SECONDS, PORT, add_number
from momentum_gs.render.kernels import kernels_in_use
from momentum_gs.view.drawer import FrameDrawer
from momentum_gs.view.levels import FRAME_TIME, REST_FACTOR, FrameBudget, levels_needed, placed_gaussians
from momentum_gs.view.server import Viewer
from momentum_gs.view.serving import check_port, import_viser, serve_until_interrupted, warn_if_open
from momentum_gs.view.sources import RunSource


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs view``."""
    parser.add_argument("run_dir")
    add_number(parser, "--port", kind=int, allowed=PORT, default=8080, help="port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                             "network)")
    parser.add_argument("--lod", action=argparse.BooleanOptionalAction, default=None,
                        help="draw each block at the level of detail its screen-space error and the frame budget "
                             "allow, levels built once per block (default: on when the run holds more Gaussians "
                             "than a moving camera's frame may draw in --frame-time)")
    add_number(parser, "--frame-time", kind=float, allowed=FRAME_SECONDS, default=FRAME_TIME,
               help=f"seconds a moving camera's frame aims at with levels of detail (the resting camera's full frame "
                    f"may take {REST_FACTOR} times as long); the Gaussians a frame may draw follow from the time one is "
                    f"measured to take (default {FRAME_TIME})")
    add_device(parser)


def run(args: argparse.Namespace) -> None:
    """Serve the viewer until interrupted."""
    use_run_settings(args.run_dir, device_of(args))
    started = time.perf_counter()
    check_port(args.host, args.port)  # before the model loads: a busy port is one line at once
    import_viser()
    source = RunSource(args.run_dir, device_of(args))
    print(kernels_in_use(source.device), flush=True)  # builds the CPU kernels before the first frame
    lod = levels_needed(source, args.frame_time) if args.lod is None else args.lod
    if lod:
        print(f"levels of detail: on, {placed_gaussians(source.parts(range(source.num_blocks))):,} Gaussians in the "
              f"run for a budget of about {FrameBudget(args.frame_time).gaussians:,} a moving frame (--no-lod draws "
              "every block whole)", flush=True)
    viewer = Viewer(source, args.host, args.port, started=started, drawer=FrameDrawer(source, lod, args.frame_time))
    warn_if_open(args.host)
    serve_until_interrupted(viewer, f"viewer of {args.run_dir} (step {source.step}, {source.num_blocks} block(s)) "
                                    f"at {viewer.url}; Ctrl-C to stop")
