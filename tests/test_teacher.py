"""The momentum teacher: EMA update, frozen twin, schedule, consistency loss."""

from types import SimpleNamespace

import pytest
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.model import AnchorSet, Decoder, generate_gaussians
from momentum_gs.train.teacher import MomentumTeacher, consistency_loss, momentum_schedule


def _decoder(seed=0) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(feat_dim=4, n_offsets=3, hidden_dim=8)


def _view(decoder: Decoder, seed=0):
    """Neural Gaussians of 6 anchors in front of an identity camera, with random features."""
    g = torch.Generator().manual_seed(seed)
    positions = torch.rand(6, 3, generator=g) * torch.tensor([2.0, 2.0, 1.0]) + torch.tensor([-1.0, -1.0, 4.0])
    anchors = AnchorSet(positions, voxel_size=0.1, feat_dim=4, n_offsets=3)
    with torch.no_grad():
        anchors.features.copy_(torch.randn(6, 4, generator=g))
    K = torch.tensor([[40.0, 0.0, 24.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])
    return anchors, generate_gaussians(anchors, decoder, Camera("v.png", 48, 32, K, torch.eye(4)))


def test_update_is_the_ema_formula():
    student, start = _decoder(0), _decoder(1)
    teacher = MomentumTeacher(start)
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = student.state_dict()
    teacher.update(student, 0.9)
    for name, value in teacher.state_dict().items():
        torch.testing.assert_close(value, 0.9 * t0[name] + 0.1 * s[name], rtol=0, atol=1e-6)
    teacher.update(student, 0.9)  # twice: m²·θ_t + (1 − m²)·θ_s
    for name, value in teacher.state_dict().items():
        torch.testing.assert_close(value, 0.81 * t0[name] + 0.19 * s[name], rtol=0, atol=1e-6)
    teacher.update(student, 0.0)
    assert all(torch.equal(v, s[k]) for k, v in teacher.state_dict().items())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.update(_decoder(5), 1.0)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    with pytest.raises(ValueError):
        teacher.update(student, 1.5)


def test_teacher_is_frozen_and_unaffected_by_student_training():
    student = _decoder(0)
    teacher = MomentumTeacher(student)
    assert all(not p.requires_grad for p in teacher.module.parameters()) and not teacher.module.training
    assert teacher.module is not student and teacher.module.mlp_cov[0].weight is not student.mlp_cov[0].weight
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    _, view = _view(student)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    loss = view.colors.sum() + view.scales.sum() + view.neural_opacity.sum()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in teacher.module.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert not torch.equal(student.mlp_color[0].weight, before["mlp_color.0.weight"])
    decoded = teacher.decode(view.inputs)
    assert decoded.opacity.grad_fn is None and decoded.cov.grad_fn is None


def test_state_dict_round_trip():
    teacher = MomentumTeacher(_decoder(0))
    other = MomentumTeacher(_decoder(1))
    other.load_state_dict(teacher.state_dict())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in other.state_dict().items())


def test_momentum_schedule():
    assert momentum_schedule(1, SimpleNamespace(momentum=0.9)) == 0.9
    assert momentum_schedule(10_000, SimpleNamespace(momentum=0.9, momentum_final=0.9, momentum_steps=0)) == 0.9
    ramp = SimpleNamespace(momentum=0.9, momentum_final=0.999, momentum_steps=100)
    assert momentum_schedule(0, ramp) == pytest.approx(0.9)
    assert momentum_schedule(50, ramp) == pytest.approx((0.9 + 0.999) / 2)
    assert momentum_schedule(100, ramp) == pytest.approx(0.999)
    assert momentum_schedule(500, ramp) == pytest.approx(0.999)
    values = [momentum_schedule(s, ramp) for s in range(0, 101, 10)]
    assert values == sorted(values)


def test_consistency_loss_zero_for_identical_twins_and_positive_otherwise():
    student = _decoder(0)
    teacher = MomentumTeacher(student)
    anchors, view = _view(student)
    assert view.num > 0 and view.selection.sum() < view.selection.numel()  # some children are dropped
    loss, parts = consistency_loss(view, teacher.decode(view.inputs))
    assert float(loss.detach()) == 0.0 and set(parts) == {"opacity", "color", "scale", "rotation"}

    teacher.update(_decoder(1), 0.5)
    loss, parts = consistency_loss(view, teacher.decode(view.inputs))
    assert all(float(v) > 0 for v in parts.values())
    torch.testing.assert_close(loss.detach(), sum(parts.values()))
    loss.backward()
    assert all(p.grad is None for p in teacher.module.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert anchors.features.grad.abs().sum() > 0  # through the student decoder


def test_consistency_loss_terms_by_hand():
    student = _decoder(0)
    teacher = MomentumTeacher(_decoder(1))
    _, view = _view(student)
    target = teacher.decode(view.inputs)
    _, parts = consistency_loss(view, target)
    keep = view.selection
    torch.testing.assert_close(parts["opacity"], ((view.neural_opacity - target.opacity) ** 2).mean())
    color = view.decoded.color.reshape(-1, 3)[keep] - target.color.reshape(-1, 3)[keep]
    torch.testing.assert_close(parts["color"], (color**2).mean().detach())
    scale_s = torch.exp(view.anchor_scalings[:, None, 3:]) * torch.sigmoid(view.decoded.cov[..., :3])
    scale_t = torch.exp(view.anchor_scalings[:, None, 3:]) * torch.sigmoid(target.cov[..., :3])
    diff = (scale_s - scale_t).reshape(-1, 3)[keep]
    torch.testing.assert_close(parts["scale"], (diff**2).mean().detach())
    q_s = torch.nn.functional.normalize(view.decoded.cov[..., 3:], dim=-1).reshape(-1, 4)[keep]
    q_t = torch.nn.functional.normalize(target.cov[..., 3:], dim=-1).reshape(-1, 4)[keep]
    torch.testing.assert_close(parts["rotation"], ((q_s - q_t) ** 2).mean().detach())
