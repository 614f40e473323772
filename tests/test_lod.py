"""Levels of detail (export/tiles/lod.py): moment-matched merges, the k-d tree of tiles and what its levels
look like."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentum_gs.data.colmap.model import rotmat_to_qvec
from momentum_gs.export.tiles.lod import build_tree, concatenate, take
from momentum_gs.model.lod import merge_to, moment_match
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.render.projection import quat_to_rotmat


def random_gaussians(n: int, seed: int = 0, degree: int = 1, spread: float = 10.0) -> StandardGaussians:
    g = torch.Generator().manual_seed(seed)
    return StandardGaussians(means=torch.rand(n, 3, generator=g) * spread,
                             quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                             scales=torch.rand(n, 3, generator=g) * 0.2 + 0.02,
                             opacities=torch.rand(n, generator=g) * 0.9 + 0.05,
                             sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.3)


def covariance(g: StandardGaussians) -> np.ndarray:
    r = quat_to_rotmat(g.quats.double()).numpy()
    return np.einsum("mij,mj,mkj->mik", r, g.scales.numpy().astype(np.float64) ** 2, r)


def test_quaternions_survive_the_matrix_round_trip():
    """The merge's conversions: quaternion to rotation matrix (the renderer's) and back (COLMAP's)."""
    q = random_gaussians(500).quats.numpy().astype(np.float64)
    r = quat_to_rotmat(torch.from_numpy(q)).numpy()
    back = rotmat_to_qvec(r)
    assert np.allclose(np.abs((back * q).sum(1)), 1, atol=1e-9)
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(r), 1)


def test_a_group_of_one_is_the_gaussian_itself():
    g = random_gaussians(50)
    merged, error = moment_match(g, np.arange(50))
    assert error == pytest.approx(0, abs=1e-6)
    assert np.allclose(merged.means, g.means, atol=1e-6) and np.allclose(covariance(merged), covariance(g), atol=1e-6)
    assert np.allclose(merged.sh, g.sh, atol=1e-6) and np.allclose(merged.opacities, g.opacities, atol=1e-6)


def test_two_gaussians_merge_to_their_mean_and_spread():
    """Equal isotropic Gaussians (scale s) at x = ±d: the merge is centred at 0 with variance s² + d² along x."""
    s, d = 0.1, 0.5
    g = StandardGaussians(means=torch.tensor([[-d, 0, 0], [d, 0, 0]]), quats=torch.tensor([[1.0, 0, 0, 0]] * 2),
                          scales=torch.full((2, 3), s), opacities=torch.tensor([0.3, 0.3]),
                          sh=torch.tensor([[[1.0, 0, 0]], [[0, 1.0, 0]]]))
    merged, error = moment_match(g, np.zeros(2, np.int64))
    assert len(merged) == 1 and np.allclose(merged.means, 0, atol=1e-7)
    assert np.allclose(covariance(merged)[0], np.diag([s * s + d * d, s * s, s * s]), atol=1e-6)
    assert np.allclose(merged.sh[0, 0], [0.5, 0.5, 0])  # equal weights
    assert merged.opacities[0] == pytest.approx(2 * 0.3 * s * s / (s * np.sqrt(s * s + d * d)), rel=1e-5)
    assert error == pytest.approx(d + np.sqrt(s * s + d * d) - s, rel=1e-5)


def test_merging_to_a_budget_keeps_within_it_and_keeps_the_weighted_centre():
    g = random_gaussians(5000, seed=1)
    for budget in (1, 37, 800, 4999):
        merged, _ = merge_to(g, budget)
        assert 1 <= len(merged) <= budget
        assert len(merged) > budget / 8  # the grid is the finest that fits: not far below the budget
        w = g.opacities.numpy() * np.sort(g.scales.numpy(), 1)[:, 1:].prod(1)
        centre = (w[:, None] * g.means.numpy()).sum(0) / w.sum()
        if budget == 1:
            assert np.allclose(merged.means[0], centre, atol=1e-4)
    assert merge_to(g, 5000)[0] is g


