"""Standard (explicit) 3D Gaussians, their spherical-harmonic colours, and baking a trained Momentum-GS
(Scaffold-GS) scene into them.

The anchors decode their children per view: colour, opacity, scale and rotation depend on the viewing
direction, and a child is drawn only in views where its decoded opacity is > 0. Baking turns that into one
fixed Gaussian per child by decoding every training view once:
- position: the child's mean (it does not depend on the view);
- opacity: the mean of its decoded opacity over the views that draw it (decoded opacity > 0);
- colour: spherical harmonics of degree 0–3 fitted by least squares to the decoded colours of the views
  that draw it, each weighted by its opacity × distance⁻⁴ (near views see the child large, and decide how it
  looks in the renders that show it), with a small ridge on the coefficients beyond the constant one (few
  views cannot pin down 16 coefficients);
- scale and rotation: the same weighted mean of log-scales and of sign-aligned quaternions.
Each choice was measured against its alternatives on the demo city's held-out views (opacity averaged over
every view with the anchor in sight, over the views that draw it; distance weights of power 2, 4 and 8):
docs/benchmarks/export.md.
Children never drawn, or whose baked opacity is below 1/255, are left out.

The exports (:mod:`momentum_gs.export`) write these Gaussians to files; the live viewer merges them into its
levels of detail (:mod:`momentum_gs.model.lod`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.io.budget import require_memory
from momentum_gs.io.finite import require_finite
from momentum_gs.model.gaussian_scene import GaussianScene, decode_parts, rasterize

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """[M, (degree + 1)²] real spherical-harmonic basis at unit directions ``dirs`` [M, 3], in the order and
    with the signs of the original 3DGS code (colour = basis · coefficients + 0.5)."""
    if not 0 <= degree <= 3:
        raise UserError(f"the SH degree must be 0, 1, 2 or 3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def eval_sh(sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """[M, 3] colours of Gaussians with coefficients ``sh`` [M, K, 3] seen along unit ``dirs`` [M, 3]."""
    degree = math.isqrt(sh.shape[1]) - 1
    return (torch.einsum("mk,mkc->mc", sh_basis(dirs, degree), sh) + 0.5).clamp_min(0.0)


@dataclass
class StandardGaussians:
    """Explicit 3D Gaussians: means [M, 3], quats [M, 4] (w first, unit), scales [M, 3] (world units),
    opacities [M] in (0, 1), sh [M, K, 3]."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor

    @property
    def degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1

    def __len__(self) -> int:
        return self.means.shape[0]

    def to(self, device: torch.device | str) -> "StandardGaussians":
        """The same Gaussians on ``device``."""
        return StandardGaussians(*(t.to(device) for t in (self.means, self.quats, self.scales, self.opacities, self.sh)))

    def log_scales(self) -> torch.Tensor:
        """[M, 3] the scales' logarithms, as files and optimizers hold them: a flattened axis (a scale of 0, a
        sigmoid that underflowed) is taken as the smallest normal float32, so that its log is finite (−87.3)."""
        return self.scales.clamp_min(torch.finfo(torch.float32).tiny).log()

    def require_finite(self, target: str | Path) -> None:
        """A UserError (one line, see ``io.finite``) when a value is NaN or inf: nothing such is written."""
        fields = {name: getattr(self, name) for name in ("means", "quats", "scales", "opacities", "sh")}
        require_finite(fields, f"the Gaussians to write to {target}",
                       "nothing was written; export an earlier checkpoint, or train again")

    def render(self, camera: Camera, render_cfg: RenderConfig) -> torch.Tensor:
        """[H, W, 3] image from ``camera`` (colours evaluated along each Gaussian's viewing direction)."""
        camera = camera.to(self.means.device)
        dirs = torch.nn.functional.normalize(self.means - camera.center.to(self.means), dim=-1)
        tensors = [self.means, self.quats, self.scales, self.opacities, eval_sh(self.sh, dirs)]
        return rasterize(tensors, camera, render_cfg).image


@torch.no_grad()
def bake(model: GaussianScene, cameras: list[Camera], render_cfg: RenderConfig, degree: int = 3,
         ridge: float = 0.05, distance_power: float = 4.0, show_progress: bool = True) -> StandardGaussians:
    """Standard Gaussians from ``model`` decoded from every camera in ``cameras`` (see the module notes)."""
    if not isinstance(model, GaussianScene):
        raise UserError("baking needs one shared decoder; this run trained independent decoders per block")
    if not cameras:
        raise UserError("baking needs training views to decode the anchors from; the run has none")
    sh_basis(torch.zeros(1, 3), degree)  # checks the degree before any work
    anchors, device = model.anchors, model.device
    k, K = anchors.n_offsets, (degree + 1) ** 2
    n = anchors.num_anchors * k
    require_memory(n * (17 + K * K + 3 * K) * 8, device, f"baking {n:,} Gaussians with SH degree {degree}",
                   "export a lower --sh-degree (degree 0 needs a fifteenth of degree 3's memory) or use a machine "
                   "with more memory")  # the float64 sums below
    zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
    drawn, opacity_sum, weight_sum = zeros(n), zeros(n), zeros(n)
    log_scales, quats, quat_ref = zeros(n, 3), zeros(n, 4), zeros(n, 4)
    normal, rhs, means = zeros(n, K, K), zeros(n, K, 3), zeros(n, 3)
    for camera in tqdm(cameras, desc="bake", unit="view", disable=not show_progress):
        camera = camera.to(device)
        g = decode_parts([(anchors, model.decoder)], camera, render_cfg, model.appearance, None)[0]
        visible_children = (g.anchor_index[:, None] * k + torch.arange(k, device=device)).reshape(-1)
        child = visible_children.index_select(0, g.kept)
        o = g.opacities.double()
        offset = g.means.double() - camera.center.double().to(device)
        w = o * offset.norm(dim=-1).pow(-distance_power)
        drawn.index_add_(0, child, torch.ones_like(w))
        opacity_sum.index_add_(0, child, o)
        weight_sum.index_add_(0, child, w)
        means[child] = g.means.double()
        log_scales.index_add_(0, child, w[:, None] * g.scales.double().log())
        q = torch.nn.functional.normalize(g.quats.double(), dim=-1)
        first = quat_ref[child].abs().sum(-1) == 0
        quat_ref[child[first]] = q[first]
        sign = torch.where((q * quat_ref[child]).sum(-1) < 0, -1.0, 1.0)
        quats.index_add_(0, child, (w * sign)[:, None] * q)
        dirs = torch.nn.functional.normalize(offset, dim=-1)
        basis = sh_basis(dirs, degree)
        normal.index_add_(0, child, w[:, None, None] * basis[:, :, None] * basis[:, None, :])
        rhs.index_add_(0, child, w[:, None, None] * basis[:, :, None] * (g.colors.double() - 0.5)[:, None, :])
    opacity = opacity_sum / drawn.clamp_min(1)
    keep = (weight_sum > 0) & (opacity >= 1 / 255)
    if not keep.any():
        raise UserError("no Gaussian of the model is drawn from any training view; nothing to export")
    w = weight_sum[keep]
    penalty = torch.ones(K, dtype=torch.float64, device=device)
    penalty[0] = 1e-9  # the constant term is never held back
    system = normal[keep] + ridge * w[:, None, None] * torch.diag(penalty)
    sh = torch.linalg.solve(system, rhs[keep])
    return StandardGaussians(means=means[keep].float(),
                             quats=torch.nn.functional.normalize(quats[keep], dim=-1).float(),
                             scales=(log_scales[keep] / w[:, None]).exp().float(),
                             opacities=opacity[keep].float(), sh=sh.float())
