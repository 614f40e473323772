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
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("optim.steps", "log."))] + ["optim.steps=60"]
    args = argparse.Namespace(config=None, data=str(tiny_scene), seed=0, warmup=12, steps=24, overrides=overrides)
    measured = bench.measure(args, tmp_path / "run")
    assert {len(v) for v in measured.values()} == {24}
    assert (measured["time"] > 0).all()
    for name in ("sfm", "anchors", "gaussians", "pairs", "last pairs", "last time"):
        assert (measured[name] > 0).all(), name
    assert (measured["pairs"] >= measured["gaussians"]).all()  # a drawn Gaussian covers one tile at least
    views, seen = measured["view"], 0
    for i in range(len(views)):  # a view timed before: its last pairs and time are those of that render
        before = [j for j in range(i) if views[j] == views[i]]
        if before:
            seen += 1
            assert measured["last pairs"][i] == measured["pairs"][before[-1]]
            assert measured["last time"][i] == measured["time"][before[-1]]
    assert seen > 0


def test_a_bench_too_short_to_render_every_view_first_says_so(bench, tiny_scene, tmp_path):
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("optim.steps", "log."))] + ["optim.steps=20"]
    args = argparse.Namespace(config=None, data=str(tiny_scene), seed=0, warmup=1, steps=6, overrides=overrides)
    with pytest.raises(SystemExit, match="longer --warmup"):
        bench.measure(args, tmp_path / "run")
