"""Several processes on one block, each on its own view of every step (``distributed.view_processes``).

A scene of one block cannot spread blocks over processes. Instead, V processes hold the same block; at every
step each renders a different training view (:meth:`~momentum_gs.train.scheduler.BlockScheduler.view_plan`'s
``views``), the block's and the decoder's gradients are averaged over the V views with one all-reduce
(:func:`average_gradients`), the growth statistics are summed over them before each growth
(:func:`sum_growth_statistics`), and every process takes the same optimizer step: the copies stay identical
without ever being sent. Each process keeps its own PyTorch ops, image loading and tile lists on its own core,
where threads in one process split only the kernels (docs/benchmarks/training.md, "Where a one-block step goes").

V views a step are a batch, so the run is planned per view seen (:func:`per_view_rule`), once, when it starts:

- the steps, every schedule point and every interval ÷ V, growth's interval too: the run sees as many views as
  with one view a step, and grows after as many views;
- learning rates × √V and Adam's decays β → β^V: the square-root rule for batched 3DGS of Zhao et al., "On
  Scaling Up 3D Gaussian Splatting Training" (Grendel-GS, ICLR 2025), which makes a step of V independent views'
  gradients move as V steps of one would; for Adam in general, Malladi et al., "On the SDEs and Scaling Rules for
  Adaptive Gradient Algorithms" (NeurIPS 2022);
- the teacher's momentum m → m^V: its average spans as many views as before.

The resolved V is written into the run's config, which a resumed run reads as it is.
"""

from __future__ import annotations

import math

import torch

from momentum_gs.config import Config
from momentum_gs.config.load import scale_schedules
from momentum_gs.train import distributed as D

LEARNING_RATES = ("offset_lr", "offset_lr_final", "feature_lr", "scaling_lr", "mlp_opacity_lr", "mlp_opacity_lr_final",
                  "mlp_cov_lr", "mlp_cov_lr_final", "mlp_color_lr", "mlp_color_lr_final", "appearance_lr",
                  "appearance_lr_final")


def per_view_rule(cfg: Config, views: int) -> None:
    """Plan ``cfg`` (in place) for ``views`` views a step (module notes); 1 changes nothing."""
    if views <= 1:
        return
    optim = cfg.optim
    steps = max(1, math.ceil(optim.steps / views))
    scale_schedules(cfg, 1.0 / views)  # lr_max_steps among them (0 is `steps`, which follows by itself)
    optim.steps = steps
    cfg.strategy.update_interval = max(1, round(cfg.strategy.update_interval / views))
    root = math.sqrt(views)
    for key in LEARNING_RATES:
        setattr(optim, key, getattr(optim, key) * root)
    optim.adam_beta1, optim.adam_beta2 = optim.adam_beta1 ** views, optim.adam_beta2 ** views
    cfg.teacher.momentum = cfg.teacher.momentum ** views
    cfg.distributed.view_processes = views


def average_gradients(params: list[torch.Tensor], world: D.World) -> int:
    """Each of ``params``' gradients averaged over the processes (in place; a gradient no process has stays None);
    returns the bytes all-reduced."""
    reducer = D.StepReducer(params, world)
    reducer.reduce(world.size, [])
    return reducer.bytes_per_step


def sum_growth_statistics(strategy, world: D.World) -> None:
    """The growth statistics of ``strategy`` (:class:`~momentum_gs.model.strategy.AnchorStrategy`) summed over
    the processes, so that each grows and prunes from every view's."""
    stats = [strategy.opacity_accum, strategy.anchor_visits, strategy.offset_grad_accum, strategy.offset_visits]
    flat = D.all_reduce_sum(torch.cat([s.reshape(-1) for s in stats]), world)
    for s, part in zip(stats, flat.split([s.numel() for s in stats])):
        s.copy_(part.view_as(s))
