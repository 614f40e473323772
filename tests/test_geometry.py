"""Mesh scores against a ground truth: surface sampling, distances, precision/recall, regions, empty input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from momentum_gs.eval.geometry import mesh_scores, sample_surface

COUNT = 100_000


def _plane(x0: float, x1: float, y0: float, y1: float, z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle at height z as two triangles."""
    vertices = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
    return vertices, np.array([[0, 1, 2], [0, 2, 3]])


def test_samples_are_uniform_by_area():
    vertices = np.array([[0.0, 0, 0], [3, 0, 0], [0, 3, 0], [10, 0, 0], [11, 0, 0], [10, 1, 0]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # areas 4.5 and 0.5
    points = sample_surface(vertices, faces, 20_000, np.random.default_rng(0))
    big = points[:, 0] < 5
    assert points.shape == (20_000, 3) and big.mean() == pytest.approx(0.9, abs=0.01)
    assert np.all(points[big, :2].sum(axis=1) <= 3 + 1e-9) and np.all(points[:, :2] >= -1e-12)
    np.testing.assert_allclose(points[big].mean(axis=0), [1.0, 1.0, 0.0], atol=0.03)  # the centroid
    assert sample_surface(vertices, faces[:0], 10, np.random.default_rng(0)).shape == (0, 3)


def test_identical_meshes_score_perfectly():
    vertices, faces = _plane(0, 10, 0, 10)
    scores = mesh_scores(vertices, faces, vertices, faces, threshold=0.1, count=COUNT)
    assert scores["chamfer"] < math.sqrt(100 / COUNT)  # about half the sample spacing
    assert scores["precision"] == scores["recall"] == scores["fscore"] == 1.0
    assert scores["pred_samples"] == scores["gt_samples"] == COUNT


@pytest.mark.parametrize("threshold, fscore", [(0.4, 1.0), (0.2, 0.0)])
def test_a_shifted_plane_is_off_by_the_shift(threshold, fscore):
    gt_vertices, faces = _plane(0, 10, 0, 10)
    pred_vertices = gt_vertices + [0.0, 0.0, 0.3]
    scores = mesh_scores(pred_vertices, faces, gt_vertices, faces, threshold=threshold, count=COUNT)
    assert scores["accuracy"] == pytest.approx(0.3, abs=0.003)
    assert scores["completeness"] == pytest.approx(0.3, abs=0.003)
    assert scores["chamfer"] == pytest.approx(0.3, abs=0.003)
    assert scores["precision"] == scores["recall"] == scores["fscore"] == fscore


def test_half_a_prediction_has_half_the_recall_and_full_precision():
    gt_vertices, gt_faces = _plane(0, 10, 0, 10)
    pred_vertices, pred_faces = _plane(0, 5, 0, 10)
    scores = mesh_scores(pred_vertices, pred_faces, gt_vertices, gt_faces, threshold=0.1, count=COUNT)
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(0.5, abs=0.02)
    assert scores["fscore"] == pytest.approx(2 / 3, abs=0.02)
    assert scores["accuracy"] < 0.02 and scores["completeness"] == pytest.approx(0.5 * 2.5, abs=0.05)


def test_a_region_keeps_the_samples_inside_it():
    vertices, faces = _plane(0, 10, 0, 10)
    scores = mesh_scores(vertices, faces, vertices, faces, threshold=0.1, count=COUNT, region=((0, 0), (5, 10)))
    assert scores["pred_samples"] == pytest.approx(COUNT / 2, rel=0.02)
    assert scores["gt_samples"] == pytest.approx(COUNT / 2, rel=0.02)
    assert scores["fscore"] == 1.0


def test_a_half_wrong_prediction_scores_its_wrong_half_only_inside_its_region():
    gt_vertices, faces = _plane(0, 10, 0, 10)
    pred_vertices = gt_vertices.copy()
    pred_vertices[[1, 2], 2] = 2.0  # tilted: right under the ground truth at x = 0, 2 above at x = 10
    left = mesh_scores(pred_vertices, faces, gt_vertices, faces, 0.1, count=COUNT, region=((0, 0), (0.5, 10)))
    right = mesh_scores(pred_vertices, faces, gt_vertices, faces, 0.1, count=COUNT, region=((9.5, 0), (10, 10)))
    assert left["accuracy"] < 0.1 < 1.5 < right["accuracy"]


@pytest.mark.parametrize("case", ["empty_prediction", "empty_region", "empty_ground_truth"])
def test_nothing_to_compare_gives_infinite_distances_and_zero_fractions(case):
    vertices, faces = _plane(0, 10, 0, 10)
    pred_faces = faces[:0] if case == "empty_prediction" else faces
    gt_faces = faces[:0] if case == "empty_ground_truth" else faces
    region = ((20, 20), (30, 30)) if case == "empty_region" else None
    scores = mesh_scores(vertices, pred_faces, vertices, gt_faces, threshold=0.1, count=1000, region=region)
    assert scores["accuracy"] == scores["completeness"] == scores["chamfer"] == math.inf
    assert scores["precision"] == scores["recall"] == scores["fscore"] == 0.0


def test_a_region_given_as_a_mask_function_and_its_border_is_not_a_hole():
    """A block test (points -> bool) crops like a box; a prediction ending exactly at the region's border is
    matched against ground-truth samples just across it, so the border costs no recall."""
    gt_vertices, gt_faces = _plane(0, 10, 0, 10)
    pred_vertices, pred_faces = _plane(0, 5, 0, 10)
    left = lambda points: points[:, 0] < 5  # noqa: E731
    scores = mesh_scores(pred_vertices, pred_faces, gt_vertices, gt_faces, threshold=0.1, count=COUNT, region=left)
    assert scores["gt_samples"] == pytest.approx(COUNT / 2, rel=0.02) and scores["pred_samples"] == COUNT
    assert scores["precision"] == 1.0 and scores["recall"] > 0.999
    near_border = mesh_scores(gt_vertices, gt_faces, gt_vertices, gt_faces, threshold=0.1, count=COUNT,
                              region=((4.99, 0), (5.01, 10)))
    assert near_border["accuracy"] < 0.02  # neighbours found outside the thin strip
