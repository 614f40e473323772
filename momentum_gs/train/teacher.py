"""The momentum teacher: a frozen EMA twin of the shared decoder, and the consistency loss against it.

SPEC §3.3. The online decoder is identical on every process (same initial weights, averaged gradients,
identical Adam states), so every process updates its own teacher locally and nothing is broadcast.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from momentum_gs.config import CONSISTENCY_GRADIENTS
from momentum_gs.model.decoder import DecodedAnchors, DecoderInputs
from momentum_gs.model.neural import NeuralGaussians, child_rotations, child_scales


def _state_tensors(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(floating-point parameters and buffers, other buffers), in registration order."""
    tensors = [*module.parameters(), *module.buffers()]
    return [t for t in tensors if t.is_floating_point()], [t for t in tensors if not t.is_floating_point()]


class MomentumTeacher:
    """A frozen copy of the decoder (no gradients, always in eval mode) updated as an EMA of the student.

    Not an ``nn.Module`` on purpose: it is never part of the student's parameters, optimizers or
    ``.train()`` calls. The reference never saves its teacher; we do (``state_dict``) so a resumed run
    continues exactly.

    Args:
        decoder: the online (student) decoder; copied, with its current weights, on its device.
    """

    def __init__(self, decoder: nn.Module):
        self.module = copy.deepcopy(decoder)
        for p in self.module.parameters():
            p.requires_grad_(False)
            p.grad = None  # deepcopy copies gradients too
        self.module.eval()

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """θ_t ← m·θ_t + (1 − m)·θ_s for every parameter and floating buffer, in one fused call.

        Integer buffers (none in the decoder) are copied. ``student`` must have the teacher's structure.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"teacher momentum must be in [0, 1], got {momentum}")
        t_float, t_other = _state_tensors(self.module)
        s_float, s_other = _state_tensors(student)
        if len(t_float) != len(s_float) or len(t_other) != len(s_other):
            raise ValueError("student and teacher decoders have different structures")
        # lerp_(t, s, 1 − m) = t + (1 − m)(s − t) = m·t + (1 − m)·s
        torch._foreach_lerp_(t_float, [s.detach() for s in s_float], 1.0 - momentum)
        for t, s in zip(t_other, s_other):
            t.copy_(s)

    def decode(self, inputs: DecoderInputs, differentiable: bool = False) -> DecodedAnchors:
        """The teacher's outputs for the student's decoder inputs.

        ``differentiable``: keep the graph through the (frozen) teacher back to the inputs, as the paper's
        code does (``teacher.gradient=reference``); otherwise the outputs are a constant target.
        """
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            return self.module.decode(inputs)

    def consistency(self, student: NeuralGaussians, gradient: str = "reference",
                    decoder: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:func:`consistency_loss` of ``student`` against this teacher's decoding of the same inputs,
        differentiable through the teacher for the ``"reference"`` form; ``decoder`` is the student decoder."""
        target = self.decode(student.inputs, differentiable=gradient == "reference")
        return consistency_loss(student, target, gradient, decoder)

    def state_dict(self) -> dict:
        """The teacher decoder's state dict."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state)

    def to(self, device: torch.device | str) -> "MomentumTeacher":
        """Move the teacher to ``device``; returns self."""
        self.module.to(device)
        return self


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error; 0 (still differentiable) when there is nothing to compare."""
    if a.numel() == 0:
        return a.sum()
    return F.mse_loss(a, b)


GRADIENTS = CONSISTENCY_GRADIENTS


