"""Shared fixtures: a tiny synthetic scene (made once per session) and a tiny training config."""

from __future__ import annotations

from pathlib import Path

import pytest

from momentum_gs.config import load_config


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """The ``tiny`` synthetic city in the Mill-19 layout (train/ + val/)."""
    from momentum_gs.data.synthetic import make_synthetic_scene

    return make_synthetic_scene(tmp_path_factory.mktemp("scene") / "tiny", "tiny", seed=0)


# A few dozen steps with growing and pruning inside the window, on the tiny scene.
TINY_OVERRIDES = [
    "optim.steps=24",
    "strategy.start_stat=2",
    "strategy.update_from=6",
    "strategy.update_interval=6",
    "strategy.update_until=100",
    "strategy.success_threshold=0.3",
    "log.tensorboard=false",
    "log.progress_every=1",
    "device=cpu",
]


@pytest.fixture
def tiny_config(tiny_scene, tmp_path):
    """A config that trains the tiny scene for 24 steps into ``tmp_path/run``."""
    cfg = load_config(overrides=TINY_OVERRIDES)
    cfg.data.path = str(tiny_scene)
    cfg.out = str(tmp_path / "run")
    return cfg
