"""Gaussians far from what the photos saw, dropped at export.

Training leaves a few Gaussians where no photo constrains them: beyond the capture's edge, under the ground (seen
through it), behind the cameras. They cost little in the photos' views but stretch every box an export derives
from the Gaussians: a 3D Tiles root box several times the scene, a viewer that opens far away through a shell of
strays. :func:`kept_by_views` keeps a Gaussian whose centre lies in front of at least one training camera and
inside its image, widened by :data:`MARGIN` on each side; in a georeferenced scene (East-North-Up metres, z up) it
also drops those deeper under the ground (the SfM points' median height) than the cameras fly above it (their
median height over that ground): nadir photos barely tell depth apart, and training leaves colour on Gaussians
well under the ground that the photos do see, which dropping would take from the renders, but none that deep.
There it also drops those beyond the ground the photos see (:mod:`momentum_gs.data.footprint`, the images widened by
the same margin, their rays met with the low ground, :data:`LOW`, so that a valley below the median ground that the
photos look into is kept, but no deeper than what is kept; not the 1st percentile: a nadir survey's SfM points reach
hundreds of metres under the ground where rays meet at a slant) and beyond the SfM points (their 1st to 99th
percentiles: a photo taken low and looking out places a facade farther than its rays' reach), across the ground: a
photo looking obliquely sees, through the ground, a cone of space that widens without end below it, and a model
trained opaque fills it far beyond the capture.
There, too, no Gaussian is larger than a tenth of the half-size of that ground (:data:`SIZE`, the share above
which 3DGS's training prunes a Gaussian as too large for the scene): a model trained over random backgrounds
paints what it cannot place onto a few huge opaque Gaussians under the ground, whose 3σ reach, not their centres,
sets the boxes; their scales are capped (:func:`capped`), which keeps their colour where the photos see them.
An export drops the rest and says how many (``--keep-floaters`` keeps them all as they are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.footprint import Ground, ground_of
from momentum_gs.data.georef import robust_bounds
from momentum_gs.data.scene import SceneData
from momentum_gs.model.standard import StandardGaussians

MARGIN = 0.05  # the images widened by this share of their size on each side
DEPTH = 1.0  # how deep under the ground is kept, in flight heights
LOW = 0.1  # the photos' rays met with the low ground: the SfM points' 10th percentile of height (no deeper than kept)
PLACED = 0.01  # ... and the box of the SfM points' 1st to 99th percentiles
SIZE = 0.1  # the largest scale kept, in half-sizes of the ground the photos see (3DGS prunes above 0.1 × radius)
CHUNK = 1 << 18  # Gaussians tested at once


def kept_by_views(means: torch.Tensor, cameras: list[Camera], points: np.ndarray | None = None,
                  z_up: bool = False, ground: Ground | None = None) -> torch.Tensor:
    """[N] bool: the Gaussians at ``means`` [N, 3] kept (module notes); ``points`` [P, 3], the SfM points, and
    ``z_up`` give the floor in a georeferenced scene; ``ground``: the cameras' :class:`~momentum_gs.data.footprint
    .Ground` with z up (None: worked out here)."""
    means = means.detach().to("cpu", torch.float64)
    keep = torch.zeros(len(means), dtype=torch.bool)
    if not cameras:
        return ~keep
    rotations = torch.stack([c.world_to_cam[:3, :3] for c in cameras]).double()  # [C, 3, 3]
    shifts = torch.stack([c.world_to_cam[:3, 3] for c in cameras]).double()  # [C, 3]
    K = torch.stack([c.K for c in cameras]).double()
    size = torch.tensor([[c.width, c.height] for c in cameras], dtype=torch.float64)
    low, high = -MARGIN * size, (1 + MARGIN) * size  # [C, 2] pixel bounds
    for start in range(0, len(means), CHUNK):
        x = means[start:start + CHUNK]
        cam = torch.einsum("cij,nj->cni", rotations, x) + shifts[:, None]  # [C, n, 3]
        depth = cam[..., 2]
        pixel = torch.einsum("cij,cnj->cni", K[:, :2, :], cam) / depth.clamp_min(1e-9)[..., None]
        seen = (depth > 0) & ((pixel >= low[:, None]) & (pixel <= high[:, None])).all(-1)
        keep[start:start + CHUNK] = seen.any(0)
    if z_up and points is not None and len(points):
        points = np.asarray(points, np.float64).reshape(-1, 3)
        level = float(np.median(points[:, 2]))
        height = float(np.median([camera.center[2].item() for camera in cameras])) - level
        if height > 0:
            keep &= means[:, 2] >= level - DEPTH * height
        deepest = max(float(np.quantile(points[:, 2], LOW)), level - DEPTH * max(height, 0.0))
        seen = (ground or ground_of(cameras, points, np.eye(3)[2])).points(MARGIN, deepest)
        if seen is not None:
            lo, hi = robust_bounds(points, None, PLACED)  # what the photos placed, however far they looked
            lo, hi = np.minimum(seen.min(0), lo)[:2], np.maximum(seen.max(0), hi)[:2]
            keep &= ((means[:, :2] >= torch.from_numpy(lo)) & (means[:, :2] <= torch.from_numpy(hi))).all(1)
    return keep


@dataclass(frozen=True)
class Views:
    """What :func:`kept_by_views` tests against: the training cameras, the SfM points, whether z is up, and with z
    up the ground the cameras see (:class:`~momentum_gs.data.footprint.Ground`; None: worked out when asked)."""

    cameras: list[Camera]
    points: np.ndarray
    z_up: bool
    ground: Ground | None = None


def views_of(scene: SceneData, georef: dict | None, keep_floaters: bool, ground: Ground | None = None
             ) -> Views | None:
    """The :class:`Views` of ``scene`` (z up when it has a georef, with ``ground`` or the ground worked out here),
    or None with ``keep_floaters``."""
    if keep_floaters:
        return None
    if georef is not None and ground is None:
        ground = ground_of(scene.train, scene.points, np.eye(3)[2])
    return Views(scene.train, scene.points, georef is not None, ground if georef is not None else None)


def largest_size(views: Views | None) -> float | None:
    """The largest scale an export keeps (module notes): :data:`SIZE` of the half-size of the ground the photos
    see, or None (no cap: ``views`` None or not z up, or no ground)."""
    if views is None or not views.z_up:
        return None
    seen = (views.ground or ground_of(views.cameras, views.points, np.eye(3)[2])).points()
    return None if seen is None else SIZE * float(np.ptp(seen[:, :2], axis=0).max()) / 2


def capped(gaussians: StandardGaussians, views: Views | None) -> StandardGaussians:
    """``gaussians`` with every scale above :func:`largest_size` set to it (``views`` None: as they are)."""
    size = largest_size(views)
    if size is None or len(gaussians) == 0 or not bool((gaussians.scales > size).any()):
        return gaussians
    return StandardGaussians(gaussians.means, gaussians.quats, gaussians.scales.clamp(max=size),
                             gaussians.opacities, gaussians.sh)


def drop_floaters(gaussians: StandardGaussians, views: Views | None) -> tuple[StandardGaussians, int]:
    """``gaussians`` kept by :func:`kept_by_views`, :func:`capped` (``views`` None: all of them, as they are), and
    how many were dropped."""
    if views is None or len(gaussians) == 0:
        return gaussians, 0
    inside = kept_by_views(gaussians.means, views.cameras, views.points, views.z_up, views.ground)
    inside = inside.to(gaussians.means.device)
    dropped = int((~inside).sum())
    if dropped:
        gaussians = StandardGaussians(*(t[inside] for t in (gaussians.means, gaussians.quats, gaussians.scales,
                                                             gaussians.opacities, gaussians.sh)))
    return capped(gaussians, views), dropped


def dropped_line(dropped: int, total: int) -> str:
    """The line saying how many Gaussians an export dropped, or "" when none was."""
    if not dropped:
        return ""
    return (f"dropped {dropped:,} of {total:,} Gaussians ({100 * dropped / max(total, 1):.1f} %) that no photo saw "
            "(beyond the capture, under the ground; --keep-floaters keeps them)")
