"""The sparse-depth term (geometry.lambda_sparse_depth): the SfM points each photo saw as depths in it, their
weights, the loss, and a training that pulls the rendered depth towards them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.scene import load_scene
from momentum_gs.data.sparse_depth import ERROR_PX, TRACK_FULL, held_out, scene_depths, sparse_depths
from momentum_gs.errors import UserError
from momentum_gs.losses import sparse_depth_loss
from momentum_gs.train.trainer import Trainer


def camera(name: str = "a.png") -> Camera:
    """A 40 x 30 camera at the origin looking along +z, focal 20 px."""
    K = torch.tensor([[20.0, 0, 20], [0, 20.0, 15], [0, 0, 1]])
    return Camera(name, 40, 30, K, torch.eye(4))


def test_each_photo_gets_the_points_it_saw_projected_and_weighed():
    points = np.array([[0.0, 0.0, 4.0], [1.0, 0.5, 2.0], [0.0, 0.0, -3.0], [50.0, 0.0, 2.0], [0.2, 0.2, 5.0]])
    errors = np.array([0.0, ERROR_PX, 0.0, 0.0, 0.0])
    observed = {"a.png": np.array([0, 1, 2, 3]), "b.png": np.array([0, 0, 1, 4]), "c.png": np.array([0, 1])}
    a, b = sparse_depths([camera("a.png"), camera("b.png")], points, errors, observed, near=0.2)
    assert a.pixels.tolist() == [[20, 15], [30, 20]]  # behind the camera and outside the image: left out
    assert a.depths.tolist() == [4.0, 2.0] and b.pixels.shape == (3, 2)  # point 4 only in b, seen once there
    full = min(3, TRACK_FULL) / TRACK_FULL
    torch.testing.assert_close(a.weights, torch.tensor([full, full / 2]))  # 3 photos saw both; 1 px halves
    assert b.weights[-1] == pytest.approx(1 / TRACK_FULL)
    assert len(sparse_depths([camera("d.png")], points, errors, observed, 0.2)[0].depths) == 0
    # every 2nd point (rows 0, 2, 4) held out to check against: a keeps point 1, b points 1 and 3... of those it saw
    a, b = sparse_depths([camera("a.png"), camera("b.png")], points, errors, observed, near=0.2, holdout=2)
    assert a.depths.tolist() == [2.0] and b.depths.tolist() == [2.0]
    assert held_out(5, 2).tolist() == [True, False, True, False, True] and not held_out(5, 0).any()


def test_the_loss_pulls_the_rendered_depth_to_the_points_and_skips_empty_pixels():
    depth = torch.full((30, 40, 1), 4.4, requires_grad=True)
    alpha = torch.ones(30, 40, 1)
    alpha[0, 0] = 0.2
    pixels, targets = torch.tensor([[20, 15], [0, 0]]), torch.tensor([4.0, 1.0])
    loss = sparse_depth_loss(depth, alpha, pixels, targets, torch.ones(2))
    loss.backward()
    assert loss.item() == pytest.approx(0.1 - 0.05 / 2)  # smooth L1 of a 10 % error; the empty pixel left out
    assert depth.grad[15, 20, 0] > 0 and depth.grad[0, 0, 0] == 0
    flat = sparse_depth_loss(torch.full((30, 40, 1), 4.0), alpha, pixels[:1], targets[:1], torch.ones(1))
    assert flat.item() == 0.0
    assert sparse_depth_loss(depth, alpha * 0, pixels, targets, torch.ones(2)).item() == 0.0


def test_the_scene_says_which_points_each_training_photo_saw(tiny_config):
    plain = load_scene(tiny_config.data)
    scene = load_scene(tiny_config.data, observations=True)
    assert plain.observed == {} and set(scene.observed) == {cam.name for cam in scene.train}
    assert all(len(rows) and rows.max() < len(scene.points) for rows in scene.observed.values())
    assert scene.errors.shape == (len(scene.points),)
    with pytest.raises(UserError, match="lists none for its training photos"):
        scene_depths(plain, tiny_config, torch.device("cpu"))


def depth_error(trainer: Trainer) -> float:
    """The rendered depth's mean relative error at the SfM points of every training view."""
    from momentum_gs.trained import merge_checkpoint

    model = merge_checkpoint(trainer.state(), trainer.cfg, torch.device("cpu"))
    scene = trainer.scene
    known = sparse_depths(scene.train, scene.points, scene.errors, scene.observed, trainer.cfg.render.near)
    errors = []
    with torch.no_grad():
        for cam, k in zip(scene.train, known):
            out = model.render(cam, trainer.cfg.render, cam.uid, extras=("depth",)).output
            d = out.depth[k.pixels[:, 1], k.pixels[:, 0], 0] / out.alpha[k.pixels[:, 1], k.pixels[:, 0], 0]
            errors.append(((d - k.depths).abs() / k.depths)[torch.isfinite(d)])
    return float(torch.cat(errors).mean())


@pytest.mark.slow
def test_training_with_sparse_depths_pulls_the_depth_to_them(tiny_config, tmp_path):
    tiny_config.optim.steps = 60
    scene = load_scene(tiny_config.data, observations=True)
    plain = Trainer(tiny_config, scene, tmp_path / "plain", torch.device("cpu"))
    plain.train()
    tiny_config.geometry.lambda_sparse_depth = 1.0
    anchored = Trainer(tiny_config, scene, tmp_path / "anchored", torch.device("cpu"))
    anchored.train()
    log = [json.loads(line) for line in open(tmp_path / "anchored" / "train.log")]
    assert all(r["sparse_depth"] >= 0 and np.isfinite(r["loss"]) for r in log)
    assert depth_error(anchored) < 0.8 * depth_error(plain)
