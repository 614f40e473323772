"""scripts/bench_view_costs.py: the costs it notes for each timed view, and the wait a deal by a cost leaves."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from tests.helpers.script_module import load_script
from tests.helpers.tiny_training import TINY_OVERRIDES


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_view_costs")


def test_a_deal_by_the_times_themselves_waits_least(bench):
    times = np.array([4.0, 3.0, 2.0, 1.0, 5.0, 5.0, 1.0, 1.0])
    assert bench.waiting(times, times, 4, 2) == 0.0  # 4+1 | 3+2, then 5+1 | 5+1
    # costs that put the dear views together: 4+2 | 3+1 waits 1 (6 against the mean 5), 5+5 | 1+1 waits 4
    misleading = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    assert bench.waiting(times, misleading, 4, 2) == pytest.approx(2.5)
    # eight views to four processes: 5+1, 5+1, 4+1, 3+2; the slowest share less the mean share
    assert bench.waiting(times, times, 8, 4) == pytest.approx(0.5)


def test_each_timed_view_gets_every_cost(bench, tiny_scene, tmp_path):
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("optim.steps", "log."))] + ["optim.steps=40"]
    args = argparse.Namespace(config=None, data=str(tiny_scene), seed=0, warmup=4, steps=8, overrides=overrides)
    measured = bench.measure(args, tmp_path / "run")
    assert {len(v) for v in measured.values()} == {8}
    assert (measured["time"] > 0).all()
    for name in ("sfm", "anchors", "gaussians", "pairs"):
        assert (measured[name] > 0).all(), name
    assert (measured["pairs"] >= measured["gaussians"]).all()  # a drawn Gaussian covers one tile at least
