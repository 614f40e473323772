"""The multi-view term (geometry.lambda_multiview): a photo's pixels carried by the rendered depth into a neighbouring
photo, compared there; the neighbours chosen; hidden and textureless pixels left out; a training with it on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.scene import load_scene
from momentum_gs.data.synthetic import make_synthetic_scene
from momentum_gs.train.block_step import in_turn
from momentum_gs.train.multiview import ViewDepths, multiview_loss, neighbour_views
from momentum_gs.train.trainer import Trainer
from tests.helpers.host_reads import plain_step_syncs

W, H, F = 96, 72, 80.0
GROUND = 5.0  # the cameras' height above the textured ground


def camera(x: float, tilt_deg: float = 0.0) -> Camera:
    """A camera looking straight down from GROUND above (x, 0, 0), turned ``tilt_deg`` about the world's y axis."""
    t = np.radians(tilt_deg)
    turn = torch.tensor([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]], dtype=torch.float32)
    R = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]]) @ turn.T
    centre = torch.tensor([x, 0.0, GROUND])
    M = torch.eye(4)
    M[:3, :3], M[:3, 3] = R, -R @ centre
    return Camera("c.png", W, H, torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]]), M)


def photo(c: Camera, textured: bool = True) -> torch.Tensor:
    """[H, W, 3] what a straight-down camera ``c`` sees of the ground."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    x = c.center[0] + (u - W / 2) / F * GROUND
    y = c.center[1] - (v - H / 2) / F * GROUND
    grey = 0.5 + 0.25 * torch.sin(7 * x) * torch.cos(5 * y) + 0.15 * torch.sin(13 * x + 3 * y)
    grey = grey if textured else torch.full_like(grey, 0.4)
    return grey[..., None].expand(H, W, 3).contiguous()


def loss_and_slope(depth: float, neighbour_surface: float = GROUND, textured: bool = True,
                   device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    a, b = camera(0.0), camera(1.0)
    alpha = torch.ones(H, W, 1, device=device)
    kept = ViewDepths()
    kept.keep(0, 1, torch.full((H, W, 1), neighbour_surface, device=device), alpha)
    grey, other_grey = kept.grey(0, photo(a, textured).to(device)), kept.grey(1, photo(b, textured).to(device))
    d = torch.full((H, W, 1), depth, requires_grad=True, device=device)
    loss = multiview_loss(d * alpha, alpha, grey, a, other_grey, kept.get(0, 1), b)
    loss.backward()
    return float(loss.detach()), float(d.grad.sum())


def test_the_true_depth_agrees_and_a_wrong_one_is_pulled_back():
    at_truth, slope = loss_and_slope(GROUND)
    assert at_truth < 1e-4 and abs(slope) < 1e-3
    for wrong in (4.7, 4.85, 4.95):  # in front of the surface: pushed back, the farther off the worse
        loss, slope = loss_and_slope(wrong)
        assert loss > 20 * max(at_truth, 1e-5) and slope < 0
    assert loss_and_slope(4.7)[0] > loss_and_slope(4.85)[0] > loss_and_slope(4.95)[0]
    loss, slope = loss_and_slope(5.05)  # just behind it, still seen by the neighbour: pulled forward
    assert loss > 1e-3 and slope > 0


def test_pixels_the_neighbour_cannot_see_and_windows_without_texture_are_left_out():
    # the neighbour's own surface at 2: everything at 4.7 lies behind it, hidden from the neighbour
    loss, slope = loss_and_slope(4.7, neighbour_surface=2.0)
    assert loss == 0.0 and slope == 0.0
    loss, slope = loss_and_slope(4.7, textured=False)  # a flat grey ground places no depth
    assert loss == 0.0 and slope == 0.0


def test_the_neighbours_are_the_nearest_photos_looking_the_same_way():
    cameras = [camera(0.0), camera(1.0), camera(3.0), camera(-1.5), camera(0.5, tilt_deg=45.0)]
    near = neighbour_views(cameras, count=2, max_angle_deg=30.0)
    assert near[0] == [1, 3]  # camera 4 is nearer than 3 but turned 45 degrees away
    assert near[2] == [1, 0] and all(i not in row for i, row in enumerate(near))
    assert neighbour_views(cameras, count=2, max_angle_deg=50.0)[0] == [4, 1]


def nadir_config(config, folder: Path):
    """``config`` on a small mapping flight (photos nearly straight down, neighbours looking the same way), 40 steps,
    the term from step 12."""
    config.data.path = str(make_synthetic_scene(folder, "tiny", seed=0, width=96, height=72, pitch_deg=(75.0, 89.0),
                                                n_train=12))
    config.optim.steps = 40
    config.geometry.lambda_multiview = 0.2
    config.geometry.multiview_from = 12
    return config


@pytest.mark.slow
def test_a_training_with_the_multiview_term(tiny_config, tmp_path):
    nadir_config(tiny_config, tmp_path / "nadir")
    scene = load_scene(tiny_config.data)
    trainer = Trainer(tiny_config, scene, tmp_path / "run", torch.device("cpu"))
    trainer.train()
    log = [json.loads(line) for line in open(tmp_path / "run" / "train.log")]
    assert all(np.isfinite(r["loss"]) and r["multiview"] >= 0 for r in log)
    assert all(r["multiview"] == 0 for r in log if r["step"] <= 12)
    assert any(r["multiview"] > 0 for r in log if r["step"] > 12)
    assert len(trainer.view_depths.depths) == len(scene.train)


@pytest.mark.slow
def test_the_term_only_on_its_steps_and_until_its_last(tiny_config, tmp_path):
    nadir_config(tiny_config, tmp_path / "nadir")
    tiny_config.geometry.multiview_every, tiny_config.geometry.multiview_until = 3, 30
    tiny_config.log.progress_every = 1
    trainer = Trainer(tiny_config, load_scene(tiny_config.data), tmp_path / "run", torch.device("cpu"))
    trainer.train()
    log = {r["step"]: r["multiview"] for r in map(json.loads, open(tmp_path / "run" / "train.log"))}
    assert sorted(log) == list(range(1, 41))
    on = {step for step, term in log.items() if term > 0}
    assert on and on <= {step for step in range(13, 31) if step % 3 == 0}
    assert len(on) >= 4  # most of its steps find a neighbour trained already
    assert len(trainer.view_depths.depths) == len(trainer.scene.train)  # every view's surface kept all the same


@pytest.mark.parametrize("every", [1, 2, 3, 4])
def test_the_neighbours_are_taken_in_turn_over_the_terms_steps(every):
    """n steps of the term in a row use each of n neighbours once (taken by the step itself, every 2nd step would
    use half of 4)."""
    for count in (1, 2, 3, 4, 5):
        steps = range(every, every * (count + 1), every)
        assert sorted(in_turn(list(range(count)), step, every) for step in steps) == list(range(count))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("depth", [4.85, 5.05])
def test_on_a_gpu_the_term_is_the_cpus(depth):
    cpu = loss_and_slope(depth)
    assert loss_and_slope(depth, device=torch.device("cuda")) == pytest.approx(cpu, rel=1e-4, abs=1e-7)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("gsplat") is None, reason="gsplat not installed (pip install .[cuda])")
def test_on_a_gpu_the_term_makes_a_step_wait_for_nothing_more(tiny_config, tmp_path):
    """With gsplat on a GPU, a plain step with the term on waits only where a step without it does: the two sizes
    of ``generate_gaussians`` (tests/test_host_reads.py); the neighbour's photo is already on the GPU."""
    nadir_config(tiny_config, tmp_path / "nadir")
    plain = plain_step_syncs(tiny_config, after=13)
    log = [json.loads(line) for line in open(Path(tiny_config.out) / "train.log")]
    assert any(r["multiview"] > 0 for r in log if r["step"] > 12)
    assert len(plain) >= 10
    for sites in plain:
        assert sorted(site for site in sites if site != "gsplat") == ["neural.py:generate_gaussians"] * 2, sites
