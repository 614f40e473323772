"""A run's model baked into standard Gaussians for an export or a map: the Gaussians no photo saw dropped, then
refined (:mod:`momentum_gs.export.refine`), and their colours cut to a format's SH degree."""

from __future__ import annotations

from momentum_gs.data.images import ImageLoader
from momentum_gs.export.floaters import capped, drop_floaters, dropped_line
from momentum_gs.export.refine import default_budget, refine
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.standard import StandardGaussians, bake


def baked_for_export(model: GaussianScene, cameras, render_cfg, degree: int, refine_steps: int,
                     refine_budget: float | None, box=None) -> tuple[StandardGaussians, str, str]:
    """The model baked from the training views, without the Gaussians no view of ``box`` saw (None: all kept;
    :mod:`momentum_gs.export.floaters`), and refined; how, in words; the line saying what was dropped ("": none)."""
    gaussians = bake(model, cameras, render_cfg, degree=degree)
    baked = len(gaussians)
    gaussians, dropped = drop_floaters(gaussians, box)
    how = "baked from the training views"
    if refine_steps:
        budget = refine_budget if refine_budget is not None else default_budget(model.device)
        gaussians, steps = refine(model, gaussians, cameras, ImageLoader(cameras), render_cfg, refine_steps,
                                  budget_s=budget or None)
        gaussians = capped(gaussians, box)  # the refinement may have grown them again
        how += f", refined {steps} steps" + (f" (of {refine_steps}, in {budget:.0f} s)" if steps < refine_steps else "")
    return gaussians, how, dropped_line(dropped, baked)


def with_degree(gaussians: StandardGaussians, degree: int) -> StandardGaussians:
    """``gaussians`` with their colours cut to SH degree ``degree`` (the same Gaussians otherwise)."""
    if degree >= gaussians.degree:
        return gaussians
    return StandardGaussians(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities,
                             gaussians.sh[:, : (degree + 1) ** 2].contiguous())
