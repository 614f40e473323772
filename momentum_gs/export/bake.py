"""Bake a trained Momentum-GS (Scaffold-GS) scene into standard 3D Gaussians: the PLY every 3DGS viewer reads.

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

The file: float32 vertices ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K−1)−1) opacity scale_0..2 rot_0..3`` in
the scene's own world frame, with K = (degree + 1)² and f_rest stored channel by channel (all of red's
coefficients, then green's, then blue's), opacity as a logit, scales as logs, rotations w first: the layout
of the original 3DGS code.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from tqdm import tqdm

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.budget import require_memory
from momentum_gs.io.finite import require_finite
from momentum_gs.io.foreign import read_ply_vertices, require_finite_fields
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


def ply_columns(degree: int) -> list[str]:
    """The vertex properties of a standard 3DGS PLY of SH ``degree``, in order."""
    rest = 3 * ((degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_standard_ply(gaussians: StandardGaussians, path: str | Path, comments: list[str] = ()) -> Path:
    """Write ``gaussians`` as a standard 3DGS PLY (binary little-endian, atomically), with header
    ``comments`` (a georeference, say); returns the path."""
    gaussians.require_finite(path)
    atomic_write_bytes(path, standard_ply_bytes(gaussians, comments))
    return Path(path)


def standard_ply_bytes(gaussians: StandardGaussians, comments: list[str] = ()) -> bytes:
    """The bytes of ``gaussians`` as a standard 3DGS PLY file (binary little-endian)."""
    g = gaussians
    n, K = len(g), g.sh.shape[1]
    opacity = g.opacities.clamp(1e-6, 1 - 1e-6)
    columns = [g.means, torch.zeros(n, 3), g.sh[:, 0, :], g.sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (K - 1)),
               torch.log(opacity / (1 - opacity))[:, None], g.scales.log(), g.quats]
    data = torch.cat([c.detach().float().cpu() for c in columns], 1).numpy()
    vertex = np.empty(n, dtype=[(name, "<f4") for name in ply_columns(g.degree)])
    for i, name in enumerate(vertex.dtype.names):
        vertex[name] = data[:, i]
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(vertex, "vertex")], comments=list(comments)).write(buffer)
    return buffer.getvalue()


def load_standard_ply(path: str | Path, device: torch.device | str = "cpu") -> StandardGaussians:
    """Read a standard 3DGS PLY (any SH degree 0–3) written by us or by the original code; a header announcing
    more vertices than the file holds, or a value that is NaN or inf, is a UserError (:mod:`momentum_gs.io.foreign`)."""
    vertex = read_ply_vertices(path, "3DGS PLY")
    names = vertex.dtype.names
    rest = sum(name.startswith("f_rest_") for name in names)
    K = rest // 3 + 1
    needed = [name for name in ply_columns(math.isqrt(K) - 1) if name not in ("nx", "ny", "nz")]  # unused, optional
    if rest % 3 or math.isqrt(K) ** 2 != K or any(name not in names for name in needed):
        raise UserError(f"{path} is not a standard 3DGS PLY (needs {', '.join(ply_columns(0)[:9])}, ...)")
    require_finite_fields(vertex, path, "the 3DGS PLY")
    column = lambda names_: torch.as_tensor(np.stack([vertex[c] for c in names_], 1), dtype=torch.float32)  # noqa: E731
    n = len(vertex)
    sh = column(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :]
    if rest:
        sh = torch.cat([sh, column([f"f_rest_{i}" for i in range(rest)]).reshape(n, 3, K - 1).transpose(1, 2)], 1)
    scales = column(["scale_0", "scale_1", "scale_2"]).exp()
    require_finite({"scales": scales}, f"the 3DGS PLY {path}", "its log scales overflow float32 (above 88); the file "
                   "was written from a model that diverged")
    return StandardGaussians(means=column(["x", "y", "z"]).to(device),
                             quats=torch.nn.functional.normalize(column([f"rot_{i}" for i in range(4)]), dim=-1).to(device),
                             scales=scales.to(device), opacities=torch.sigmoid(column(["opacity"])[:, 0]).to(device),
                             sh=sh.to(device))
