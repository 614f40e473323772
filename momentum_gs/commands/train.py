"""``mgs train``: train a run (or continue one with ``--resume``); ``blocks.partition=auto:N`` partitions the
scene into N blocks inside the run folder first."""

from __future__ import annotations

import argparse

from momentum_gs.commands.common import argument_type
from momentum_gs.ranges import PORT, add_number
from momentum_gs.train.plan import parse_duration
from momentum_gs.train.request import TrainRequest
from momentum_gs.train.start import start

DURATION = argument_type(parse_duration)  # --time's type, mgs run's too


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs train``."""
    parser.add_argument("--config", help="YAML file with the settings that differ from the defaults, or the name "
                        "of a shipped one (demo, brighton_beach, ablation/f_full8, datasets/rubble, ...)")
    parser.add_argument("--data", help="scene folder (images/ + sparse/0, or train/ + val/)")
    parser.add_argument("--out", help="run folder (default: runs/<scene name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--time", type=DURATION, metavar="DURATION",
                        help="train to this budget (30m, 2h, 1h30m; s for seconds), counted from the command's start: the steps "
                             "(and if they would be few, the image size) are chosen from a short probe, and every "
                             "schedule is scaled to them")
    parser.add_argument("--viewer", action="store_true",
                        help="serve the live viewer while training (`mgs view`'s page: every block, the step, loss "
                             "and PSNR, a pause button), and the final model after it until Ctrl-C")
    parser.add_argument("--viewer-exit", action="store_true",
                        help="with --viewer: stop the viewer when the training ends")
    add_number(parser, "--port", kind=int, allowed=PORT, default=8080, help="the viewer's port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the viewer's address (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                             "network)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. optim.steps=2000")


def request_of(args: argparse.Namespace) -> TrainRequest:
    """The training ``mgs train``'s options ask for."""
    return TrainRequest(config=args.config, data=args.data, out=args.out, overrides=tuple(args.overrides),
                        budget=args.time, viewer=(args.host, args.port) if args.viewer else None,
                        keep_viewer=not args.viewer_exit, resume=args.resume)


def run(args: argparse.Namespace) -> None:
    """Train, and print the summary (:func:`momentum_gs.train.start.start`)."""
    start(request_of(args))
