"""The values a number may take, for config keys and command-line options alike.

One :class:`Range` per number says what is allowed; :data:`momentum_gs.config.RANGES` holds the config keys'
and each numeric option of ``mgs`` is declared with :func:`add_number`, which checks the value when the
command line is read and writes the range into ``--help``. Every number must also be finite.

Imports nothing heavy: the command line is built from it before PyTorch is loaded.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from momentum_gs.errors import UserError


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``low`` ≤ (or <) value ≤ (or <) ``high``; None is unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def __str__(self) -> str:
        low, high = _text(self.low), _text(self.high)
        if self.low is None and self.high is None:
            return "finite"
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {low}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {high}"
        return f"in {'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}"


def _text(bound: float | None) -> str:
    """A bound as written: whole numbers in full (4294967295, not 4.29497e+09), others as %g."""
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


# Bounds on counts. Beyond them a run would not finish in years or would overflow what it indexes; a larger
# value is a typing slip (1e30 steps), and one clear line beats a run that never ends or a traceback.
MAX_STEPS = 10**9  # steps, intervals and step numbers: 11 days at 1000 steps/s
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_WIDTH = 1 << 16  # pixels on a side of an image or a frame
MAX_BLOCKS = 1 << 16  # blocks of a partition
MAX_FRAMES = 108_000  # frames in one video (an hour at 30 fps): its path's cameras are all made before rendering

FINITE = Range()
POSITIVE = Range(0, open_low=True)
AT_LEAST_0 = Range(0)
FRACTION = Range(0, 1)
COUNT = Range(0, MAX_STEPS)  # 0 allowed (usually "off" or "all")
STEPS = Range(1, MAX_STEPS)
SEED = Range(0, MAX_SEED)
PORT = Range(1, 65535)  # a TCP port
FRAME_SECONDS = Range(0.001, 60)  # a frame time the viewer aims at: a millisecond to a minute
TILE = Range(1, 1 << 24)  # Gaussians in one tile: 16 M of SH degree 3 are 4 GB, more than any viewer loads


def check_number(value: float, allowed: Range) -> str | None:
    """None if ``value`` is allowed, else the reason ("must be in [0, 1], got nan")."""
    return None if allowed.holds(value) else f"must be {allowed}, got {value!r}"


class Number:
    """The ``type`` of a numeric argparse option: parses the text as ``kind`` (int or float) and refuses a value
    outside ``allowed`` (argparse prints the one-line reason and exits 2)."""

    def __init__(self, kind: type, allowed: Range):
        self.kind, self.allowed = kind, allowed
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expects {'a whole number' if self.kind is int else 'a number'}, "
                                             f"got {text!r}")
        if not self.allowed.holds(value):
            raise argparse.ArgumentTypeError(f"must be {self.allowed}, got {text!r}")  # as typed: '1e3', not 1000.0
        return value


def add_number(parser: argparse.ArgumentParser, *flags: str, kind: type, allowed: Range, help: str = "",
               **kwargs) -> argparse.Action:
    """``parser.add_argument`` for a number: parsed and checked by :class:`Number`, its range in the help."""
    kind_text = "whole number" if kind is int else "number"
    text = f"{help} (allowed: {kind_text} {allowed})".lstrip()
    return parser.add_argument(*flags, type=Number(kind, allowed), help=text, **kwargs)


# The settings of ``mgs distill`` (train.distill.DistillConfig) and ``mgs mesh`` (mesh.extract.MeshSettings): their
# command-line options and the dataclasses' checks read these tables.
DISTILL: dict[str, Range] = {
    "ratio": Range(0, 1, open_low=True), "steps": STEPS, "sh_degree": Range(0, 3), "noise": AT_LEAST_0,
    "dropout": Range(0, 1, open_high=True), "lambda_dssim": FRACTION, "lambda_distill": AT_LEAST_0,
    "lambda_structure": AT_LEAST_0, "voxels": Range(2, 4096), "prune_fraction": FRACTION, "opacity_floor": FRACTION,
    "importance_views": Range(1, 10**6), "seed": SEED,
}
MESH: dict[str, Range] = {
    "voxel": POSITIVE, "trunc_voxels": Range(0.5, 1000), "min_alpha": Range(0, 1, open_low=True),
    "region_percentile": Range(0, 50, open_high=True),
}


def check_settings(settings: object, table: dict[str, Range], flags: dict[str, str]) -> None:
    """Raise a UserError for the first field of ``settings`` outside its range in ``table`` (None: a default
    that is worked out later); the field is named by its command-line flag where ``flags`` gives one."""
    for name, allowed in table.items():
        value = getattr(settings, name)
        reason = None if value is None else check_number(value, allowed)
        if reason:
            raise UserError(f"{flags.get(name, name)} {reason}")
