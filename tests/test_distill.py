"""Distillation into a compact standard 3DGS student: its parts (histogram, blending weights, merging, teachers)
and the command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.model import rotmat_to_qvec
from momentum_gs.data.scene import load_scene
from momentum_gs.export.distill import DistillConfig, teacher_renders
from momentum_gs.export.standard_ply import load_standard_ply
from momentum_gs.export.student import Student, VoxelHistogram, blending_weights, merge, structure_loss
from momentum_gs.model.gaussian_scene import rasterize
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.render.projection import quat_to_rotmat
from momentum_gs.trained import load_run
from tests.helpers.tiny_training import train_tiny

RENDER = RenderConfig(background=[0.0, 0.0, 0.0])


def _camera() -> Camera:
    K = torch.tensor([[40.0, 0.0, 24.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])
    world_to_cam = torch.eye(4)
    world_to_cam[2, 3] = 4.0  # centre at (0, 0, -4), looking down +z at the origin
    return Camera("v.png", 48, 32, K, world_to_cam)


def _gaussians(n: int, seed: int = 0, degree: int = 1) -> StandardGaussians:
    g = torch.Generator().manual_seed(seed)
    return StandardGaussians(means=torch.randn(n, 3, generator=g) * 0.6,
                             quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                             scales=torch.rand(n, 3, generator=g) * 0.1 + 0.02,
                             opacities=torch.rand(n, generator=g) * 0.8 + 0.1,
                             sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.3)


def test_the_voxel_histogram_keeps_the_mass_and_has_the_positions_gradient():
    points = torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    hist = VoxelHistogram(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), 8)
    counts = hist(points)
    assert counts.shape == (512,) and torch.isclose(counts.sum(), torch.tensor(200.0, dtype=torch.float64))
    # a point at a voxel's centre lands in that voxel alone
    one = hist(torch.tensor([[2.5 / 8, 5.5 / 8, 0.5 / 8]], dtype=torch.float64))
    assert one[(2 * 8 + 5) * 8 + 0] == 1 and one.sum() == 1
    target = hist(torch.rand(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert torch.autograd.gradcheck(lambda p: structure_loss(hist, target, p), (points[:20].clone().requires_grad_(),))
    assert structure_loss(hist, counts, points).abs() < 1e-12  # identical sets: cosine 1


def test_gradient_steps_on_the_structure_term_move_points_towards_the_teachers():
    gen = torch.Generator().manual_seed(0)
    teacher = torch.rand(500, 3, generator=gen) * 0.3 + 0.6  # a cluster in one corner
    student = (torch.rand(100, 3, generator=gen) * 0.3 + 0.45).requires_grad_()  # overlapping it partly
    hist = VoxelHistogram(torch.zeros(3), torch.ones(3), 16)
    target = hist(teacher)
    before = float(structure_loss(hist, target, student).detach())
    opt = torch.optim.SGD([student], lr=0.02)
    for _ in range(50):
        opt.zero_grad()
        structure_loss(hist, target, student).backward()
        opt.step()
    assert float(structure_loss(hist, target, student).detach()) < before - 0.05


def test_blending_weights_add_up_to_the_rendered_coverage():
    """The image is linear in the colours: Σ over Gaussians of their blending weights = Σ over pixels of α."""
    g, camera = _gaussians(60), _camera()
    weights = blending_weights(g, [camera, camera], RENDER)
    alpha = rasterize([g.means, g.quats, g.scales, g.opacities, torch.ones(60, 3)], camera, RENDER).alpha
    assert weights.shape == (60,) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(), 2 * alpha.sum(), rtol=1e-4, atol=1e-3)
    # a Gaussian behind the camera contributes nothing
    g.means[0] = torch.tensor([0.0, 0.0, -10.0])
    assert blending_weights(g, [camera], RENDER)[0] == 0


def test_rotation_matrices_become_the_same_quaternions():
    q = torch.nn.functional.normalize(torch.randn(1000, 4, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64), dim=-1)
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
    # every branch: rotations by near 180° about x, y and z make x, y or z the largest component
    q = torch.cat([q, torch.tensor([[0.01, 1, 0, 0], [0.01, 0, 1, 0], [0.01, 0, 0, 1.0]], dtype=torch.float64)])
    q = torch.nn.functional.normalize(q, dim=-1)
    # merge() turns its groups' covariance axes into quaternions with COLMAP's conversion, batched
    torch.testing.assert_close(torch.from_numpy(rotmat_to_qvec(quat_to_rotmat(q).numpy())), q, atol=1e-9, rtol=0)


def test_merging_matches_the_moments_of_each_group():
    g = StandardGaussians(means=torch.tensor([[0.0, 0, 0], [0.2, 0, 0], [5.0, 0, 0]]),
                          quats=torch.tensor([[1.0, 0, 0, 0]] * 3), scales=torch.full((3, 3), 0.1),
                          opacities=torch.tensor([0.9, 0.3, 0.5]),
                          sh=torch.tensor([[[1.0, 0, 0]], [[0.0, 1, 0]], [[0.0, 0, 1]]]))
    merged = merge(g, torch.tensor([3.0, 1.0, 2.0]), 2)
    # seeds: Gaussians 0 and 2; Gaussian 1 joins 0 with a quarter of the group's weight
    order = torch.argsort(merged.means[:, 0])
    first = StandardGaussians(*(t[order[0]] for t in (merged.means, merged.quats, merged.scales,
                                                       merged.opacities, merged.sh)))
    torch.testing.assert_close(first.means, torch.tensor([0.05, 0, 0]))
    cov = quat_to_rotmat(first.quats[None])[0] @ torch.diag(first.scales ** 2) @ quat_to_rotmat(first.quats[None])[0].T
    spread = 0.75 * 0.05 ** 2 + 0.25 * 0.15 ** 2
    torch.testing.assert_close(cov, torch.diag(torch.tensor([0.01 + spread, 0.01, 0.01])), atol=1e-6, rtol=0)
    torch.testing.assert_close(first.sh[0], torch.tensor([0.75, 0.25, 0]))
    torch.testing.assert_close(first.opacities, torch.tensor(0.9))  # the seed's, above the mean 0.75
    torch.testing.assert_close(merged.means[order[1]], torch.tensor([5.0, 0, 0]))
    # as many groups as Gaussians: nothing changes
    same = merge(g, torch.tensor([3.0, 1.0, 2.0]), 3)
    order = torch.argsort(same.means[:, 0])
    torch.testing.assert_close(same.scales[order], g.scales, atol=1e-6, rtol=0)
    torch.testing.assert_close(same.opacities[order], g.opacities)


def test_pruning_keeps_the_optimizer_moments_of_the_kept_gaussians():
    student = Student(_gaussians(10))
    opt = torch.optim.Adam([{"params": [getattr(student, n)], "name": n, "lr": 0.01}
                            for n in ("means", "log_scales", "quats", "logits", "sh_dc", "sh_rest")])
    student.render(_camera(), RENDER).sum().backward()
    opt.step()
    before = opt.state[student.means]["exp_avg"].clone()
    keep = torch.arange(10) % 3 != 0
    student.keep(keep, opt)
    assert student.means.shape[0] == 6 and opt.param_groups[0]["params"][0] is student.means
    torch.testing.assert_close(opt.state[student.means]["exp_avg"], before[keep])
    student.render(_camera(), RENDER).sum().backward()
    opt.step()  # the optimizer runs on the pruned tensors


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("distill") / "run", ("optim.steps=60",))


@pytest.mark.slow
def test_the_teachers_are_the_model_a_noisy_copy_and_a_dropout_copy(trained):
    cfg, model, _ = load_run(trained, torch.device("cpu"))
    camera = load_scene(cfg.data).train[0]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = model.render(camera, cfg.render).output.image
    (model_view,) = teacher_renders(model, camera, cfg.render, ("model",), DistillConfig(), gen())
    torch.testing.assert_close(model_view, plain)
    quiet = DistillConfig(noise=0.0, dropout=0.0)
    for kind in ("noise", "dropout"):
        torch.testing.assert_close(teacher_renders(model, camera, cfg.render, (kind,), quiet, gen())[0], plain)
        changed = teacher_renders(model, camera, cfg.render, (kind,), DistillConfig(), gen())[0]
        assert (changed - plain).abs().mean() > 1e-3, kind


def _mgs(*args):
    return subprocess.run([sys.executable, "-m", "momentum_gs.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_distill_writes_a_smaller_standard_ply_that_renders_the_scene(trained, tmp_path):
    out = tmp_path / "student"
    result = _mgs("distill", str(trained), "--out", str(out), "--steps", "30", "--ratio", "0.3", "--sh-degree", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    student = load_standard_ply(out / "point_cloud.ply")
    assert student.sh.shape[1] == 4 and len(student) == summary["gaussians"]["student"]
    assert len(student) <= 0.3 * summary["gaussians"]["baked"] + 1
    assert summary["sizes_mb"]["student_ply"] < 0.35 * summary["sizes_mb"]["baked_ply"]
    assert [p["step"] for p in summary["pruned"]] == [10, 20]
    held = summary["held_out"]
    assert held["student"]["psnr"] > 14 and held["model"]["psnr"] > held["student"]["psnr"] - 5, held
    assert (out / "strip.png").is_file() and "student:" in result.stdout and "held-out PSNR" in result.stdout
    # the same seed gives the same student
    again = _mgs("distill", str(trained), "--out", str(tmp_path / "again"), "--steps", "30", "--ratio", "0.3",
                 "--sh-degree", "1")
    assert again.returncode == 0
    torch.testing.assert_close(load_standard_ply(tmp_path / "again" / "point_cloud.ply").means, student.means)


@pytest.mark.slow
def test_distill_refuses_bad_input_in_one_line(trained, tmp_path):
    for args, message in [((str(tmp_path / "nowhere"),), "not a run folder"),
                          ((str(trained), "--ratio", "0"), "argument --ratio: must be in (0, 1], got '0'"),
                          ((str(trained), "--steps", "0"), "argument --steps: must be in [1, 1000000000], got '0'"),
                          ((str(trained), "--teachers", "model,oracle"), "unknown teacher(s) oracle")]:
        result = _mgs("distill", *args, "--out", str(tmp_path / "d"))
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "d").exists()
