"""``mgs synth``: generate the synthetic aerial city (Mill-19 layout)."""

from __future__ import annotations

import argparse
from pathlib import Path

from momentum_gs.data.synthetic import PRESETS, make_synthetic_scene
from momentum_gs.errors import UserError
from momentum_gs.ranges import SEED, add_number
from momentum_gs.train.progress import counter_bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs synth``."""
    parser.add_argument("out")
    parser.add_argument("--preset", default="demo", help="tiny, demo, small or city8")
    add_number(parser, "--seed", kind=int, allowed=SEED, default=0)
    parser.add_argument("--vary-exposure", action="store_true", help="random per-image exposure and white balance")


def run(args: argparse.Namespace) -> None:
    """Make the scene and say what to do next."""
    if args.preset not in PRESETS:
        raise UserError(f"unknown preset '{args.preset}' (choose from {', '.join(PRESETS)})")
    out = make_synthetic_scene(Path(args.out), args.preset, seed=args.seed, vary_exposure=args.vary_exposure,
                               progress=counter_bar(f"synth {args.preset}", "view"))
    print(f"synthetic scene ({args.preset}) written to {out}\nnext: mgs train --data {out} --out runs/{out.name} "
          f"(or mgs partition --data {out} --out runs/{out.name}/partition.npz --blocks 8 for blocks)")
