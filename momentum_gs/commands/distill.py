"""``mgs distill``: a compact standard 3DGS student of a trained run (Distilled-3DGS)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from momentum_gs.commands.common import add_device, device_of, use_run_settings
from momentum_gs.export.distill import TEACHERS, DistillConfig, ShDegree
from momentum_gs.export.run import distill_run, distill_summary_lines
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.ranges import DISTILL, add_number

DEFAULT = DistillConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs distill`` (defaults: :class:`~momentum_gs.export.distill.DistillConfig`'s)."""
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/distill)")
    add_number(parser, "--ratio", kind=float, allowed=DISTILL["ratio"], default=DEFAULT.ratio,
               help=f"the student's first size, a fraction of the baked export's Gaussians (default {DEFAULT.ratio})")
    add_number(parser, "--steps", kind=int, allowed=DISTILL["steps"], default=DEFAULT.steps,
               help=f"student training steps (default {DEFAULT.steps})")
    parser.add_argument("--sh-degree", type=int, default=DEFAULT.sh_degree, choices=get_args(ShDegree),
                        help="the student's SH degree")
    parser.add_argument("--teachers", default=",".join(DEFAULT.teachers),
                        help=f"comma-separated teachers fused into the pseudo-labels ({', '.join(TEACHERS)})")
    add_number(parser, "--lambda-structure", kind=float, allowed=DISTILL["lambda_structure"],
               default=DEFAULT.lambda_structure,
               help="weight of the voxel-histogram structure term (default 0, off: every weight tried on the demo "
                    "city cost PSNR, docs/benchmarks)")
    add_number(parser, "--lambda-distill", kind=float, allowed=DISTILL["lambda_distill"],
               default=DEFAULT.lambda_distill, help="weight of the pseudo-label term")
    add_number(parser, "--seed", kind=int, allowed=DISTILL["seed"], default=DEFAULT.seed)
    add_device(parser, "train")


def run(args: argparse.Namespace) -> None:
    """Distil, and print the summary."""
    use_run_settings(args.run_dir, device_of(args))
    cfg = DistillConfig(ratio=args.ratio, steps=args.steps, sh_degree=args.sh_degree,
                        teachers=tuple(t.strip() for t in args.teachers.split(",") if t.strip()),
                        lambda_structure=args.lambda_structure, lambda_distill=args.lambda_distill, seed=args.seed)
    out = Path(args.out or RunFolder(args.run_dir).distill)
    summary = distill_run(args.run_dir, out, cfg, device_of(args))
    print("\n".join(distill_summary_lines(summary, out)))
