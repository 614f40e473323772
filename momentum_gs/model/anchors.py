"""One block's anchors: frozen grid positions with learnable offsets, features and log-scales.

An anchor spawns k neural Gaussians. Its 6 log-scales split in two: columns 0:3 scale the offsets of
its children, columns 3:6 are the base size of the children (see ``neural.py``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from momentum_gs.config import ModelConfig
from momentum_gs.errors import UserError
from momentum_gs.model.optim import edit_rows, param_group, replace_rows

# optimizer group name -> AnchorSet attribute
ANCHOR_GROUPS = {"offset": "offsets", "feature": "features", "scaling": "scalings"}
MIN_SQUARED_DISTANCE = 1e-7  # world units²; floor for the initial scale of coincident anchors


def _usable_cores() -> int:
    """Cores this process may run on (its affinity, which a job scheduler may have narrowed)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def knn_mean_squared_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """[P] mean squared distance (world units²) of each point to its ``k`` nearest other points.

    Exact (scipy cKDTree, queries on every core). Fewer than ``k`` other points: the ones there are; a lone
    point gets 0.
    """
    points = np.asarray(points, dtype=np.float64)
    kk = min(k, len(points) - 1)
    if kk < 1:
        return np.zeros(len(points))
    dist, _ = cKDTree(points).query(points, k=kk + 1, workers=_usable_cores())
    return (dist[:, 1:] ** 2).mean(axis=1)  # column 0 is the point itself


def auto_voxel_size(points: np.ndarray) -> float:
    """Grid spacing (world units) for ``voxel_size <= 0``: the median over points of the RMS 3-NN distance.

    Scaffold-GS takes the median of the *mean squared* 3-NN distance, a length², so its grid changes with
    the unit of the scene (e.g. 100× finer after scaling a scene by 10). The square root is a length and
    keeps the grid at about one point spacing whatever the units.
    """
    spacing = float(np.median(np.sqrt(knn_mean_squared_distance(points)))) if len(points) else 0.0
    if not spacing > 0.0:
        raise UserError("cannot choose an automatic voxel size: fewer than 2 distinct points; set model.voxel_size")
    return spacing


def photo_footprint(cameras: list, points: np.ndarray) -> float:
    """What a pixel of the photos covers where they look (world units): the median over ``cameras`` of the median
    depth of the [P, 3] ``points`` in front of each, over its focal length; 0 without any."""
    points, sizes = np.asarray(points, np.float64), []
    for camera in cameras:
        w2c = camera.world_to_cam.detach().double().cpu().numpy()
        depth = points @ w2c[2, :3] + w2c[2, 3]
        if (depth > 0).any():
            sizes.append(float(np.median(depth[depth > 0])) / float(camera.K[0, 0]))
    return float(np.median(sizes)) if sizes else 0.0


