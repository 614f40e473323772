"""The ``.splat`` file of the antimatter15 web viewer (and the many viewers that read it): 32 bytes per Gaussian.

Per Gaussian, little-endian, most important first (volume × opacity, as that viewer's converter orders them):
- position: 3 × float32, world units;
- scale: 3 × float32, standard deviations in world units (not logs);
- colour: 4 × uint8, RGB = 0.5 + C0 · SH DC clipped to [0, 1] · 255, A = opacity · 255;
- rotation: 4 × uint8, the unit quaternion (w, x, y, z) mapped by q · 128 + 128.
The format keeps no view-dependent colour: a scene is baked at SH degree 0 for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.foreign import require_finite_fields
from momentum_gs.model.standard import SH_C0, StandardGaussians

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
assert RECORD.itemsize == 32


def save_splat(gaussians: StandardGaussians, path: str | Path) -> Path:
    """Write ``gaussians`` (their SH DC term as the colour) as a ``.splat`` file, atomically."""
    gaussians.require_finite(path)
    atomic_write_bytes(path, splat_bytes(gaussians))
    return Path(path)


def splat_bytes(gaussians: StandardGaussians) -> bytes:
    """The ``.splat`` records of ``gaussians`` (their SH DC term as the colour)."""
    g = gaussians
    order = torch.argsort(-(g.scales.prod(-1) * g.opacities), stable=True)
    colour = (0.5 + SH_C0 * g.sh[:, 0, :]).clamp(0, 1)
    records = np.empty(len(g), RECORD)
    records["position"] = g.means[order].detach().cpu().numpy()
    records["scale"] = g.scales[order].detach().cpu().numpy()
    rgba = torch.cat([colour, g.opacities[:, None].clamp(0, 1)], 1)[order]
    records["rgba"] = (rgba * 255).round().clamp(0, 255).byte().cpu().numpy()
    quats = torch.nn.functional.normalize(g.quats[order], dim=-1)
    records["rotation"] = (quats * 128 + 128).round().clamp(0, 255).byte().cpu().numpy()
    return records.tobytes()


def load_splat(path: str | Path, device: torch.device | str = "cpu") -> StandardGaussians:
    """Read a ``.splat`` file into Gaussians of SH degree 0. The file has no header: its size gives the count
    (what is read is what the file holds, never more); a position or scale that is NaN or inf is a UserError."""
    data = Path(path).read_bytes() if Path(path).is_file() else None
    if data is None:
        raise UserError(f"splat file not found: {path}")
    if len(data) % RECORD.itemsize:
        raise UserError(f"{path} is not a .splat file: {len(data)} bytes is not a multiple of 32")
    records = np.frombuffer(data, RECORD)
    require_finite_fields(records, path, "the .splat file")
    rgba = torch.from_numpy(records["rgba"].astype(np.float32) / 255)
    quats = torch.from_numpy((records["rotation"].astype(np.float32) - 128) / 128)
    return StandardGaussians(means=torch.from_numpy(records["position"].copy()).to(device),
                             quats=torch.nn.functional.normalize(quats, dim=-1).to(device),
                             scales=torch.from_numpy(records["scale"].copy()).to(device),
                             opacities=rgba[:, 3].to(device), sh=((rgba[:, None, :3] - 0.5) / SH_C0).to(device))
