"""The standard 3DGS PLY, the file every 3DGS viewer reads: standard 3D Gaussians
(:class:`~momentum_gs.model.standard.StandardGaussians`, baked from a trained scene by
:func:`~momentum_gs.model.standard.bake`) written and read back.

The file: float32 vertices ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K−1)−1) opacity scale_0..2 rot_0..3`` in
the scene's own world frame, with K = (degree + 1)² and f_rest stored channel by channel (all of red's
coefficients, then green's, then blue's), opacity as a logit, scales as logs, rotations w first: the layout
of the original 3DGS code.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.finite import require_finite
from momentum_gs.io.foreign import read_ply_vertices, require_finite_fields
from momentum_gs.model.standard import StandardGaussians


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
               torch.log(opacity / (1 - opacity))[:, None], g.log_scales(), g.quats]
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
