"""Distil a trained Momentum-GS scene into a compact standard 3DGS student (Distilled-3DGS).

The student is an explicit set of standard 3D Gaussians (the PLY every viewer reads) with a fraction of the
teacher's Gaussians. What it learns from:
- the photos: L1 and D-SSIM against each training view, as in training;
- pseudo-labels: the mean of the renders of three teachers of each training view, made once before the
  student trains. The teachers are copies of the one trained model, not separately trained models:
  the model itself; the model with its decoded Gaussians' positions moved by noise (δ ~ N(0, σ²) per axis,
  σ = ``noise`` × each Gaussian's mean scale) and log-scales by N(0, ``noise``²); the model with each decoded
  Gaussian dropped with probability ``dropout`` (0.2). All three render with the mean appearance code, which
  is what the student can represent (it has no per-view appearance);
- structure: 1 − the cosine similarity of 128³ voxel histograms of the student's and the teacher's
  Gaussian centres, over the box holding 99 % of the teacher's centres. The student's histogram spreads each
  centre over its 8 nearest voxels (trilinear weights), so the term has a gradient for the positions. It is
  off by default (``lambda_structure`` 0): on the demo city every weight tried (0.01, 0.1, 1) gave a worse
  student than none, and the term makes a CPU step dearer (docs/benchmarks/export.md).
The teacher's Gaussians are the baked export (:func:`momentum_gs.model.standard.bake`): one Gaussian per child
drawn by some training view. The student starts as the ``ratio`` most important of them, importance being
the Gaussian's total blending weight over the training views, then prunes twice (at a third and at two thirds
of its steps) the ``prune_fraction`` least important and every Gaussian below ``opacity_floor``.

Blocks: a trained run's blocks are merged into one model (each cropped to its cell) before distillation, so the
merged model is the one teacher of one global student, and every training view of every block teaches it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.estimate import estimate_line
from momentum_gs.export.student import (Student, VoxelHistogram, blending_weights, camera_extent,
                                        learning_rates, merge, structure_loss)
from momentum_gs.losses import l1, ssim
from momentum_gs.model.gaussian_scene import GaussianScene, decode_parts, gaussian_tensors, rasterize
from momentum_gs.model.standard import StandardGaussians, bake
from momentum_gs.ranges import DISTILL, check_settings


ShDegree = Literal[0, 1, 2, 3]
PROBE_STEPS = 5  # steps timed before the run's length is estimated (and cut to a time budget)


@dataclass
class DistillConfig:
    """How the student is made and trained (the defaults are those of ``mgs distill``)."""

    ratio: float = 0.15  # the student's first size, a fraction of the teacher's Gaussians
    steps: int = 3000
    sh_degree: ShDegree = 3
    teachers: tuple[str, ...] = ("model", "noise", "dropout")
    noise: float = 0.1
    dropout: float = 0.2
    lambda_dssim: float = 0.2
    lambda_distill: float = 1.0
    lambda_structure: float = 0.0  # off: every weight tried cost PSNR (docs/benchmarks/export.md)
    voxels: int = 128
    prune_fraction: float = 0.1
    opacity_floor: float = 0.005
    init: Literal["merge", "top"] = "merge"  # merge: moment-matched groups of the teacher's Gaussians; top: the most important
    importance_views: int = 64  # training views that measure importance (evenly spaced)
    seed: int = 0

    def check(self) -> None:
        """One line for the first value out of range (:data:`momentum_gs.ranges.DISTILL`) or unknown teacher."""
        check_settings(self, DISTILL, {name: "--" + name.replace("_", "-") for name in
                                       ("ratio", "steps", "sh_degree", "lambda_structure", "lambda_distill", "seed")})
        unknown = set(self.teachers) - set(TEACHERS)
        if unknown or not self.teachers:
            raise UserError(f"unknown teacher(s) {', '.join(sorted(unknown)) or '(none given)'}; "
                            f"choose from {', '.join(TEACHERS)}")


TEACHERS = ("model", "noise", "dropout")


@torch.no_grad()
def teacher_renders(model: GaussianScene, camera: Camera, render_cfg: RenderConfig, kinds: tuple[str, ...],
                    cfg: DistillConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """[H, W, 3] renders of ``camera`` by each teacher in ``kinds`` (see the module notes), from one decoding
    of the model's Gaussians for the view."""
    camera = camera.to(model.device)
    decoded = decode_parts([(model.anchors, model.decoder)], camera, render_cfg, model.appearance, None)
    tensors = gaussian_tensors(decoded)
    return [rasterize(perturbed(tensors, kind, cfg, generator), camera, render_cfg).image for kind in kinds]


def perturbed(tensors: list[torch.Tensor], kind: str, cfg: DistillConfig,
              generator: torch.Generator) -> list[torch.Tensor]:
    """The decoded Gaussians' means, quats, scales, opacities and colors as teacher ``kind`` sees them."""
    means, quats, scales, opacities, colors = tensors
    if kind == "noise":
        size = scales.mean(-1, keepdim=True)
        means = means + cfg.noise * size * torch.randn(means.shape, generator=generator).to(means)
        scales = scales * torch.exp(cfg.noise * torch.randn(scales.shape, generator=generator).to(scales))
    elif kind == "dropout":
        keep = (torch.rand(means.shape[0], generator=generator) >= cfg.dropout).to(means.device)
        means, quats, scales, opacities, colors = (t[keep] for t in (means, quats, scales, opacities, colors))
    return [means, quats, scales, opacities, colors]