def test_the_tree_holds_every_gaussian_once_in_its_leaves_and_bounded_tiles():
    g = random_gaussians(3000, seed=2)
    root = build_tree(g, "b0", 256)
    tiles = list(root.walk())
    leaves = [t for t in tiles if not t.children]
    assert len({t.name for t in tiles}) == len(tiles)
    assert all(len(t.gaussians) <= 256 for t in tiles)
    assert sum(len(t.gaussians) for t in leaves) == 3000 and all(t.geometric_error == 0 for t in leaves)
    rows = np.concatenate([t.gaussians.means.numpy() for t in leaves])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(g.means.numpy(), axis=0))
    for tile in tiles:
        for child in tile.children:
            assert np.all(child.box[0] >= tile.box[0] - 1e-6) and np.all(child.box[1] <= tile.box[1] + 1e-6)
            assert tile.geometric_error >= child.geometric_error and tile.geometric_error > 0


def test_take_and_concatenate_are_inverse():
    g = random_gaussians(100, seed=3, degree=3)
    parts = [take(g, np.arange(0, 40)), take(g, np.arange(40, 100))]
    back = concatenate(parts)
    assert all(torch.equal(a, b) for a, b in zip((back.means, back.sh), (g.means, g.sh)))


def _ground(n: int) -> StandardGaussians:
    """``n`` flat Gaussians tiling a 10 × 10 ground at z = 0 with smoothly varying colours."""
    from momentum_gs.model.standard import SH_C0

    xy = torch.rand(n, 2, generator=torch.Generator().manual_seed(0)) * 10 - 5
    colour = torch.stack([0.5 + 0.4 * torch.sin(xy[:, 0] * 1.3), 0.5 + 0.4 * torch.cos(xy[:, 1] * 0.9),
                          0.5 + 0.3 * torch.sin(xy.sum(1))], 1)
    s = 10 / n**0.5
    return StandardGaussians(torch.cat([xy, torch.zeros(n, 1)], 1), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                             torch.tensor([[s, s, s / 10]]).repeat(n, 1), torch.full((n,), 0.8),
                             ((colour - 0.5) / SH_C0)[:, None, :])


def test_a_merged_level_looks_like_the_finest_far_better_than_dropping_gaussians():
    """A quarter of the Gaussians, merged, renders above 25 dB PSNR against all of them; the same count picked at random
    (what a viewer without levels would have to do) is far off."""
    from momentum_gs.config import load_config
    from momentum_gs.data.camera import Camera
    from momentum_gs.losses import psnr

    g = _ground(8000)
    world_to_cam = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    world_to_cam[2, 3] = 6.0  # 6 units above the ground, looking down
    camera = Camera("v", 96, 96, torch.tensor([[86.0, 0, 48], [0, 86.0, 48], [0, 0, 1]]), world_to_cam)
    render_cfg = load_config().render
    finest = g.render(camera, render_cfg)
    merged, _ = merge_to(g, 2000)
    dropped = take(g, np.random.default_rng(0).choice(len(g), len(merged), replace=False))
    merged_psnr, dropped_psnr = (float(psnr(x.render(camera, render_cfg), finest)) for x in (merged, dropped))
    assert merged_psnr > 25 and merged_psnr > dropped_psnr + 8, (merged_psnr, dropped_psnr)


def test_a_streamed_tree_hands_each_tile_over_once_after_its_children_and_keeps_only_the_root():
    g = random_gaussians(3000, seed=2)
    kept = build_tree(g, "b0", 256)
    handed = []
    streamed = build_tree(g, "b0", 256, done=lambda tile: handed.append((tile.name, tile.gaussians.means.clone())))
    tiles = list(streamed.walk())
    assert sorted(name for name, _ in handed) == sorted(t.name for t in tiles)  # each once
    order = [name for name, _ in handed]
    assert all(order.index(child.name) < order.index(tile.name) for tile in tiles for child in tile.children)
    assert streamed.gaussians is not None and all(t.gaussians is None for t in tiles[1:])
    same = dict(handed)  # the content handed over is what the tree built without streaming holds
    assert all(torch.equal(same[t.name], t.gaussians.means) for t in kept.walk())
    assert [t.geometric_error for t in tiles] == [t.geometric_error for t in kept.walk()]
