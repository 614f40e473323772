"""What several commands' command lines share."""

from __future__ import annotations

import argparse

import torch

from momentum_gs.config import resolve_device


def add_device(parser: argparse.ArgumentParser, what: str = "render") -> None:
    """``--device``: where the command works (default: the run's config)."""
    parser.add_argument("--device", help=f"{what} on this device (default: the run's config)")


def device_of(args: argparse.Namespace) -> torch.device | None:
    """The device ``--device`` names, or None (the run's config decides)."""
    return resolve_device(args.device) if args.device else None
