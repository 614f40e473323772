"""Export in the Scaffold-GS layout: an anchor PLY plus the decoder weights, and loading them back.

PLY vertex properties, one vertex per anchor (float32): ``x y z``, ``nx ny nz`` (zeros),
``f_offset_0 … f_offset_{3k-1}`` (offsets stored transposed, i.e. [N, 3, k] flattened),
``f_anchor_feat_0 … f_anchor_feat_{c-1}``, ``opacity`` (logit 0.1; anchors carry no opacity of their own),
``scale_0 … scale_5`` (log world units) and ``rot_0 … rot_3`` (identity quaternion, wxyz).
The decoder (and the appearance table, if any) goes to ``decoder.pt`` with the model sizes beside it.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from momentum_gs.config import Config, ModelConfig, validate
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.checkpoint import load_verified, save_verified
from momentum_gs.io.foreign import read_ply_vertices, require_finite_fields
from momentum_gs.io.schema import Number, Obj, check
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.ranges import POSITIVE
from momentum_gs.trained import model_layout

PLY_NAME, DECODER_NAME = "point_cloud.ply", "decoder.pt"
DECODER_FORMAT, DECODER_VERSION = "momentum_gs.decoder", 2
AGAIN = "export the run again: `mgs export RUN --format scaffold`"


def _ply_columns(k: int, c: int) -> list[str]:
    """Property names of the Scaffold-GS anchor PLY, in order."""
    return (["x", "y", "z", "nx", "ny", "nz"] + [f"f_offset_{i}" for i in range(3 * k)]
            + [f"f_anchor_feat_{i}" for i in range(c)] + ["opacity"] + [f"scale_{i}" for i in range(6)]
            + [f"rot_{i}" for i in range(4)])


def save_anchor_ply(anchors: AnchorSet, path: str | Path) -> None:
    """Write ``anchors`` as a Scaffold-GS anchor PLY (binary little-endian)."""
    n, k, c = anchors.num_anchors, anchors.n_offsets, anchors.feat_dim
    with torch.no_grad():
        columns = [
            anchors.positions.cpu().numpy(),
            np.zeros((n, 3), np.float32),
            anchors.offsets.transpose(1, 2).reshape(n, 3 * k).cpu().numpy(),
            anchors.features.cpu().numpy(),
            np.full((n, 1), math.log(0.1 / 0.9), np.float32),
            anchors.scalings.cpu().numpy(),
            np.tile(np.array([[1, 0, 0, 0]], np.float32), (n, 1)),
        ]
    data = np.concatenate(columns, axis=1).astype(np.float32)
    vertex = np.empty(n, dtype=[(name, "f4") for name in _ply_columns(k, c)])
    for i, name in enumerate(vertex.dtype.names):
        vertex[name] = data[:, i]
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(vertex, "vertex")]).write(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_anchor_ply(path: str | Path, voxel_size: float, device: torch.device | str = "cpu") -> AnchorSet:
    """Read a Scaffold-GS anchor PLY back into an :class:`AnchorSet`; a header announcing more vertices than the
    file holds, or a value that is NaN or inf, is a UserError (:mod:`momentum_gs.io.foreign`)."""
    vertex = read_ply_vertices(path, "anchor PLY")
    names = vertex.dtype.names
    k = sum(name.startswith("f_offset_") for name in names) // 3
    c = sum(name.startswith("f_anchor_feat_") for name in names)
    missing = [name for name in _ply_columns(k, c) if name not in names]
    if missing or k == 0:
        raise UserError(f"{path} is not a Scaffold-GS anchor PLY (missing {missing[:3] or 'f_offset_*'})")
    require_finite_fields(vertex, path, "the anchor PLY")
    column = lambda prefix, count: np.stack([vertex[f"{prefix}{i}"] for i in range(count)], axis=1)  # noqa: E731
    as_tensor = lambda array: torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)  # noqa: E731
    n = len(vertex)
    state = {
        "positions": as_tensor(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)),
        "offsets": as_tensor(column("f_offset_", 3 * k).reshape(n, 3, k).transpose(0, 2, 1)),
        "features": as_tensor(column("f_anchor_feat_", c)),
        "scalings": as_tensor(column("scale_", 6)),
        "voxel_size": voxel_size,
    }
    return AnchorSet.from_dict(state, device=device)


def export_scene(model: GaussianScene, cfg: ModelConfig, out_dir: str | Path) -> Path:
    """Write ``point_cloud.ply`` and ``decoder.pt`` into ``out_dir``; returns the folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; the export needs a folder (--out)")
    save_anchor_ply(model.anchors, out_dir / PLY_NAME)
    appearance = None if model.appearance is None else model.appearance.state_dict()
    save_verified(out_dir / DECODER_NAME, {"format": DECODER_FORMAT, "version": DECODER_VERSION},
                  {"decoder": model.decoder.state_dict(), "appearance": appearance,
                   "model_config": vars(cfg).copy(), "voxel_size": model.anchors.voxel_size})
    return out_dir


def _model_config(meta: dict, path: Path) -> ModelConfig:
    """The model sizes stored in a decoder file, each of its type and in its config range, or a UserError."""
    saved, defaults = meta.get("model_config"), vars(ModelConfig())
    wrong = (["model_config"] if not isinstance(saved, dict) else
             [key for key, value in saved.items() if key not in defaults or type(value) is not type(defaults[key])])
    if wrong:
        raise UserError(f"{path} has no valid model sizes ({wrong[0]}); " + AGAIN)
    cfg = ModelConfig(**saved)
    validate(Config(model=cfg))  # the config's ranges: a size of 10⁹ is refused before a decoder is made
    return cfg


def load_export(folder: str | Path, device: torch.device | str = "cpu") -> tuple[GaussianScene, ModelConfig]:
    """Load what :func:`export_scene` wrote; returns the scene and its model config."""
    folder = Path(folder)
    for name in (PLY_NAME, DECODER_NAME):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name} is missing; run `mgs export RUN_DIR` first")
    meta = load_verified(folder / DECODER_NAME, DECODER_FORMAT, DECODER_VERSION, "decoder file", AGAIN)
    cfg = _model_config(meta, folder / DECODER_NAME)
    # the decoder's tensors against the sizes the file gives, before any is loaded (trained.model_layout)
    model = model_layout(cfg)
    check(meta, Obj({**model.required, "voxel_size": Number(POSITIVE)}, model.optional), str(folder / DECODER_NAME),
          "the decoder does not fit the model sizes stored beside it; " + AGAIN)
    anchors = load_anchor_ply(folder / PLY_NAME, meta["voxel_size"], device)
    if (anchors.n_offsets, anchors.feat_dim) != (cfg.n_offsets, cfg.feat_dim):
        raise UserError(f"{folder / PLY_NAME} holds anchors of {anchors.n_offsets} offsets and {anchors.feat_dim} "
                        f"features, but {DECODER_NAME} decodes {cfg.n_offsets} and {cfg.feat_dim} (model.n_offsets, "
                        f"model.feat_dim): the two files come from different exports; " + AGAIN)
    state = {"anchors": anchors.to_dict(), "decoder": meta["decoder"], "appearance": meta["appearance"]}
    return GaussianScene.from_dict(state, cfg, device), cfg
