"""``mgs eval``: render and score the held-out views of a run."""

from __future__ import annotations

import argparse

from momentum_gs.commands.common import add_device, device_of, use_run_settings
from momentum_gs.eval.evaluate import evaluate_run, summary_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs eval``."""
    parser.add_argument("run_dir")
    parser.add_argument("--no-images", action="store_true", help="do not write render/ground-truth PNGs")
    add_device(parser)
    parser.add_argument("--maps", action="store_true",
                        help="also write each held-out view's depth and normal maps as pictures (eval/maps/)")
    parser.add_argument("--lpips-backbone", help="vgg16-397923af.pth (default: the torch hub cache)")
    parser.add_argument("--lpips-heads", help="the lpips package's v0.1 vgg.pth (default: the torch hub cache)")
    parser.add_argument("--colour-correction", action="store_true",
                        help="also score after a per-image quadratic colour map (psnr_cc, ssim_cc, lpips_cc)")


def run(args: argparse.Namespace) -> None:
    """Score the run and print the summary."""
    use_run_settings(args.run_dir, device_of(args))
    given = {"lpips_backbone": args.lpips_backbone, "lpips_heads": args.lpips_heads,
             "colour_correction": args.colour_correction or None}  # None: keep the run's setting
    metrics = {name: value for name, value in given.items() if value is not None}
    results = evaluate_run(args.run_dir, save_images=not args.no_images, device=device_of(args), metrics=metrics,
                           maps=args.maps)
    print("\n".join(summary_lines(results, args.run_dir)))
