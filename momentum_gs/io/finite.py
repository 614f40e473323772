"""A model that is not finite is never used or written as if it were.

A run can diverge to NaN or inf with a valid checkpoint (a bad run, not a tampered file). Every command that
loads a trained model for use checks it where it is loaded (:func:`momentum_gs.trained.load_run`), and
every export writer checks the Gaussians it is about to write, with :func:`require_finite`: one line naming
the first tensor that holds NaN or inf and how many of its values do, and nothing written.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from momentum_gs.errors import UserError


def nonfinite(obj: Any, name: str = "") -> Iterator[tuple[str, int, int]]:
    """(dotted name, NaN-or-inf count, size) of every floating-point tensor or numpy array in the nested dicts,
    lists and tuples ``obj`` that holds a value that is not finite."""
    if torch.is_tensor(obj):
        if obj.is_floating_point() or obj.is_complex():
            bad = obj.numel() - int(torch.isfinite(obj).sum())
            if bad:
                yield name, bad, obj.numel()
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            bad = obj.size - int(np.count_nonzero(np.isfinite(obj)))
            if bad:
                yield name, bad, obj.size
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from nonfinite(value, f"{name}.{key}" if name else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from nonfinite(value, f"{name}[{i}]")


def require_finite(obj: Any, what: str, advice: str, noun: str = "tensor") -> None:
    """A UserError when a tensor or array in ``obj`` (see :func:`nonfinite`) holds NaN or inf: "<what> is not
    finite: <name> holds N NaN/inf of M values (and K more <noun>s); <advice>"."""
    found = list(nonfinite(obj))
    if found:
        name, bad, total = found[0]
        more = f" (and {len(found) - 1} more {noun}{'s' * (len(found) > 2)})" if len(found) > 1 else ""
        raise UserError(f"{what} is not finite: {name} holds {bad} NaN/inf of {total} values{more}; {advice}")
