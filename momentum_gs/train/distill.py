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
  off by default (``lambda_structure`` 0): on the demo city every weight tried (0.01, 0.1, 1) gave a student
  0.13–0.59 dB worse than none (and it costs about 40 % of a CPU student step).
The teacher's Gaussians are the baked export (:func:`momentum_gs.io.bake.bake`): one Gaussian per child
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
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.estimate import estimate_line
from momentum_gs.io.bake import StandardGaussians, bake, eval_sh, standard_ply_bytes
from momentum_gs.losses import l1, psnr, ssim
from momentum_gs.model.gaussian_scene import GaussianScene, decode_parts, gaussian_tensors, rasterize
from momentum_gs.ranges import DISTILL, check_settings


PROBE_STEPS = 5  # steps timed before the run's length is estimated (and cut to a time budget)


@dataclass
class DistillConfig:
    """How the student is made and trained (the defaults are those of ``mgs distill``)."""

    ratio: float = 0.15  # the student's first size, a fraction of the teacher's Gaussians
    steps: int = 3000
    sh_degree: int = 3
    teachers: tuple[str, ...] = ("model", "noise", "dropout")
    noise: float = 0.1
    dropout: float = 0.2
    lambda_dssim: float = 0.2
    lambda_distill: float = 1.0
    lambda_structure: float = 0.0  # off: every weight tried cost PSNR (docs/benchmarks.md)
    voxels: int = 128
    prune_fraction: float = 0.1
    opacity_floor: float = 0.005
    init: str = "merge"  # merge: moment-matched groups of the teacher's Gaussians; top: the most important
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


def blending_weights(gaussians: StandardGaussians, cameras: list[Camera], render_cfg: RenderConfig) -> torch.Tensor:
    """[M] each Gaussian's total blending weight (Σ over pixels of its α·transmittance) over ``cameras``.

    The image is linear in the colours, so the gradient of the summed image by a Gaussian's colour is its
    blending weight: one render and one backward per view."""
    g = gaussians
    total = torch.zeros(len(g), device=g.means.device)
    for camera in cameras:
        colors = torch.ones(len(g), 3, device=g.means.device, requires_grad=True)
        with torch.enable_grad():
            image = rasterize([g.means.detach(), g.quats.detach(), g.scales.detach(), g.opacities.detach(), colors],
                              camera.to(g.means.device), render_cfg).image
            (grad,) = torch.autograd.grad(image[..., 0].sum(), colors, allow_unused=True)
        if grad is not None:
            total += grad[:, 0]
    return total


def merge(gaussians: StandardGaussians, weights: torch.Tensor, count: int) -> StandardGaussians:
    """``count`` Gaussians that stand for all of ``gaussians``: the ``count`` heaviest are seeds, every other
    Gaussian joins its nearest seed (within 3 × the median distance between neighbouring seeds; farther ones are
    left out), and each group becomes one Gaussian by moment matching with the ``weights``: the weighted mean
    position, the covariance of the group (its members' own covariances plus their spread), the weighted mean
    colour coefficients and opacity (at least the seed's)."""
    from scipy.spatial import cKDTree

    from momentum_gs.data.colmap.model import rotmat_to_qvec
    from momentum_gs.render.projection import quat_to_rotmat

    g = gaussians
    device = g.means.device
    seeds = torch.argsort(weights, descending=True, stable=True)[:count]
    points = g.means.detach().double().cpu().numpy()
    tree = cKDTree(points[seeds.cpu().numpy()])
    spacing = np.median(tree.query(points[seeds.cpu().numpy()], k=2)[0][:, 1]) if count > 1 else np.inf
    distance, owner = tree.query(points, distance_upper_bound=3 * spacing)
    distance[seeds.cpu().numpy()], owner[seeds.cpu().numpy()] = 0, np.arange(count)  # seeds at equal points
    member = torch.from_numpy(np.isfinite(distance)).to(device)
    owner = torch.from_numpy(np.minimum(owner, count - 1)).to(device)[member]
    w = weights.double().clamp_min(1e-12)[member]
    total = torch.zeros(count, dtype=torch.float64, device=device).index_add(0, owner, w)
    mean = torch.zeros(count, 3, dtype=torch.float64, device=device).index_add(
        0, owner, w[:, None] * g.means[member].double()) / total[:, None]
    R = quat_to_rotmat(g.quats[member].float()).double()
    own = R @ torch.diag_embed(g.scales[member].double() ** 2) @ R.transpose(1, 2)
    d = g.means[member].double() - mean[owner]
    cov = torch.zeros(count, 3, 3, dtype=torch.float64, device=device).index_add(
        0, owner, w[:, None, None] * (own + d[:, :, None] * d[:, None, :])) / total[:, None, None]
    values, vectors = torch.linalg.eigh(cov)
    vectors = vectors * torch.where(torch.linalg.det(vectors) < 0, -1.0, 1.0)[:, None, None]
    sh = torch.zeros(count, *g.sh.shape[1:], dtype=torch.float64, device=device).index_add(
        0, owner, w[:, None, None] * g.sh[member].double()) / total[:, None, None]
    opacity = torch.zeros(count, dtype=torch.float64, device=device).index_add(
        0, owner, w * g.opacities[member].double()) / total
    quats = torch.from_numpy(rotmat_to_qvec(vectors.cpu().numpy())).to(device)
    return StandardGaussians(means=mean.float(), quats=quats.float(),
                             scales=values.clamp_min(1e-12).sqrt().float(),
                             opacities=torch.maximum(opacity.float(), g.opacities[seeds]), sh=sh.float())


