"""Which training view each step uses: a fresh random permutation per epoch, derived from the step alone.

Deriving the order from (seed, step) instead of a stateful generator means a resumed run sees exactly the
views an uninterrupted run would have seen, with nothing extra to checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def view_schedule(start: int, end: int, num_views: int, seed: int) -> Iterator[int]:
    """View indices for steps ``start .. end-1``, one permutation computed per epoch."""
    step = start
    while step < end:
        epoch, position = divmod(step, num_views)
        order = np.random.default_rng([seed, epoch]).permutation(num_views)
        for index in order[position : position + end - step]:
            yield int(index)
        step += min(num_views - position, end - step)
