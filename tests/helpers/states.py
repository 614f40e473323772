"""Comparing trained states: every tensor of a nested checkpoint by name, and torch on one thread while a test
computes what processes of one thread each computed."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_thread():
    """Run torch on one thread, as torchrun's workers do: the sums then happen in the same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def flat_tensors(state, prefix: str = "") -> dict:
    """name → tensor for every tensor of a nested checkpoint state."""
    if torch.is_tensor(state):
        return {prefix: state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    out = {}
    for key, value in items:
        out.update(flat_tensors(value, f"{prefix}.{key}"))
    return out