class VoxelHistogram:
    """Histograms of points over a fixed ``voxels``³ grid spanning ``[lo, hi]`` (trilinear: differentiable)."""

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, voxels: int):
        self.lo, self.size, self.voxels = lo, (hi - lo).clamp_min(1e-9), voxels

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        v = self.voxels
        u = ((points - self.lo) / self.size * v - 0.5).clamp(0, v - 1 - 1e-4)
        base = u.detach().floor()
        frac = u - base
        base = base.long()
        corners = torch.tensor([[(c >> a) & 1 for a in range(3)] for c in range(8)], device=points.device)  # [8, 3]
        f = torch.where(corners.bool(), frac[:, None, :], 1 - frac[:, None, :])  # [N, 8, 3]
        w = f[..., 0] * f[..., 1] * f[..., 2]  # written out: torch.prod's backward waits for a GPU
        i = base[:, None, :] + corners  # [N, 8, 3]
        index = (i[..., 0] * v + i[..., 1]) * v + i[..., 2]
        return points.new_zeros(v ** 3).index_add(0, index.reshape(-1), w.reshape(-1))


def structure_loss(hist: VoxelHistogram, teacher_hist: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity of the students' and the teacher's voxel histograms."""
    return 1 - nn.functional.cosine_similarity(hist(means), teacher_hist, dim=0)


class Student(nn.Module):
    """Trainable standard Gaussians: positions, log-scales, quaternions, opacity logits, SH coefficients."""

    def __init__(self, g: StandardGaussians):
        super().__init__()
        o = g.opacities.clamp(1e-4, 1 - 1e-4)
        self.means = nn.Parameter(g.means.clone())
        self.log_scales = nn.Parameter(g.scales.log())
        self.quats = nn.Parameter(g.quats.clone())
        self.logits = nn.Parameter(torch.log(o / (1 - o)))
        self.sh_dc = nn.Parameter(g.sh[:, :1].clone())
        self.sh_rest = nn.Parameter(g.sh[:, 1:].clone())

    def gaussians(self) -> StandardGaussians:
        return StandardGaussians(self.means, nn.functional.normalize(self.quats, dim=-1), self.log_scales.exp(),
                                 torch.sigmoid(self.logits), torch.cat([self.sh_dc, self.sh_rest], 1))

    def render(self, camera: Camera, render_cfg: RenderConfig) -> torch.Tensor:
        g = self.gaussians()
        dirs = nn.functional.normalize(g.means - camera.center.to(g.means), dim=-1)
        tensors = [g.means, g.quats, g.scales, g.opacities, eval_sh(g.sh, dirs)]
        return rasterize(tensors, camera, render_cfg).image

    def keep(self, mask: torch.Tensor, optimizer: torch.optim.Adam) -> None:
        """Keep the Gaussians where ``mask`` is True, with their optimizer moments."""
        for group in optimizer.param_groups:
            old = group["params"][0]
            new = nn.Parameter(old.detach()[mask])
            state = optimizer.state.pop(old, None)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = state[key][mask]
                optimizer.state[new] = state
            group["params"][0] = new
            setattr(self, group["name"], new)


def learning_rates(extent: float) -> dict[str, float]:
    """The original 3DGS learning rates (positions scaled by the scene's extent)."""
    return {"means": 1.6e-4 * extent, "log_scales": 5e-3, "quats": 1e-3, "logits": 2.5e-2, "sh_dc": 2.5e-3,
            "sh_rest": 2.5e-3 / 20}


def camera_extent(cameras: list[Camera]) -> float:
    """1.1 × the largest distance of a camera centre from their mean (the original 3DGS scene radius)."""
    centers = torch.stack([c.center for c in cameras])
    return float(1.1 * (centers - centers.mean(0)).norm(dim=-1).max().clamp_min(1e-6))


def evenly(items: list, count: int) -> list:
    """At most ``count`` items spread evenly over ``items``."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def distill(model: GaussianScene, train_cameras: list[Camera], photos, render_cfg: RenderConfig,
            cfg: DistillConfig, teacher_gaussians: StandardGaussians | None = None,
            show_progress: bool = True, budget_s: float | None = None,
            steps_option: str = "--steps") -> tuple[StandardGaussians, dict]:
    """Train a student of ``model`` (see the module notes); ``photos[i]`` is training view i's [H, W, 3] image
    (a list, or an :class:`~momentum_gs.data.images.ImageLoader`).

    After ``PROBE_STEPS`` steps the time of a step is measured and the whole run's time printed, with
    ``steps_option``, the option that shortens it. ``budget_s``: the run is cut to the steps that fit in it
    (at least ``PROBE_STEPS``), its schedules (decay, pruning) rescaled to the new length.
    Returns the student and a record of what happened (sizes, the pruning, the time of each stage)."""
    cfg.check()
    if not isinstance(model, GaussianScene):
        raise UserError("distillation needs one shared decoder; this run trained independent decoders per block")
    if not train_cameras:
        raise UserError("distillation needs the run's training views; the scene has none")
    device, times = model.device, {}
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    teacher = teacher_gaussians or bake(model, train_cameras, render_cfg, degree=cfg.sh_degree,
                                        show_progress=show_progress)
    if teacher.degree != cfg.sh_degree:
        teacher = StandardGaussians(teacher.means, teacher.quats, teacher.scales, teacher.opacities,
                                    _resize_sh(teacher.sh, cfg.sh_degree))
    times["bake_s"] = time.perf_counter() - started

    started = time.perf_counter()
    labels = pseudo_labels(model, train_cameras, render_cfg, cfg, show_progress)
    times["teachers_s"] = time.perf_counter() - started

    started = time.perf_counter()
    measured = evenly(train_cameras, cfg.importance_views)
    count = max(1, round(cfg.ratio * len(teacher)))
    if count == len(teacher):  # refinement: every Gaussian stays
        start = teacher
    elif cfg.init == "merge":
        start = merge(teacher, blending_weights(teacher, measured, render_cfg), count)
    else:
        importance = blending_weights(teacher, measured, render_cfg)
        chosen = torch.argsort(importance, descending=True, stable=True)[:count]
        start = StandardGaussians(*(t[chosen] for t in (teacher.means, teacher.quats, teacher.scales,
                                                         teacher.opacities, teacher.sh)))
    student = Student(start).to(device)
    lo = torch.quantile(teacher.means.float().cpu(), 0.005, dim=0).to(device)
    hi = torch.quantile(teacher.means.float().cpu(), 0.995, dim=0).to(device)
    hist = VoxelHistogram(lo, hi, cfg.voxels)
    with torch.no_grad():
        teacher_hist = hist(teacher.means)
    rates = learning_rates(camera_extent(train_cameras))
    optimizer = torch.optim.Adam([{"params": [getattr(student, name)], "lr": lr, "name": name}
                                  for name, lr in rates.items()], eps=1e-15)
    total = cfg.steps
    prune_steps = _prune_steps(total)
    order = torch.randperm(len(train_cameras), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    record = {"teacher_gaussians": len(teacher), "initial_gaussians": count, "pruned": []}
    bar = tqdm(total=total, desc="distill", unit="step", disable=not show_progress)
    step, loop_start = 0, time.perf_counter()
    while step < total:
        step += 1
        i = order[(step - 1) % len(order)]
        camera = train_cameras[i].to(device)
        image = student.render(camera, render_cfg)
        photo = photos[i].to(device)
        label = labels[i].to(device).float() / 255
        colour = (1 - cfg.lambda_dssim) * l1(image, photo) + cfg.lambda_dssim * (1 - ssim(image, photo))
        loss = colour + cfg.lambda_distill * l1(image, label)
        if cfg.lambda_structure:
            loss = loss + cfg.lambda_structure * structure_loss(hist, teacher_hist, student.means)
        decay = 0.01 ** (step / total)  # positions: exponential decay to 1 % over the run, as 3DGS
        optimizer.param_groups[0]["lr"] = rates["means"] * decay
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step in prune_steps:
            with torch.no_grad():
                g = student.gaussians()
                keep = g.opacities >= cfg.opacity_floor
                cut = int(cfg.prune_fraction * len(g))
                if cut:
                    keep[torch.argsort(blending_weights(g, measured, render_cfg), stable=True)[:cut]] = False
            student.keep(keep, optimizer)
            record["pruned"].append({"step": step, "kept": int(keep.sum()), "of": int(keep.numel())})
        if step % 50 == 0 or step == total:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", gaussians=student.means.shape[0])
        bar.update(1)
        if step == PROBE_STEPS and total > PROBE_STEPS:
            per_step = (time.perf_counter() - loop_start) / step
            total, line = _sized(bar.desc, total, per_step, budget_s, steps_option)
            prune_steps, bar.total = _prune_steps(total), total
            record["estimate"] = {"seconds_per_step": per_step, "steps": total, "estimated_s": per_step * total}
            bar.write(line, file=sys.stderr)
    bar.close()
    times["train_s"] = time.perf_counter() - started
    with torch.no_grad():
        g = student.gaussians()
        result = StandardGaussians(*(t.detach().clone() for t in (g.means, g.quats, g.scales, g.opacities, g.sh)))
    record.update(final_gaussians=len(result), config=asdict(cfg), **times)
    return result, record


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


def refine(model: GaussianScene, gaussians: StandardGaussians, cameras: list[Camera], photos,
           render_cfg: RenderConfig, steps: int, show_progress: bool = True,
           budget_s: float | None = None) -> tuple[StandardGaussians, int]:
    """The baked ``gaussians`` trained further for ``steps`` steps (fewer when ``budget_s`` cuts them), all of
    them kept (distillation with ratio 1, no pruning beyond the opacity floor, no structure term): what
    ``mgs export --refine`` does. Returns them and the steps run."""
    cfg = DistillConfig(ratio=1.0, steps=steps, sh_degree=gaussians.degree, prune_fraction=0.0,
                        lambda_structure=0.0)
    refined, record = distill(model, cameras, photos, render_cfg, cfg, teacher_gaussians=gaussians,
                              show_progress=show_progress, budget_s=budget_s, steps_option="--refine")
    return refined, record.get("estimate", {}).get("steps", steps)


def _resize_sh(sh: torch.Tensor, degree: int) -> torch.Tensor:
    """``sh`` [M, K, 3] cut or zero-padded to ``degree``."""
    k = (degree + 1) ** 2
    if sh.shape[1] >= k:
        return sh[:, :k]
    return torch.cat([sh, sh.new_zeros(sh.shape[0], k - sh.shape[1], 3)], 1)


def ply_megabytes(gaussians: StandardGaussians) -> float:
    """Size of ``gaussians`` as a standard PLY, in MB (2²⁰ bytes)."""
    return len(standard_ply_bytes(gaussians)) / 2**20



def held_out_scores(render, cameras: list[Camera], truths: list[torch.Tensor]) -> dict:
    """Mean held-out PSNR and SSIM of ``render(camera)`` ([H, W, 3]) against ``truths``, and the renders."""
    from momentum_gs.eval.evaluate import scores

    images, per_view = [], []
    with torch.no_grad():
        for camera, gt in zip(cameras, truths):
            image = render(camera).clamp(0, 1).cpu()
            images.append(image)
            per_view.append(scores(image, gt, None))
    return {"psnr": float(np.mean([v["psnr"] for v in per_view])),
            "ssim": float(np.mean([v["ssim"] for v in per_view])), "images": images}


def distill_run(run_dir: str | Path, out: str | Path, cfg: DistillConfig, device: torch.device | None = None,
                show_progress: bool = True) -> dict:
    """``mgs distill``: the student of a run's merged model as ``OUT/point_cloud.ply``, with ``OUT/summary.json``
    (sizes, counts, held-out PSNR/SSIM of the model, the baked export and the student, times) and
    ``OUT/strip.png`` (model, baked, student and the photo of a few held-out views)."""
    import json

    from momentum_gs.data.images import ImageLoader
    from momentum_gs.data.scene import load_scene
    from momentum_gs.eval.evaluate import write_strip
    from momentum_gs.io.atomic import atomic_write_text
    from momentum_gs.io.bake import save_standard_ply
    from momentum_gs.io.run_folder import load_run

    cfg.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --out names the folder the student goes to")
    run_cfg, model, step = load_run(Path(run_dir), device)  # bake() refuses a run of independent decoders
    model.eval()
    scene = load_scene(run_cfg.data)
    photos = ImageLoader(scene.train, cache=True)
    started = time.perf_counter()
    baked = bake(model, scene.train, run_cfg.render, degree=cfg.sh_degree, show_progress=show_progress)
    bake_s = time.perf_counter() - started
    student, record = distill(model, scene.train, photos, run_cfg.render, cfg, teacher_gaussians=baked,
                              show_progress=show_progress)
    record["bake_s"] = bake_s
    record["total_s"] = time.perf_counter() - started
    path = save_standard_ply(student, out / "point_cloud.ply")
    anchor_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    summary = {"run": str(run_dir), "step": step, "student_ply": str(path),
               "sizes_mb": {"model": anchor_mb, "baked_ply": ply_megabytes(baked), "student_ply": ply_megabytes(student)},
               "gaussians": {"model_anchors": model.num_anchors, "baked": len(baked), "student": len(student)},
               **record}
    summary["smaller_than_baked"] = 1 - summary["sizes_mb"]["student_ply"] / summary["sizes_mb"]["baked_ply"]
    if scene.test:
        loader = ImageLoader(scene.test, cache=False)
        truths = [loader[i] for i in range(len(scene.test))]
        rendered = {"model": held_out_scores(lambda c: model.render(c.to(model.device), run_cfg.render).output.image,
                                             scene.test, truths),
                    "baked": held_out_scores(lambda c: baked.render(c, run_cfg.render), scene.test, truths),
                    "student": held_out_scores(lambda c: student.render(c, run_cfg.render), scene.test, truths)}
        summary["held_out"] = {name: {k: v for k, v in r.items() if k != "images"} for name, r in rendered.items()}
        columns = []
        for v in range(min(3, len(scene.test))):
            for name in ("model", "baked", "student"):
                image = rendered[name]["images"][v]
                columns.append((torch.cat([image, truths[v]], 0), f"{name} {scene.test[v].name}",
                                float(psnr(image, truths[v]))))
        write_strip(columns, out / "strip.png")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summary_lines(summary: dict, out: str | Path) -> list[str]:
    """What ``mgs distill`` prints at the end."""
    sizes, counts = summary["sizes_mb"], summary["gaussians"]
    lines = [f"student: {counts['student']} standard Gaussians ({counts['student'] / counts['baked']:.0%} of the "
             f"baked export's {counts['baked']}), {sizes['student_ply']:.2f} MB against {sizes['baked_ply']:.2f} MB "
             f"baked ({summary['smaller_than_baked']:.0%} smaller) and {sizes['model']:.2f} MB of anchors; "
             f"{summary['total_s']:.0f} s"]
    if "held_out" in summary:
        h = summary["held_out"]
        lines.append("held-out PSNR / SSIM: " + ", ".join(f"{name} {h[name]['psnr']:.2f} dB / {h[name]['ssim']:.3f}"
                                                          for name in ("model", "baked", "student")))
    lines += [f"student PLY: {summary['student_ply']}", f"pictures: {Path(out) / 'strip.png'}",
              f"next: open {summary['student_ply']} in a 3DGS viewer"]
    return lines
