"""A map worked through a band of rows at a time, one band a thread on the threads PyTorch may use: the despike's
(:mod:`momentum_gs.maps.despike`) and the guided median's (:mod:`momentum_gs.maps.guide`) way through a map. Each band
reads what it needs around its rows and writes only its own, so the bands need no lock and the result does not depend
on the threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from momentum_gs.estimate import sized


def in_bands(work: Callable[[int], None], height: int, rows: int, desc: str, option: str,
             show_progress: bool = False) -> None:
    """``work(start)`` for each band of ``rows`` rows that starts at row ``start``, the bands covering ``height`` rows.
    With ``show_progress`` a bar named ``desc`` counts the bands done, and a long pass says what it will take and that
    ``option`` skips it."""
    starts = range(0, height, max(1, rows))
    with ThreadPoolExecutor(max(1, min(torch.get_num_threads(), len(starts)))) as pool:
        for _ in sized(pool.map(work, starts), len(starts), desc, "band", option, disable=not show_progress):
            pass  # each band's result is None; an error in one is raised here