def voxelize(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """[N, 3] float32 distinct grid points ``round(p / voxel_size) * voxel_size`` (world units) of [P, 3]
    ``points``, sorted.

    Reproduces the reference, which divides and rounds the float32 point cloud in float32 and multiplies the
    rounded cells by the voxel size in float32. Exactness is not the point, reproduction is: at Rubble-scale
    coordinates and a 1e-4 voxel, float32 puts 6 % (uniform in ±100) to 10 % (all |x| in 50..100) of the
    points in a neighbouring cell compared with float64, and so changes which anchors exist.
    """
    size = np.float32(voxel_size)
    cells = np.unique(np.round(np.asarray(points, dtype=np.float32) / size).astype(np.int64), axis=0)
    return cells.astype(np.float32) * size


def initial_log_scales(positions: torch.Tensor) -> torch.Tensor:
    """[N, 6] log of the RMS distance to the 3 nearest anchors (squared distance floored at 1e-7), 6 times."""
    msd = knn_mean_squared_distance(positions.detach().cpu().numpy())
    log_scale = 0.5 * np.log(np.maximum(msd, MIN_SQUARED_DISTANCE))
    return torch.as_tensor(log_scale, dtype=torch.float32, device=positions.device)[:, None].repeat(1, 6)


class AnchorSet(nn.Module):
    """The anchors of one block.

    Attributes:
        positions: [N, 3] buffer, world units; frozen (never optimized).
        offsets: [N, k, 3] parameter, child offsets in units of ``exp(scalings[:, :3])``; init 0.
        features: [N, c] parameter; init 0.
        scalings: [N, 6] parameter, log of world units; init log RMS 3-NN distance.
        voxel_size: grid spacing in world units (growing uses multiples of it).
    """

    def __init__(self, positions: torch.Tensor, voxel_size: float, feat_dim: int = 32, n_offsets: int = 10,
                 scalings: torch.Tensor | None = None):
        super().__init__()
        positions = positions.detach().float().contiguous()
        n = positions.shape[0]
        self.voxel_size = float(voxel_size)
        self.register_buffer("positions", positions)
        self.offsets = nn.Parameter(torch.zeros(n, n_offsets, 3, device=positions.device))
        self.features = nn.Parameter(torch.zeros(n, feat_dim, device=positions.device))
        self.scalings = nn.Parameter(initial_log_scales(positions) if scalings is None else scalings.float())

    @classmethod
    def from_points(cls, points, voxel_size: float, feat_dim: int = 32, n_offsets: int = 10, max_points: int = 0,
                    seed: int = 0, device: torch.device | str = "cpu", voxel_cap: float = 0.0) -> "AnchorSet":
        """Anchors from [P, 3] SfM points (numpy or tensor, world units).

        ``voxel_size <= 0`` picks it with :func:`auto_voxel_size`, at most ``voxel_cap`` where that is above 0;
        ``max_points > 0`` first keeps a random subset (numpy generator seeded with ``seed``) of at most that many
        points.
        """
        points = points.detach().cpu().numpy() if torch.is_tensor(points) else np.asarray(points)
        points = points.astype(np.float64).reshape(-1, 3)
        if max_points > 0 and len(points) > max_points:
            rng = np.random.default_rng(seed)
            points = points[np.sort(rng.choice(len(points), max_points, replace=False))]
        if voxel_size <= 0:
            voxel_size = auto_voxel_size(points)
            voxel_size = min(voxel_size, voxel_cap) if voxel_cap > 0 else voxel_size
        positions = torch.as_tensor(voxelize(points, voxel_size), dtype=torch.float32, device=device)
        return cls(positions, voxel_size, feat_dim, n_offsets)

    @classmethod
    def from_config(cls, points, cfg: ModelConfig, seed: int = 0, device: torch.device | str = "cpu",
                    cameras: list | None = None) -> "AnchorSet":
        """:meth:`from_points` with ``voxel_size``, ``feat_dim``, ``n_offsets``, ``max_points`` from ``cfg``; with
        ``cfg.voxel_max_footprints`` and the training ``cameras``, an automatic grid at most that many of their
        :func:`photo_footprint`."""
        bounded = cfg.voxel_size <= 0 and cfg.voxel_max_footprints > 0 and cameras  # a given grid is taken as it is
        cap = cfg.voxel_max_footprints * photo_footprint(cameras, points) if bounded else 0.0
        return cls.from_points(points, cfg.voxel_size, cfg.feat_dim, cfg.n_offsets, cfg.max_points, seed, device, cap)

    @property
    def num_anchors(self) -> int:
        """N."""
        return self.positions.shape[0]

    @property
    def n_offsets(self) -> int:
        """k, neural Gaussians per anchor."""
        return self.offsets.shape[1]

    @property
    def feat_dim(self) -> int:
        """c, feature size."""
        return self.features.shape[1]

    def child_positions(self) -> torch.Tensor:
        """[N, k, 3] centres of all neural Gaussians (world units): a + offset ⊙ exp(scalings[:, :3])."""
        return self.positions[:, None] + self.offsets * torch.exp(self.scalings[:, None, :3])

    def edit(self, optimizer: torch.optim.Optimizer | None, keep: torch.Tensor | None = None,
             append: dict[str, torch.Tensor] | None = None) -> None:
        """Keep rows ``keep`` (bool [N]) then append ``append`` rows, in the tensors and the optimizer state.

        ``append`` holds ``positions`` [A, 3], ``offsets`` [A, k, 3], ``features`` [A, c], ``scalings``
        [A, 6]. With an optimizer (from ``make_anchor_optimizer``) every change goes through
        :func:`replace_rows`; with ``None`` only the tensors change (e.g. cropping a block before a merge).
        """
        if (keep is None or bool(keep.all())) and not append:
            return
        append = append or {}
        if append and set(append) != {"positions", *ANCHOR_GROUPS.values()}:
            raise ValueError(f"append needs positions, offsets, features, scalings; got {sorted(append)}")
        for group, attr in ANCHOR_GROUPS.items():
            old = getattr(self, attr)
            if optimizer is None:
                new = nn.Parameter(edit_rows(old.detach(), keep, append.get(attr)))
            else:
                if param_group(optimizer, group)["params"][0] is not old:
                    raise ValueError(f"optimizer group '{group}' does not hold this AnchorSet's {attr}")
                new = replace_rows(optimizer, group, keep, append.get(attr))
            setattr(self, attr, new)
        self.positions = edit_rows(self.positions, keep, append.get("positions"))

    def to_dict(self) -> dict:
        """A snapshot of plain tensors (detached copies) plus ``voxel_size``, for checkpoints and swapping."""
        out = {name: getattr(self, name).detach().clone() for name in ("positions", "offsets", "features", "scalings")}
        out["voxel_size"] = self.voxel_size
        return out

    @classmethod
    def from_dict(cls, state: dict, device: torch.device | str | None = None) -> "AnchorSet":
        """The inverse of :meth:`to_dict` (tensors moved to ``device`` when given)."""
        move = (lambda t: t.to(device)) if device is not None else (lambda t: t)
        offsets, features = move(state["offsets"]), move(state["features"])
        anchors = cls(move(state["positions"]), state["voxel_size"], features.shape[1], offsets.shape[1],
                      scalings=move(state["scalings"]).clone())
        with torch.no_grad():
            anchors.offsets.copy_(offsets)
            anchors.features.copy_(features)
        return anchors
