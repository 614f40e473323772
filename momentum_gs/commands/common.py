"""What several commands' command lines share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

import torch

from momentum_gs.config import load_config, resolve_device, use_threads
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.render.kernels import use_kernels

T = TypeVar("T")


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as argparse's ``type=``: the ValueError it raises becomes argparse's one-line error."""
    def checked(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc))

    return checked



def add_device(parser: argparse.ArgumentParser, what: str = "render") -> None:
    """``--device``: where the command works (default: the run's config)."""
    parser.add_argument("--device", help=f"{what} on this device (default: the run's config)")


def device_of(args: argparse.Namespace) -> torch.device | None:
    """The device ``--device`` names, or None (the run's config decides)."""
    return resolve_device(args.device) if args.device else None


def use_run_settings(run_dir, device: torch.device | None = None) -> None:
    """Set this process's thread count and CPU kernels as the run ``run_dir`` trained with (its config's
    ``threads``, for ``device`` or the run's, and ``render.kernels``), before the command reads it; a folder
    that is no run is said by the reader."""
    config = RunFolder(run_dir).config
    if config.is_file():
        cfg = load_config(config)
        use_threads(cfg.threads, device or resolve_device(cfg.device))
        use_kernels(cfg.render.kernels)