def pseudo_labels(model: GaussianScene, cameras: list[Camera], render_cfg: RenderConfig, cfg: DistillConfig,
                  show_progress: bool = True) -> torch.Tensor:
    """[V, H, W, 3] uint8 (on the host): the teachers' fused render of each camera."""
    generator = torch.Generator().manual_seed(cfg.seed)
    out = []
    for camera in tqdm(cameras, desc="teachers", unit="view", disable=not show_progress):
        fused = sum(teacher_renders(model, camera, render_cfg, cfg.teachers, cfg, generator))
        out.append((fused / len(cfg.teachers)).clamp(0, 1).mul(255).round().byte().cpu())
    return torch.stack(out)


def evenly(items: list, count: int) -> list:
    """At most ``count`` items spread evenly over ``items``."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def distill(model: GaussianScene, train_cameras: list[Camera], photos, render_cfg: RenderConfig,
            cfg: DistillConfig, teacher_gaussians: StandardGaussians | None = None,
            show_progress: bool = True, budget_s: float | None = None,
            steps_option: str = "--steps", label: str = "distill") -> tuple[StandardGaussians, dict]:
    """Train a student of ``model`` (see the module notes); ``photos[i]`` is training view i's [H, W, 3] image
    (a list, or an :class:`~momentum_gs.data.images.ImageLoader`).

    After ``PROBE_STEPS`` steps the time of a step is measured and the whole run's time printed, with
    ``steps_option``, the option that shortens it. ``budget_s``: the run is cut to the steps that fit in it
    (at least ``PROBE_STEPS``), its schedules (decay, pruning) rescaled to the new length. ``label`` names the
    training in its progress bar and estimate line. Returns the student and a record of what happened (sizes, the pruning, the time of each stage)."""
    cfg.check()
    if not isinstance(model, GaussianScene):
        raise UserError("distillation needs one shared decoder; this run trained independent decoders per block")
    if not train_cameras:
        raise UserError("distillation needs the run's training views; the scene has none")
    times = {}
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    teacher = _teacher(model, train_cameras, render_cfg, cfg, teacher_gaussians, show_progress)
    times["bake_s"] = time.perf_counter() - started

    started = time.perf_counter()
    labels = pseudo_labels(model, train_cameras, render_cfg, cfg, show_progress)
    times["teachers_s"] = time.perf_counter() - started

    started = time.perf_counter()
    measured = evenly(train_cameras, cfg.importance_views)
    count = max(1, round(cfg.ratio * len(teacher)))
    student = Student(_first_student(teacher, measured, render_cfg, cfg, count)).to(model.device)
    record = {"teacher_gaussians": len(teacher), "initial_gaussians": count, "pruned": []}
    run = _StudentRun(student, teacher, train_cameras, measured, render_cfg, cfg)
    _train_student(run, photos, labels, record, show_progress, budget_s, steps_option, label)
    times["train_s"] = time.perf_counter() - started
    with torch.no_grad():
        g = student.gaussians()
        result = StandardGaussians(*(t.detach().clone() for t in (g.means, g.quats, g.scales, g.opacities, g.sh)))
    record.update(final_gaussians=len(result), config=asdict(cfg), **times)
    return result, record


def _teacher(model: GaussianScene, cameras: list[Camera], render_cfg: RenderConfig, cfg: DistillConfig,
             given: StandardGaussians | None, show_progress: bool) -> StandardGaussians:
    """The teacher's Gaussians: ``given`` (or the model baked from ``cameras``) at the student's SH degree."""
    teacher = given or bake(model, cameras, render_cfg, degree=cfg.sh_degree, show_progress=show_progress)
    if teacher.degree != cfg.sh_degree:
        teacher = StandardGaussians(teacher.means, teacher.quats, teacher.scales, teacher.opacities,
                                    _resize_sh(teacher.sh, cfg.sh_degree))
    return teacher


def _first_student(teacher: StandardGaussians, measured: list[Camera], render_cfg: RenderConfig,
                   cfg: DistillConfig, count: int) -> StandardGaussians:
    """The student's first ``count`` Gaussians: the teacher's most important (or merged, ``init="merge"``)."""
    if count == len(teacher):  # refinement: every Gaussian stays
        return teacher
    if cfg.init == "merge":
        return merge(teacher, blending_weights(teacher, measured, render_cfg), count)
    importance = blending_weights(teacher, measured, render_cfg)
    chosen = torch.argsort(importance, descending=True, stable=True)[:count]
    return StandardGaussians(*(t[chosen] for t in (teacher.means, teacher.quats, teacher.scales,
                                                    teacher.opacities, teacher.sh)))


class _StudentRun:
    """What the student's steps share: the student, its optimizer and learning rates, the views, and the
    voxel histogram of the teacher's centres (the structure term)."""

    def __init__(self, student: Student, teacher: StandardGaussians, cameras: list[Camera],
                 measured: list[Camera], render_cfg: RenderConfig, cfg: DistillConfig):
        self.student, self.cameras, self.measured, self.render_cfg, self.cfg = (
            student, cameras, measured, render_cfg, cfg)
        device = student.means.device
        lo = torch.quantile(teacher.means.float().cpu(), 0.005, dim=0).to(device)
        hi = torch.quantile(teacher.means.float().cpu(), 0.995, dim=0).to(device)
        self.hist = VoxelHistogram(lo, hi, cfg.voxels)
        with torch.no_grad():
            self.teacher_hist = self.hist(teacher.means)
        self.rates = learning_rates(camera_extent(cameras))
        self.optimizer = torch.optim.Adam([{"params": [getattr(student, name)], "lr": lr, "name": name}
                                           for name, lr in self.rates.items()], eps=1e-15)

    def step(self, step: int, total: int, photo: torch.Tensor, label: torch.Tensor, camera: Camera
             ) -> torch.Tensor:
        """One optimizer step of the student on one view; returns its loss."""
        cfg = self.cfg
        image = self.student.render(camera, self.render_cfg)
        colour = (1 - cfg.lambda_dssim) * l1(image, photo) + cfg.lambda_dssim * (1 - ssim(image, photo))
        loss = colour + cfg.lambda_distill * l1(image, label)
        if cfg.lambda_structure:
            loss = loss + cfg.lambda_structure * structure_loss(self.hist, self.teacher_hist, self.student.means)
        decay = 0.01 ** (step / total)  # positions: exponential decay to 1 % over the run, as 3DGS
        self.optimizer.param_groups[0]["lr"] = self.rates["means"] * decay
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def prune(self) -> dict:
        """Drop the least important ``prune_fraction`` and every Gaussian below the opacity floor."""
        with torch.no_grad():
            g = self.student.gaussians()
            keep = g.opacities >= self.cfg.opacity_floor
            cut = int(self.cfg.prune_fraction * len(g))
            if cut:
                keep[torch.argsort(blending_weights(g, self.measured, self.render_cfg), stable=True)[:cut]] = False
        self.student.keep(keep, self.optimizer)
        return {"kept": int(keep.sum()), "of": int(keep.numel())}


