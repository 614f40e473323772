"""What ``mgs mesh`` is asked for: the voxel, the truncation, which rendered depth is fused, and where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DepthKind = Literal["median", "mean"]  # the rendered depth fused: where transmittance crosses 0.5, or the mean
DEPTHS = get_args(DepthKind)


@dataclass
class MeshSettings:
    """How ``mgs mesh`` fuses: ``voxel`` world units (None: the region's longest horizontal side / 400),
    truncation ``trunc_voxels`` voxels, ``depth`` "median" or "mean" (expected depth / alpha), pixels with
    alpha below ``min_alpha`` give no depth, region = the anchors' ``region_percentile``…100 − it per axis."""

    voxel: float | None = None
    trunc_voxels: float = 2.0
    depth: DepthKind = "median"
    min_alpha: float = 0.5
    region_percentile: float = 0.5
