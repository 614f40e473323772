"""Optimizers for the anchor model, their learning-rate schedules, and THE helper for parameter surgery.

Two optimizers, both Adam (eps 1e-15) with one named param group per tensor, each step one fused kernel per
group on the devices that have one (:func:`_adam`):

- ``make_anchor_optimizer(anchors, cfg, extent)``: groups ``offset``, ``feature``, ``scaling`` of one
  block's :class:`~momentum_gs.model.anchors.AnchorSet`. Each block owns one, so blocks can be swapped
  out with their own moments and grown/pruned independently.
- ``make_decoder_optimizer(decoder, appearance, cfg)``: groups ``mlp_opacity``, ``mlp_cov``,
  ``mlp_color`` (and ``appearance``) of the decoder shared by all blocks: one state, identical on every
  process.

Every group carries its own schedule (``lr_init``, ``lr_final``, ``max_steps``), so
``update_learning_rates(optimizer, step)`` needs nothing else and the schedule survives
``optimizer.state_dict()``. Rows of a parameter are removed or added only through :func:`replace_rows`,
which edits the tensor, its gradient and its Adam moments in one place.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from momentum_gs.config import OptimConfig

ADAM_EPS = 1e-15
FUSED_ADAM_DEVICES = ("cpu", "cuda")  # where torch's fused Adam runs (one kernel per param group)


def expon_lr(step: int, init: float, final: float, max_steps: int) -> float:
    """Log-linear decay from ``init`` (step 0) to ``final`` (step ``max_steps`` and after).

    Equal ends (including 0 → 0) give a constant; otherwise both must be positive.
    """
    if init == final:
        return init
    if init <= 0.0 or final <= 0.0:
        raise ValueError(f"log-linear schedule needs positive ends, got {init} -> {final}")
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return math.exp((1.0 - t) * math.log(init) + t * math.log(final))


def decay_steps(cfg: OptimConfig) -> int:
    """Steps over which the scheduled learning rates decay: ``lr_max_steps``, or ``steps`` when it is 0."""
    return cfg.lr_max_steps or cfg.steps


def _group(name: str, params, init: float, final: float, max_steps: int) -> dict:
    """One named param group that carries its own schedule."""
    return {"name": name, "params": list(params), "lr": init, "lr_init": init, "lr_final": final,
            "max_steps": max_steps}


def _adam(groups: list[dict], cfg: OptimConfig) -> torch.optim.Adam:
    """Adam (lr set per group, eps ``ADAM_EPS``, betas ``cfg.adam_beta1``, ``cfg.adam_beta2``) over ``groups``; fused
    where every tensor is on a ``FUSED_ADAM_DEVICES`` device.

    The fused kernel is the same update as the per-tensor loop (same moments, bias corrections and eps, up to
    float rounding: one pass over each tensor instead of about ten element-wise ops).
    """
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = True if devices and devices <= set(FUSED_ADAM_DEVICES) else None
    return torch.optim.Adam(groups, lr=0.0, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=ADAM_EPS, fused=fused)


def make_anchor_optimizer(anchors, cfg: OptimConfig, extent: float) -> torch.optim.Adam:
    """Adam over one block's anchors: groups ``offset`` (lr × ``extent``), ``feature``, ``scaling``.

    Args:
        anchors: an ``AnchorSet`` (its positions are a buffer and never optimized).
        cfg: the learning rates.
        extent: scene extent in world units (1.1 × max camera distance from the mean camera centre);
            offsets are in units of the anchor scale, so their step size scales with the scene.
    """
    groups = [
        _group("offset", [anchors.offsets], cfg.offset_lr * extent, cfg.offset_lr_final * extent, decay_steps(cfg)),
        _group("feature", [anchors.features], cfg.feature_lr, cfg.feature_lr, decay_steps(cfg)),
        _group("scaling", [anchors.scalings], cfg.scaling_lr, cfg.scaling_lr, decay_steps(cfg)),
    ]
    return _adam(groups, cfg)


def make_decoder_optimizer(decoder: nn.Module, appearance: nn.Module | None, cfg: OptimConfig) -> torch.optim.Adam:
    """Adam over the shared decoder: ``mlp_opacity``, ``mlp_cov``, ``mlp_color`` (+ ``appearance``)."""
    groups = [
        _group("mlp_opacity", decoder.mlp_opacity.parameters(), cfg.mlp_opacity_lr, cfg.mlp_opacity_lr_final,
               decay_steps(cfg)),
        _group("mlp_cov", decoder.mlp_cov.parameters(), cfg.mlp_cov_lr, cfg.mlp_cov_lr_final, decay_steps(cfg)),
        _group("mlp_color", decoder.mlp_color.parameters(), cfg.mlp_color_lr, cfg.mlp_color_lr_final, decay_steps(cfg)),
    ]
    if appearance is not None:
        groups.append(_group("appearance", appearance.parameters(), cfg.appearance_lr, cfg.appearance_lr_final,
                             decay_steps(cfg)))
    return _adam(groups, cfg)


def update_learning_rates(optimizer: torch.optim.Optimizer, step: int) -> None:
    """Set every group's lr from the schedule it carries (``lr_init`` → ``lr_final`` over ``max_steps``)."""
    for group in optimizer.param_groups:
        if "lr_init" in group:
            group["lr"] = expon_lr(step, group["lr_init"], group["lr_final"], group["max_steps"])