def _train_student(run: _StudentRun, photos, labels: list[torch.Tensor], record: dict, show_progress: bool,
                   budget_s: float | None, steps_option: str, label: str) -> None:
    """The student's steps, pruning at a third and two thirds; the length is measured (and maybe cut to
    ``budget_s``) after ``PROBE_STEPS`` steps. Writes the pruning and the estimate into ``record``."""
    cfg, device = run.cfg, run.student.means.device
    total = cfg.steps
    prune_steps = _prune_steps(total)
    order = torch.randperm(len(run.cameras), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    bar = tqdm(total=total, desc=label, unit="step", disable=not show_progress)
    step, loop_start = 0, time.perf_counter()
    while step < total:
        step += 1
        i = order[(step - 1) % len(order)]
        loss = run.step(step, total, photos[i].to(device), labels[i].to(device).float() / 255,
                        run.cameras[i].to(device))
        if step in prune_steps:
            record["pruned"].append({"step": step, **run.prune()})
        if step % 50 == 0 or step == total:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", gaussians=run.student.means.shape[0])
        bar.update(1)
        if step == PROBE_STEPS and total > PROBE_STEPS:
            per_step = (time.perf_counter() - loop_start) / step
            total, line = _sized(bar.desc, total, per_step, budget_s, steps_option)
            prune_steps, bar.total = _prune_steps(total), total
            record["estimate"] = {"seconds_per_step": per_step, "steps": total, "estimated_s": per_step * total}
            bar.write(line, file=sys.stderr)
    bar.close()


def _prune_steps(total: int) -> set[int]:
    """The steps that prune: one and two thirds of the run."""
    return {max(1, total // 3), max(1, 2 * total // 3)} if total >= 3 else set()


def _sized(what: str, total: int, per_step: float, budget_s: float | None, option: str) -> tuple[int, str]:
    """(the steps to run, the line that says so) from the measured time of a step."""
    fits = max(PROBE_STEPS, int(budget_s / per_step)) if budget_s else total
    if fits < total:
        return fits, (f"{what}: {per_step:.2f} s a step here: {fits} of the {total} steps fit in the {budget_s:.0f} s "
                      f"budget (about {per_step * fits / 60:.1f} min in all; {option} N to choose)")
    return total, estimate_line(what, per_step, total, "step", f"{option} N")


def _resize_sh(sh: torch.Tensor, degree: int) -> torch.Tensor:
    """``sh`` [M, K, 3] cut or zero-padded to ``degree``."""
    k = (degree + 1) ** 2
    if sh.shape[1] >= k:
        return sh[:, :k]
    return torch.cat([sh, sh.new_zeros(sh.shape[0], k - sh.shape[1], 3)], 1)
