"""The student of a distillation: trainable standard Gaussians, how it starts (importance, merging) and its
structure term (voxel histograms of the Gaussian centres)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.model import rotmat_to_qvec
from momentum_gs.model.gaussian_scene import rasterize
from momentum_gs.model.standard import StandardGaussians, eval_sh
from momentum_gs.render.projection import quat_to_rotmat


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
        self.log_scales = nn.Parameter(g.log_scales())
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
