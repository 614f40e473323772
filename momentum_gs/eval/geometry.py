"""Scores of a reconstructed surface against a ground-truth one, both triangle meshes in the same units.

Both meshes are sampled densely and uniformly by area, and each sample's distance is to the nearest
*sample* of the other mesh (point to point, with a k-d tree), not to its triangles: a perfect mesh still
scores about half the sample spacing, sqrt(area / count), so ``count`` should make that small against the
threshold. Accuracy looks from the prediction to the ground truth (is what was built right?), completeness
from the ground truth to the prediction (was everything built?), as in DTU and Tanks and Temples.

A scene made by ``mgs synth`` names its ground-truth mesh in ``scene.json``; ``mgs mesh`` reads it here
(:func:`read_ground_truth`) and scores its mesh against it, whole and per block (:func:`score_against`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from momentum_gs.data.scene_info import SCENE_INFO_NAME, read_scene_info
from momentum_gs.errors import UserError
from momentum_gs.io.mesh import read_mesh

# Surface samples per mesh when scoring against a ground truth: the point-to-point floor is about half their
# spacing, sqrt(area / count) (0.013 units on the demo city).
SCORE_SAMPLES = 1_000_000


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, 3] points uniform over the surface (faces drawn by area, points uniform inside them), in the
    units of ``vertices`` [V, 3]; [0, 3] when ``faces`` [F, 3] is empty or has no area."""
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64).reshape(-1, 3)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = area.sum()
    if count <= 0 or not total > 0:
        return np.zeros((0, 3))
    pick = np.minimum(np.searchsorted(np.cumsum(area) / total, rng.random(count), side="right"), len(tri) - 1)
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)  # the square root makes the density uniform
    a, b, c = tri[pick, 0], tri[pick, 1], tri[pick, 2]
    return (1 - r1)[:, None] * a + (r1 * (1 - r2))[:, None] * b + (r1 * r2)[:, None] * c


def _in_region(points: np.ndarray, region) -> np.ndarray:
    """The ``points`` [N, 3] in ``region``: an xy box ((xmin, ymin), (xmax, ymax)), a function of [N, 3] points
    returning an [N] bool mask (e.g. a partition's block test), or None for all of them."""
    if region is None:
        return points
    if callable(region):
        return points[np.asarray(region(points), dtype=bool)]
    lo, hi = np.asarray(region, dtype=np.float64)
    inside = np.all((points[:, :2] >= lo) & (points[:, :2] <= hi), axis=1)
    return points[inside]


def mesh_scores(pred_vertices: np.ndarray, pred_faces: np.ndarray, gt_vertices: np.ndarray, gt_faces: np.ndarray,
                threshold: float, count: int = 200_000, seed: int = 0,
                region=None) -> dict:
    """Distances between a predicted mesh and the ground truth (vertices [V, 3], faces [F, 3], same units).

    Each mesh gets ``count`` surface samples (the seed fixes them); with ``region`` (an xy box ((xmin, ymin),
    (xmax, ymax)) or a function of [N, 3] points returning a bool mask) only the samples of both inside it
    are scored, e.g. one block of a partition; their nearest neighbours may lie outside it, so a region's
    border does not count as a hole.

    Returns a dict: ``accuracy`` (mean distance pred → gt), ``completeness`` (gt → pred), ``chamfer``
    (their mean), ``precision`` / ``recall`` (fraction of pred / gt samples closer than ``threshold`` to
    the other), ``fscore`` (their harmonic mean), ``threshold``, ``pred_samples``, ``gt_samples``. With no
    predicted or no ground-truth sample (an empty mesh or region) the distances are inf and the fractions 0.
    """
    rng = np.random.default_rng(seed)
    pred_all = sample_surface(pred_vertices, pred_faces, count, rng)
    gt_all = sample_surface(gt_vertices, gt_faces, count, rng)
    pred, gt = _in_region(pred_all, region), _in_region(gt_all, region)
    scores = {"accuracy": float("inf"), "completeness": float("inf"), "chamfer": float("inf"), "precision": 0.0,
              "recall": 0.0, "fscore": 0.0, "threshold": float(threshold), "pred_samples": len(pred),
              "gt_samples": len(gt)}
    if len(pred) == 0 or len(gt) == 0:
        return scores
    to_gt, _ = cKDTree(gt_all).query(pred, workers=-1)
    to_pred, _ = cKDTree(pred_all).query(gt, workers=-1)
    precision, recall = float(np.mean(to_gt < threshold)), float(np.mean(to_pred < threshold))
    scores.update(accuracy=float(to_gt.mean()), completeness=float(to_pred.mean()),
                  chamfer=float(to_gt.mean() + to_pred.mean()) / 2, precision=precision, recall=recall,
                  fscore=2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return scores


def ground_truth_mesh(data_dir: Path) -> Path | None:
    """The scene's ground-truth mesh (``mesh.ply`` named in ``scene.json`` by ``mgs synth``, a file inside the
    scene's folder: :mod:`momentum_gs.data.scene_info`), or None when the scene names none or it is gone."""
    info = read_scene_info(data_dir)
    name = info.get("mesh") if info else None
    return data_dir / name if name and (data_dir / name).is_file() else None


def read_ground_truth(data_dir: Path) -> tuple[Path, tuple] | None:
    """(the path, (vertices, faces, colours)) of the scene's ground-truth mesh (:func:`ground_truth_mesh`), or
    None; a UserError for one whose vertices are not all finite (it would score every mesh infinitely far)."""
    path = ground_truth_mesh(data_dir)
    if path is None:
        return None
    truth = read_mesh(path)
    bad = int((~np.isfinite(truth[0]).all(1)).sum())
    if bad:
        raise UserError(f"the ground-truth mesh {path} has {bad} vertices that are not finite (NaN or infinite); "
                        f"make the scene again with mgs synth, or remove the mesh from {data_dir / SCENE_INFO_NAME}")
    return path, truth


def score_against(vertices: np.ndarray, faces: np.ndarray, truth: tuple[np.ndarray, np.ndarray], threshold: float,
                  partition, count: int | None = None) -> dict:
    """Accuracy, completeness, Chamfer and F-score (:func:`mesh_scores`) of a mesh (vertices [V, 3], faces
    [F, 3], world units) against the ground truth's (vertices, faces), for the whole scene and, with a
    ``partition`` of several blocks, per block (the samples the partition puts in the block); both within the
    ground truth's xy extent: beyond it nothing says what is right. ``count``: samples per mesh
    (``SCORE_SAMPLES`` when None)."""
    gt_vertices, gt_faces = truth
    lo, hi = gt_vertices[:, :2].min(0), gt_vertices[:, :2].max(0)
    count = count or SCORE_SAMPLES

    def inside(points: np.ndarray) -> np.ndarray:
        return np.all((points[:, :2] >= lo) & (points[:, :2] <= hi), axis=1)

    def in_block(block: int):
        return lambda points: inside(points) & (partition.block_of(points) == block)

    scores = {"threshold": threshold, "samples": count,
              "scene": mesh_scores(vertices, faces, gt_vertices, gt_faces, threshold, count, region=inside)}
    if partition is not None and partition.num_blocks > 1:
        scores["blocks"] = [mesh_scores(vertices, faces, gt_vertices, gt_faces, threshold, count,
                                        region=in_block(block))
                            for block in range(partition.num_blocks)]
    return scores
