"""Inputs for the 3D Tiles export's tests: random standard Gaussians, a tile tree of a root and two leaves, a GLB
put together by hand from a (changed) JSON and binary chunk, and the turn 3D Tiles applies to glTF content."""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

from momentum_gs.export.tiles.lod import Tile
from momentum_gs.model.standard import StandardGaussians

# 3D Tiles 1.1, "y-up to z-up": glTF content is turned π/2 about x as it loads: world = TURN @ glTF.
TURN = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def random_gaussians(n: int, degree: int = 3, seed: int = 0, centre=(0.0, 0.0, 0.0)) -> StandardGaussians:
    """Random Gaussians around ``centre``, random SH coefficients of ``degree``."""
    g = torch.Generator().manual_seed(seed)
    return StandardGaussians(means=torch.randn(n, 3, generator=g) * 4 + torch.tensor(centre, dtype=torch.float32),
                             quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                             scales=torch.exp(torch.rand(n, 3, generator=g) * 5 - 6),
                             opacities=torch.rand(n, generator=g) * 0.98 + 0.01,
                             sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.5)


def glb_of(doc: dict, binary: bytes) -> bytes:
    """A GLB of ``doc`` and ``binary`` (a changed copy of one of ours)."""
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    return (struct.pack("<III", 0x46546C67, 2, 28 + len(text) + len(binary)) + struct.pack("<II", len(text), 0x4E4F534A)
            + text + struct.pack("<II", len(binary), 0x004E4942) + binary)


def two_leaf_tree() -> Tile:
    """A root tile and two leaves splitting its box in x."""
    boxes = [np.array([[-10.0, -10, -5], [0, 10, 5]]), np.array([[0.0, -10, -5], [10, 10, 5]])]
    leaves = [Tile(random_gaussians(20, seed=i, centre=b.mean(0)), b, 0.0, f"b0-{i}") for i, b in enumerate(boxes)]
    return Tile(random_gaussians(15, seed=9), np.array([[-10.0, -10, -5], [10, 10, 5]]), 0.7, "b0", leaves)
