"""The surface regularisers (config section ``geometry``): flatten, depth-normal consistency, and training with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.losses import (DEPTH_SMOOTH_EDGE, depth_normal_loss, depth_smooth_loss, depth_to_normals,
                                flatten_loss)
from momentum_gs.train.trainer import Trainer

F64 = torch.float64
K = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=F64)


def _plane_depth(slope_x: float, slope_y: float, offset: float = 2.0, height: int = 12, width: int = 16):
    """[H, W, 1] camera z of the plane z = offset + slope_x·x + slope_y·y seen through ``K``."""
    ys = torch.arange(height, dtype=F64) + 0.5
    xs = torch.arange(width, dtype=F64) + 0.5
    ray_y, ray_x = torch.meshgrid((ys - K[1, 2]) / K[1, 1], (xs - K[0, 2]) / K[0, 0], indexing="ij")
    return (offset / (1 - slope_x * ray_x - slope_y * ray_y))[..., None]


@pytest.mark.parametrize("slopes", [(0.0, 0.0), (0.5, 0.0), (-0.3, 0.7)])
def test_depth_to_normals_of_a_plane(slopes):
    normals, valid = depth_to_normals(_plane_depth(*slopes), K)
    expected = torch.tensor([slopes[0], slopes[1], -1.0], dtype=F64)  # ∇(z - a x - b y) flipped to face us
    expected = expected / expected.norm()
    assert valid.sum() == 10 * 14 and not valid[0].any() and not valid[:, -1].any()
    torch.testing.assert_close(normals[valid[..., 0]], expected.expand(140, 3), atol=1e-12, rtol=0)


def test_a_hole_in_the_depth_invalidates_its_neighbours():
    depth = _plane_depth(0.2, 0.1)
    depth[5, 7] = 0.0
    _, valid = depth_to_normals(depth, K)
    assert valid.sum() == 140 - 5  # the pixel itself and its four neighbours
    assert not valid[5, 7] and not valid[4, 7] and not valid[5, 8] and valid[4, 8]


def test_depth_normal_loss_is_zero_on_agreement_and_its_gradient():
    depth = _plane_depth(0.5, -0.2)
    surface, _ = depth_to_normals(depth, K)
    alpha = torch.full_like(depth, 0.9)
    agreeing = alpha * surface  # blended unit normals along the surface normal
    assert depth_normal_loss(depth * alpha, alpha, agreeing, K).abs() < 1e-12
    turned = agreeing.flip(-1)
    assert depth_normal_loss(depth * alpha, alpha, turned, K) > 0.1
    transparent = torch.full_like(depth, 0.3)  # below α = 0.5 nothing counts
    assert depth_normal_loss(depth * transparent, transparent, turned, K) == 0
    inputs = (depth * alpha + 0.01 * torch.rand_like(depth), alpha, turned)
    inputs = tuple(t.clone().requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(lambda d, a, n: depth_normal_loss(d, a, n, K), inputs)


def test_flatten_loss():
    scales = torch.tensor([[0.3, 0.1, 0.2], [0.05, 0.4, 0.4]], requires_grad=True)
    loss = flatten_loss(scales)
    assert loss.item() == pytest.approx(0.075)
    loss.backward()
    torch.testing.assert_close(scales.grad, torch.tensor([[0, 0.5, 0], [0.5, 0, 0]]))
    assert flatten_loss(torch.zeros(0, 3)) == 0


def test_depth_smooth_loss_weighs_depth_steps_by_the_photo():
    """A flat depth costs nothing; a step where the photo shows none costs its log-depth step over the pairs; the
    same step where the photo steps too costs exp(-edge x the photo's step) as much; uncovered pixels take no part;
    the gradient pulls a lone raised pixel towards its neighbours."""
    alpha = torch.ones(6, 8, 1, dtype=F64)
    flat, photo = torch.full((6, 8, 1), 2.0, dtype=F64), torch.full((6, 8, 3), 0.5, dtype=F64)
    assert depth_smooth_loss(flat, alpha, photo) == 0
    stepped = flat.clone()
    stepped[:, 4:] = 3.0  # a step between columns 3 and 4, 6 pairs of the 6 x 7 + 5 x 8 = 82
    pairs = 6 * 7 + 5 * 8
    expected = 6 * torch.log(torch.tensor(1.5, dtype=F64)) / pairs
    torch.testing.assert_close(depth_smooth_loss(stepped, alpha, photo), expected)
    edged = photo.clone()
    edged[:, 4:] = 0.8  # the photo steps by 0.3 at the same place
    calm = torch.exp(torch.tensor(-0.3 * DEPTH_SMOOTH_EDGE, dtype=F64))
    torch.testing.assert_close(depth_smooth_loss(stepped, alpha, edged), expected * calm)
    empty = alpha.clone()
    empty[:, 4] = 0.2  # column 4 uncovered: the step's pairs are gone, and the 5 pairs down column 4 with them
    assert depth_smooth_loss(stepped * empty, empty, photo) == 0
    bump = flat.clone().requires_grad_()
    lift = torch.zeros_like(flat)
    lift[2, 3] = 0.5
    raised = bump + lift
    depth_smooth_loss(raised, alpha, photo).backward()
    assert bump.grad[2, 3, 0] > 0 and (bump.grad[1, 3, 0] < 0) and bump.grad[0, 0, 0] == 0


def _mean_smallest_scale(trainer: Trainer) -> float:
    """Mean smallest child scale of the Gaussians decoded for every training view."""
    from momentum_gs.trained import merge_checkpoint

    model = merge_checkpoint(trainer.state(), trainer.cfg, torch.device("cpu"))
    with torch.no_grad():
        views = [model.render(cam, trainer.cfg.render, cam.uid) for cam in trainer.scene.train]
    return float(torch.cat([v.gaussians.scales.amin(-1) for v in views]).mean())


@pytest.mark.slow
def test_training_with_the_geometry_terms(tiny_config, tmp_path):
    """The terms are logged (the depth-normal one 0 before its start step), the loss stays finite, and
    flattening makes the Gaussians flatter than the same run without it."""
    scene = load_scene(tiny_config.data)
    plain = Trainer(tiny_config, scene, tmp_path / "plain", torch.device("cpu"))
    plain.train()
    tiny_config.geometry.lambda_flatten = 100.0
    tiny_config.geometry.lambda_depth_normal = 0.1
    tiny_config.geometry.depth_normal_from = 12
    tiny_config.geometry.lambda_depth_smooth = 0.5
    shaped = Trainer(tiny_config, scene, tmp_path / "shaped", torch.device("cpu"))
    shaped.train()
    log = [json.loads(line) for line in open(Path(tmp_path / "shaped" / "train.log"))]
    assert all(r["depth_normal"] == 0 for r in log[:12]) and all(r["depth_normal"] > 0 for r in log[12:])
    assert all(r["flatten"] > 0 for r in log) and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert all(r["depth_smooth"] >= 0 for r in log) and any(r["depth_smooth"] > 0 for r in log)
    assert "flatten" not in json.loads(open(tmp_path / "plain" / "train.log").readline())
    assert _mean_smallest_scale(shaped) < 0.8 * _mean_smallest_scale(plain)
