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
    """The values a number may take: ``low`` ≤ (or <) value ≤ (or <) ``high``; None is unbounded. ``why`` says
    what breaks outside (the physics behind a bound), and follows the range in messages."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    why: str = ""

    def holds(self, value: float) -> bool:
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an int too large for a float: past any bound
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
    """A bound as written: whole numbers in full (4294967295, not 4.29497e+09) below 2^53, others as %g."""
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 2**53 else f"{bound:g}"


# Bounds on counts. Beyond them a run would not finish in years or would overflow what it indexes; a larger
# value is a typing slip (1e30 steps), and one clear line beats a run that never ends or a traceback.
MAX_STEPS = 10**9  # steps, intervals and step numbers: 11 days at 1000 steps/s
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_WIDTH = 1 << 16  # pixels on a side of an image or a frame
MAX_BLOCKS = 1 << 16  # blocks of a partition
MAX_FRAMES = 108_000  # frames in one video (an hour at 30 fps): its path's cameras are all made before rendering

# float32, the type of every tensor the model trains and renders (positions, scales, depths): its largest
# number and its smallest normal one (numpy.finfo(numpy.float32).max and .tiny).
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
# The largest mean NDC gradient growing may wait for. One Gaussian's gradient of the L1 image loss (a mean over
# pixels, at most 1) with respect to its NDC position is at most about 2.5 (sqrt(2 pi) times its size over the
# image's, for a Gaussian as large as the image); measured gradients stay below 0.05.
MAX_NDC_GRADIENT = 10.0
# Loss weights: beyond 2^24 a weighted term's gradient leaves the image loss's (weight 1) below float32's
# resolution (2^-24) where both reach the same parameters, so the images stop training them.
MAX_WEIGHT = float(1 << 24)

FINITE = Range()
POSITIVE = Range(0, open_low=True)
AT_LEAST_0 = Range(0)
FRACTION = Range(0, 1)
COUNT = Range(0, MAX_STEPS)  # 0 allowed (usually "off" or "all")
# A step of the schedule (where something starts or stops) and steps between two events (0: never).
STEP = Range(0, MAX_STEPS, why="a step of the run; runs stop at 10^9 steps, so a later one is never reached")
EVERY = Range(0, MAX_STEPS, why="steps between two, 0 for never; runs stop at 10^9 steps")
HOLDOUT = Range(0, MAX_STEPS, why="every n-th SfM point kept out, 0 for none; no model holds 10^9 points")
# The loss (1 - λ) L1 + λ D-SSIM: a mix of two terms.
SSIM_MIX = Range(0, 1, why="the loss is (1 - λ) L1 + λ D-SSIM: outside [0, 1] one term's weight turns negative and "
                 "the loss rewards error")
STEPS = Range(1, MAX_STEPS, why="at least one step; 10^9 take 11 days at 1000 steps a second, so more is a typing "
              "slip")
SEED = Range(0, MAX_SEED, why="numpy's seeds are 32-bit")
PORT = Range(1, 65535, why="a TCP port is 16 bits, and port 0 would be one the system picks and no one knows")
# A frame time the viewer aims at: a millisecond to a minute.
FRAME_SECONDS = Range(0.001, 60, why="a millisecond is a 1000 fps target, beyond any screen, and a frame of a minute "
                      "is no longer a moving camera: outside is a typing slip")
# Gaussians in one tile: 16 M of SH degree 3 are 4 GB, more than any viewer loads.
TILE = Range(1, 1 << 24, why="a tile holds at least one Gaussian, and 16 M of SH degree 3 are 4 GB, more than any "
             "viewer loads")
# Files one export of tiles may write (3D Tiles, streamed SOG): past it a user uploads or serves a folder no server
# lists comfortably, and a --tile-size far too small for the scene is the usual cause.
MAX_TILE_FILES = 100_000
# A coordinate in world units: the model holds positions as float32.
COORDINATE = Range(-FLOAT32_MAX, FLOAT32_MAX, why="world coordinates are float32, at most 3.4e38 in size")
# Shrinking the images (data.downsample, data.max_width): a scene's images are at most MAX_WIDTH pixels a side.
DOWNSAMPLE = Range(1, MAX_WIDTH, why="a whole factor: 1 keeps the images, and beyond 65536, the widest image a scene "
                   "holds, every image is less than a pixel")
FIT_WIDTH = Range(0, MAX_WIDTH, why="pixels, 0 for off; no image of a scene is wider than 65536")
# The fraction of a view's content a block owns (partition.coverage): a camera joins blocks owning at least it.
COVERAGE = Range(0, 1, why="a fraction of a view's content, which no block owns more than all of")
# A length in world units: the model holds positions and sizes as float32.
LENGTH = Range(0, FLOAT32_MAX, open_low=True, why="lengths are float32 world units, at most 3.4e38")
# A log-scale (log world units): a covariance holds the squared scale exp(2 s), which must stay a finite float32
# above its smallest normal number (1.2e-38) to render.
# Rounded inwards to 0.01: the exact bounds round to a float32 whose exponential is already past them.
LOG_SCALE = Range(math.ceil(50 * math.log(FLOAT32_TINY)) / 100, math.floor(50 * math.log(FLOAT32_MAX)) / 100,
                  why="exp(2 x value), a covariance's squared scale, must be a finite float32 above 1.2e-38")
ADAM_BETA = Range(0, 1, open_high=True, why="Adam's moments decay as b x old + (1 - b) x new: at 1 they never take a "
                  "gradient, outside [0, 1] they diverge")
WEIGHT = Range(0, MAX_WEIGHT, why="above 2^24 a term's gradient drowns the image loss's below float32's resolution")
# Adam moves every parameter by about its learning rate per step, whatever the gradient: above 1 a single step
# crosses the whole useful range of features, log-scales and MLP weights (offsets: the scene's extent).
LEARNING_RATE = Range(0, 1, open_low=True, why="Adam moves a parameter by about its learning rate per step; above 1 "
                      "one step crosses the whole useful range of features, log-scales and MLP weights")
DESPIKE = Range(0, 255, why="pixels a side of the window a DSM's spike takes the median of, 0 for none; a wider one "
                "takes 65 000 heights a cell and flattens whole buildings")
# A block's margin, a fraction of its cell per side: at 1 a block already holds 3 x 3 cells' points (its
# neighbours' whole cells); blocks exist to be much smaller than the scene.
MARGIN = Range(0, 1, why="at 1 a block already takes its neighbours' whole cells (3 x 3 cells' points); wider "
               "blocks are no longer parts of the scene")


def check_number(value: float, allowed: Range) -> str | None:
    """None if ``value`` is allowed, else the reason ("must be in [0, 1], got nan"), with the range's ``why``."""
    return None if allowed.holds(value) else f"must be {allowed}, got {shown(value)}{_because(allowed)}"


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a message: at most ``limit`` characters, and an int too long to print as its size."""
    try:
        text = repr(value)
    except ValueError:  # Python refuses to print ints of more than 4300 digits
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else f"{text[:limit]}..."


def _because(allowed: Range) -> str:
    return f" ({allowed.why})" if allowed.why else ""


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
            # as typed: '1e3', not 1000.0
            raise argparse.ArgumentTypeError(f"must be {self.allowed}, got {text!r}{_because(self.allowed)}")
        return value


def add_number(parser: argparse.ArgumentParser, *flags: str, kind: type, allowed: Range, help: str = "",
               **kwargs) -> argparse.Action:
    """``parser.add_argument`` for a number: parsed and checked by :class:`Number`, its range in the help."""
    kind_text = "whole number" if kind is int else "number"
    text = f"{help} (allowed: {kind_text} {allowed})".lstrip()
    return parser.add_argument(*flags, type=Number(kind, allowed), help=text, **kwargs)


# The settings of ``mgs distill`` (train.distill.DistillConfig) and ``mgs mesh`` (mesh.settings.MeshSettings): their
# command-line options and the dataclasses' checks read these tables.
DISTILL: dict[str, Range] = {
    "ratio": Range(0, 1, open_low=True, why="a fraction of the baked export's Gaussians: the student starts from "
                   "some of them, and no more than there are"), "steps": STEPS,
    "sh_degree": Range(0, 3, why="the degrees of spherical harmonics the model and the formats hold"),
    "noise": Range(0, 10, why="the noisy teacher's log-scales move by N(0, noise^2): beyond 10 exp(2 x log-scale) "
                   "leaves float32 within a few standard deviations"),
    "dropout": Range(0, 1, open_high=True, why="the chance that the dropout teacher drops a Gaussian: at 1 it drops "
                     "every one and renders nothing"),
    "lambda_dssim": SSIM_MIX, "lambda_distill": WEIGHT, "lambda_structure": WEIGHT,
    "voxels": Range(2, 4096, why="cells per side of the structure loss's histogram: one cell compares nothing, and "
                    "4096^3 cells are 69 G counters, more memory than any machine has"),
    "prune_fraction": Range(0, 1, why="a fraction of the student's Gaussians"),
    "opacity_floor": Range(0, 1, why="an opacity, which lies in [0, 1]"),
    "importance_views": Range(1, 10**6, why="views rendered to score importance: at least one, and a million renders "
                              "take days: a typing slip"), "seed": SEED,
}
MESH: dict[str, Range] = {
    "voxel": LENGTH,
    "trunc_voxels": Range(0.5, 1000, why="below half a voxel a surface between two grid points reaches neither; "
                          "1000 voxels is a quarter of the largest grid's side, a band that smears every surface"),
    "min_alpha": Range(0, 1, open_low=True, why="a pixel's accumulated opacity, in [0, 1]; at 0 the empty sky gives "
                       "depths"),
    "region_percentile": Range(0, 50, open_high=True, why="the share of the anchors cut at each end of each axis: at 50 "
                               "the two ends meet and the region is empty"),
}


def check_settings(settings: object, table: dict[str, Range], flags: dict[str, str]) -> None:
    """Raise a UserError for the first field of ``settings`` outside its range in ``table`` (None: a default
    that is worked out later); the field is named by its command-line flag where ``flags`` gives one."""
    for name, allowed in table.items():
        value = getattr(settings, name)
        reason = None if value is None else check_number(value, allowed)
        if reason:
            raise UserError(f"{flags.get(name, name)} {reason}")
