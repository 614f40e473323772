"""The export's refinement: the baked Gaussians trained further against the photos (``mgs export --refine``)."""

from __future__ import annotations

import torch

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.export.distill import DistillConfig, distill
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.standard import StandardGaussians

# On a CPU the refinement stops at the steps that fit in this many seconds (the steps it takes there are
# measured in docs/benchmarks); on a GPU it runs all of them.
REFINE_BUDGET_CPU = 180.0


def default_budget(device: torch.device) -> float:
    """The refinement's time budget in seconds when none is given (0: no limit)."""
    return REFINE_BUDGET_CPU if device.type == "cpu" else 0.0


def refine(model: GaussianScene, gaussians: StandardGaussians, cameras: list[Camera], photos,
           render_cfg: RenderConfig, steps: int, show_progress: bool = True,
           budget_s: float | None = None) -> tuple[StandardGaussians, int]:
    """The baked ``gaussians`` trained further for ``steps`` steps (fewer when ``budget_s`` cuts them), all of
    them kept (distillation with ratio 1, no pruning beyond the opacity floor, no structure term): what
    ``mgs export --refine`` does. Returns them and the steps run."""
    cfg = DistillConfig(ratio=1.0, steps=steps, sh_degree=gaussians.degree, prune_fraction=0.0,
                        lambda_structure=0.0)
    refined, record = distill(model, cameras, photos, render_cfg, cfg, teacher_gaussians=gaussians,
                              show_progress=show_progress, budget_s=budget_s, steps_option="--refine",
                              label="refine")
    return refined, record.get("estimate", {}).get("steps", steps)

