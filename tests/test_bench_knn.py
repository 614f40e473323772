"""The torch kNN of scripts/bench_knn.py against the library's scipy kNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentum_gs.model.anchors import knn_mean_squared_distance
from tests.helpers.script_module import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_knn")


def test_torch_knn_matches_scipy(bench):
    rng = np.random.default_rng(0)
    points = rng.uniform(0.0, 10.0, (500, 3)).astype(np.float32)
    points[10:13] = points[0]  # a point with three twins: its mean squared distance is 0
    points[20] = points[21]  # one pair of twins
    points[-1] = (1000.0, -1000.0, 500.0)  # a lone far point
    expected = knn_mean_squared_distance(points)
    # 26-row chunks (the last one of 6 rows), so the chunking is exercised too
    got = bench.knn_mean_squared_distance_torch(torch.as_tensor(points), k=3, chunk_mb=0.05)
    assert got.shape == (500,) and expected[0] == 0.0 and expected[-1] > 1e5
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-12)
    assert bench.max_rel_diff(got, torch.as_tensor(expected)) < 1e-5


@pytest.mark.parametrize("num", [0, 1, 2, 3, 4])
def test_torch_knn_few_points(bench, num):
    points = np.arange(3 * num, dtype=np.float32).reshape(num, 3) ** 1.5
    got = bench.knn_mean_squared_distance_torch(torch.as_tensor(points), k=3)
    np.testing.assert_allclose(got.double().numpy(), knn_mean_squared_distance(points), rtol=1e-5, atol=0)
