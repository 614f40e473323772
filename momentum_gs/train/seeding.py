"""Seeds and random-generator states: what makes a CPU run repeat bit for bit, and a resume continue it."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; with ``deterministic``, also ask for deterministic kernels.

    Seeds alone are not enough on a multi-core CPU: the backward of indexing accumulates with threads in
    whatever order they finish, so two runs drifted apart within a hundred steps.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def rng_state() -> dict:
    """The global torch (CPU), numpy and python generator states, for a checkpoint."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