def consistency_loss(student: NeuralGaussians, teacher: DecodedAnchors, gradient: str = "reference",
                     decoder: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_cons = MSE_opacity + MSE_color + MSE_scale + MSE_rotation between the student and its teacher.

    Opacity compares the raw tanh outputs of all k children of the V visible anchors; colour, scale
    (``child_scales`` with the anchors' log-scales) and rotation (unit quaternions) compare only the M
    children kept by the student (``student.kept``). The value is the same for every ``gradient``; what
    differs is where its gradient goes (docs/decisions/0003):

    - ``"reference"`` (the paper's code): the teacher is a frozen function of the same anchor inputs, so
      the term also back-propagates through the teacher into the anchor features and scales. That path
      nearly cancels the student's pull on the anchors (the anchor gradient is second order in the
      teacher–student gap); the term mostly moves the student decoder. ``teacher`` must come from
      ``MomentumTeacher.decode(..., differentiable=True)``.
    - ``"student"``: the teacher's outputs are a constant target; the student decoder and, through it,
      the anchor features and scales get a first-order pull towards the teacher.
    - ``"decoder_only"``: a constant target and the student side decoded again from detached inputs
      (``decoder`` is the student decoder): only the decoder gets a gradient.

    The decoder's gradient is the same in all three.

    Args:
        student: the view's neural Gaussians from the online decoder.
        teacher: the teacher's decoding of ``student.inputs``, [V, k] etc.
        gradient: one of ``GRADIENTS``.
        decoder: the student decoder (only for ``"decoder_only"``).

    Returns:
        the total (scalar, differentiable) and its detached terms ``opacity``, ``color``, ``scale``,
        ``rotation``.
    """
    if teacher.opacity.shape != student.neural_opacity.shape:
        raise ValueError(f"teacher decoded {tuple(teacher.opacity.shape)} children, the student "
                         f"{tuple(student.neural_opacity.shape)}: decode the student's inputs")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown consistency gradient {gradient!r}; choose one of {', '.join(GRADIENTS)}")
    teacher, t_scalings = _teacher_side(student, teacher, gradient)
    s_opacity, s_colors, s_scales, s_quats = _student_side(student, gradient, decoder, t_scalings)
    parts = {
        "opacity": _mse(s_opacity, teacher.opacity),
        "color": _mse(s_colors, _kept(teacher.color, 3, student.kept)),
        "scale": _mse(s_scales, _kept(child_scales(teacher.cov, t_scalings), 3, student.kept)),
        "rotation": _mse(s_quats, _kept(child_rotations(teacher.cov), 4, student.kept)),
    }
    total = parts["opacity"] + parts["color"] + parts["scale"] + parts["rotation"]
    return total, {name: value.detach() for name, value in parts.items()}


def _kept(values: torch.Tensor, width: int, kept: torch.Tensor) -> torch.Tensor:
    """The ``kept`` children's rows of per-child ``values`` viewed as [-1, width]."""
    return values.reshape(-1, width).index_select(0, kept)


def _teacher_side(student: NeuralGaussians, teacher: DecodedAnchors, gradient: str
                  ) -> tuple[DecodedAnchors, torch.Tensor]:
    """(the teacher's outputs, the anchor log-scales its child scales use): as given for ``"reference"``, else
    detached into a constant target."""
    scalings = student.anchor_scalings
    if gradient == "reference":
        return teacher, scalings  # the teacher's child scales share the anchors' (differentiable) log-scales
    teacher = DecodedAnchors(teacher.opacity.detach(), teacher.cov.detach(), teacher.color.detach())
    return teacher, scalings.detach()


def _student_side(student: NeuralGaussians, gradient: str, decoder: nn.Module | None, t_scalings: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's (opacity, kept colours, kept scales, kept quaternions): the rendered values themselves, or
    for ``"decoder_only"`` the student decoder's outputs for detached inputs."""
    if gradient != "decoder_only":
        return student.neural_opacity, student.colors, student.scales, student.quats
    if decoder is None:
        raise ValueError("teacher.gradient=decoder_only needs the student decoder")
    inputs = student.inputs
    fixed = DecoderInputs(inputs.features.detach(), inputs.view_dirs.detach(), inputs.dists.detach(),
                          None if inputs.appearance is None else inputs.appearance.detach())
    again = decoder.decode(fixed)
    s_colors = _kept(again.color, 3, student.kept)
    s_scales = _kept(child_scales(again.cov, t_scalings), 3, student.kept)
    return again.opacity, s_colors, s_scales, _kept(child_rotations(again.cov), 4, student.kept)
