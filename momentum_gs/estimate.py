"""Long loops sized before most of their work: after their first items a progress bar writes one line with
the whole loop's time, measured on those items, and the option that shortens it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
PROBE = 3  # items timed before the estimate
QUIET_BELOW_S = 10.0  # a loop estimated to end sooner says nothing more than its bar


def estimate_line(what: str, per_item: float, total: int, unit: str, option: str) -> str:
    """"render: 2.10 s a frame here: about 3.2 min for 90 frames (--frames or --size to shorten)"."""
    whole = per_item * total
    span = f"{whole / 60:.1f} min" if whole >= 60 else f"{whole:.0f} s"
    return f"{what}: {per_item:.2f} s a {unit} here: about {span} for {total} {unit}s ({option} to shorten)"


def sized(items: Iterable[T], total: int, desc: str, unit: str, option: str, **bar_options) -> Iterator[T]:
    """``items`` through a tqdm bar; after ``PROBE`` of them, when the rest will take ``QUIET_BELOW_S`` or more,
    the line of :func:`estimate_line` is written above the bar (nothing where ``disable`` turns the bar off)."""
    started = time.perf_counter()
    with tqdm(items, total=total, desc=desc, unit=unit, **bar_options) as bar:
        for count, item in enumerate(bar, 1):
            yield item
            if count == PROBE and total > PROBE and not bar.disable:  # a bar turned off has no stream
                per_item = (time.perf_counter() - started) / count
                if per_item * (total - count) >= QUIET_BELOW_S:
                    bar.write(estimate_line(desc, per_item, total, unit, option), file=bar.fp)
