"""The momentum teacher: EMA update, frozen twin, schedule, consistency loss."""

import math

import pytest
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.model import AnchorSet, Decoder, generate_gaussians
from momentum_gs.train.teacher import MomentumTeacher, consistency_loss


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


def test_consistency_loss_zero_for_identical_twins_and_positive_otherwise():
    student = _decoder(0)
    teacher = MomentumTeacher(student)
    anchors, view = _view(student)
    assert view.num > 0 and view.selection.sum() < view.selection.numel()  # some children are dropped
    loss, parts = consistency_loss(view, teacher.decode(view.inputs))
    # 0 up to rounding: the student's scales and rotations may come from the C++ kernel (csrc/children.cpp),
    # the teacher's from PyTorch
    assert float(loss.detach()) < 1e-12 and set(parts) == {"opacity", "color", "scale", "rotation"}

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


def _gap_teacher(student: Decoder, sigma: float, seed: int = 7) -> MomentumTeacher:
    """The student's twin with N(0, σ²) added to every weight: the gap an EMA leaves behind the student."""
    teacher = MomentumTeacher(student)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in teacher.module.parameters():
            p.add_(sigma * torch.randn(p.shape, generator=g))
    return teacher


def _anchor_grads(form: str, sigma: float = 0.05):
    """(feature grad, scaling grad, decoder grads) of λ·L_cons alone, in the given gradient form."""
    student = _decoder(0)
    teacher = _gap_teacher(student, sigma)
    anchors, view = _view(student)
    with torch.no_grad():
        anchors.scalings.add_(0.3 * torch.randn(anchors.scalings.shape, generator=torch.Generator().manual_seed(3)))
    view = generate_gaussians(anchors, student, Camera("v.png", 48, 32, view_camera_K(), torch.eye(4)))
    target = teacher.decode(view.inputs, differentiable=form == "reference")
    loss, _ = consistency_loss(view, target, form, student)
    (50.0 * loss).backward()
    return anchors, view, student, teacher, loss


def view_camera_K() -> torch.Tensor:
    return torch.tensor([[40.0, 0.0, 24.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])


def _reference_form_by_hand(anchors, visible, student: Decoder, teacher: Decoder, centre: torch.Tensor):
    """The paper's consistency term written out from its description: both decoders read the same
    (differentiable) anchor features and view directions; the teacher's child scales use the same anchor
    log-scales; opacity over all children, the rest over the children the student keeps."""
    feats = anchors.features.detach().clone().requires_grad_(True)
    scalings = anchors.scalings.detach().clone().requires_grad_(True)
    idx = visible.nonzero()[:, 0]
    rel = anchors.positions.detach()[idx] - centre
    x = torch.cat([feats[idx], rel / rel.norm(dim=-1, keepdim=True)], dim=-1)
    k = student.n_offsets
    out = {}
    for name, net in (("s", student), ("t", teacher)):
        cov = net.mlp_cov(x).view(-1, 7)
        base = torch.exp(scalings[idx][:, 3:6]).repeat_interleave(k, dim=0)
        out[name] = (net.mlp_opacity(x).view(-1), net.mlp_color(x).view(-1, 3), base * torch.sigmoid(cov[:, :3]),
                     cov[:, 3:] / cov[:, 3:].norm(dim=-1, keepdim=True))
    mask = out["s"][0] > 0
    mse = torch.nn.functional.mse_loss
    loss = (mse(out["s"][0], out["t"][0]) + mse(out["s"][1][mask], out["t"][1][mask])
            + mse(out["s"][2][mask], out["t"][2][mask]) + mse(out["s"][3][mask], out["t"][3][mask]))
    (50.0 * loss).backward()
    return loss, feats.grad, scalings.grad


def test_reference_gradient_matches_the_papers_form_written_out():
    anchors, view, student, teacher, loss = _anchor_grads("reference")
    assert view.num > 0 and view.selection.sum() < view.selection.numel()
    ours_feat, ours_scal = anchors.features.grad.clone(), anchors.scalings.grad.clone()
    by_hand, feat, scal = _reference_form_by_hand(anchors, view.visible, _decoder(0), teacher.module,
                                                  torch.zeros(3))
    torch.testing.assert_close(loss.detach(), by_hand.detach(), rtol=0, atol=1e-6)
    assert feat.abs().max() > 1e-5 and scal.abs().max() > 1e-6  # the comparison is not of zeros
    torch.testing.assert_close(ours_feat, feat, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_scal, scal, rtol=0, atol=1e-6)


def test_gradient_forms_differ_only_on_the_anchors():
    grads = {}
    for form in ("reference", "student", "decoder_only"):
        anchors, view, student, teacher, loss = _anchor_grads(form, sigma=0.01)
        assert all(p.grad is None for p in teacher.module.parameters())
        grads[form] = (float(loss.detach()), anchors.features.grad, anchors.scalings.grad,
                       [p.grad.clone() for p in student.parameters()])
    values = {form: g[0] for form, g in grads.items()}
    # the same loss value (to rounding: decoder_only decodes its student side again in PyTorch, the other two
    # compare the rendered values, which the C++ kernel may have made)
    assert values["reference"] == values["student"]
    assert math.isclose(values["decoder_only"], values["student"], rel_tol=1e-6)
    # the decoder gets the same gradient in every form, to rounding: the gradient scales with the 1 % gap
    # between student and teacher, so float32 rounding of either side's values is ~1e-5 of it
    for form in ("reference", "decoder_only"):
        for a, b in zip(grads[form][3], grads["student"][3]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert grads["decoder_only"][1] is None or grads["decoder_only"][1].abs().max() == 0
    assert grads["decoder_only"][2] is None or grads["decoder_only"][2].abs().max() == 0
    # at a small teacher gap the reference form's anchor pull is far weaker than the constant-target form's
    assert grads["reference"][1].norm() < 0.3 * grads["student"][1].norm()
    assert grads["reference"][2].norm() < 0.3 * grads["student"][2].norm()


def test_unknown_gradient_form_and_missing_decoder_are_errors():
    student = _decoder(0)
    _, view = _view(student)
    target = MomentumTeacher(student).decode(view.inputs)
    with pytest.raises(ValueError, match="unknown consistency gradient"):
        consistency_loss(view, target, "both")
    with pytest.raises(ValueError, match="student decoder"):
        consistency_loss(view, target, "decoder_only")