def retarget_schedules(optimizer: torch.optim.Optimizer, step: int, max_steps: int) -> None:
    """Make every scheduled group of ``optimizer`` end its decay at ``max_steps``, going on from the rate it has at
    ``step``: the rest of the log-linear decay to ``lr_final`` is drawn again over the steps left, its start moved
    so that the rate at ``step`` does not jump. Groups already on ``max_steps`` are left as they are; the new
    schedule is the group's own, so a checkpoint keeps it."""
    for group in optimizer.param_groups:
        if "lr_init" not in group or group["max_steps"] == max_steps:
            continue
        init, final = group["lr_init"], group["lr_final"]
        if init != final and step < max_steps:
            now = expon_lr(step, init, final, group["max_steps"])
            t = step / max(max_steps, 1)
            group["lr_init"] = math.exp((math.log(now) - t * math.log(final)) / (1.0 - t))
        group["max_steps"] = max_steps


def param_group(optimizer: torch.optim.Optimizer, name: str) -> dict:
    """The param group called ``name`` (KeyError if there is none)."""
    for group in optimizer.param_groups:
        if group.get("name") == name:
            return group
    raise KeyError(f"optimizer has no param group '{name}'")


def edit_rows(tensor: torch.Tensor, keep: torch.Tensor | None = None,
              append: torch.Tensor | None = None) -> torch.Tensor:
    """``cat(tensor[keep], append)`` along dim 0; either part may be None (a new tensor is returned).

    Args:
        tensor: [N, ...] rows to edit.
        keep: bool [N] rows to keep, or None for all.
        append: [A, ...] rows to add at the end, or None.
    """
    out = tensor if keep is None else tensor[keep]
    if append is not None:
        out = torch.cat([out, append.to(device=tensor.device, dtype=tensor.dtype)], dim=0)
    return out.clone() if out is tensor else out


def replace_rows(optimizer: torch.optim.Optimizer, name: str, keep: torch.Tensor | None = None,
                 append: torch.Tensor | None = None) -> nn.Parameter:
    """Parameter surgery: replace the single tensor of group ``name`` by ``cat(old[keep], append)``.

    The Adam moments (every state tensor shaped like the parameter) and the gradient, if any, get the same
    row edit; appended rows get zero moments and zero gradient; the step count is kept. The group then
    points at the returned parameter: the caller must store it where the old one lived (see
    ``AnchorSet.edit``).

    Args:
        optimizer: holds a group ``name`` with exactly one parameter [N, ...].
        keep: bool [N] rows to keep, or None for all.
        append: [A, ...] new rows (same trailing shape), or None.
    """
    group = param_group(optimizer, name)
    if len(group["params"]) != 1:
        raise ValueError(f"group '{name}' holds {len(group['params'])} tensors; surgery needs exactly one")
    old = group["params"][0]
    zeros = None if append is None else torch.zeros_like(append, device=old.device, dtype=old.dtype)
    new = nn.Parameter(edit_rows(old.detach(), keep, append), requires_grad=old.requires_grad)
    if old.grad is not None:
        new.grad = edit_rows(old.grad, keep, zeros)
    state = optimizer.state.pop(old, None)
    if state is not None:
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old.shape:
                state[key] = edit_rows(value, keep, zeros)
        optimizer.state[new] = state
    group["params"][0] = new
    return new
