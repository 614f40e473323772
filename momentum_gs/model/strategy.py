"""Anchor growing and pruning (Scaffold-GS style), as an object with its own statistics.

Per step inside the statistics window, :meth:`GrowPruneStrategy.step_stats` accumulates, per child, the
screen-space gradient norm of its 2D mean (in NDC units) and a visit count, and per anchor the summed
clamped opacity of its children and a visit count. Every ``update_interval`` steps :meth:`adjust` grows
anchors in coarse-to-fine cells where the mean gradient is high and prunes anchors that stay transparent.
"""

from __future__ import annotations

import math

import torch

from momentum_gs.config import Config, StrategyConfig
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.neural import NeuralGaussians
from momentum_gs.model.optim import edit_rows

_STATE = ("opacity_accum", "anchor_visits", "offset_grad_accum", "offset_visits")


def grow_cells(child_pos: torch.Tensor, parents: torch.Tensor, features: torch.Tensor, occupied: torch.Tensor,
               cell_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """New anchors in the cells of size ``cell_size`` hit by candidate children and holding no anchor yet.

    Args:
        child_pos: [C, 3] candidate child centres, world units.
        parents: [C] long, index of each candidate's anchor into ``features``.
        features: [N, c] anchor features.
        occupied: [A, 3] positions of the anchors already there, world units.
        cell_size: grid spacing of this level, world units.

    Returns:
        positions [G, 3] = cell · cell_size, features [G, c] = element-wise max over the parents whose
        children fell in the cell.
    """
    cells, inverse = torch.unique(torch.round(child_pos / cell_size).long(), dim=0, return_inverse=True)
    taken_cells = torch.unique(torch.round(occupied / cell_size).long(), dim=0)
    _, joint = torch.unique(torch.cat([cells, taken_cells]), dim=0, return_inverse=True)
    taken = torch.zeros(int(joint.max()) + 1, dtype=torch.bool, device=joint.device)
    taken[joint[len(cells):]] = True
    fresh = ~taken[joint[: len(cells)]]  # [U]
    new_index = torch.cumsum(fresh.long(), 0) - 1
    child_ok = fresh[inverse]
    target = new_index[inverse[child_ok]]
    c = features.shape[1]
    new_features = features.new_zeros(int(fresh.sum()), c).scatter_reduce(
        0, target[:, None].expand(-1, c), features[parents[child_ok]], reduce="amax", include_self=False)
    return cells[fresh].to(child_pos.dtype) * cell_size, new_features


class GrowPruneStrategy:
    """Growing/pruning of one block's anchors; holds the statistics and a seeded generator.

    Args:
        cfg: the schedule and thresholds.
        anchors: the block's anchors (sizes and device of the statistics).
        seed: seed of the generator behind the random keep of growth candidates.
        max_child_log_scale: after every adjustment, clamp ``scalings[:, 3:6]`` (log world units) to this,
            as Scaffold-GS does (0.05: base child scale ≤ e^0.05 ≈ 1.05 world units). It caps runaway
            children; it is in world units, so scenes at a very different scale may want another value;
            None switches it off.
        reference_level_skip: skip levels ≥ 1 in a round where level 0 added nothing, as Scaffold-GS and
            the paper's code do (the default, ``strategy.reference_level_skip``). False keeps growing at the
            finer levels once the coarse cells are all taken (0 vs 1540 new anchors in one round of the
            side-by-side test scene; docs/decisions/0003).
        views: views a step (:mod:`momentum_gs.train.views`): statistics summed over that many views a step, so
            that the visits an interval brings are ``update_interval`` × ``views``.
    """

    def __init__(self, cfg: StrategyConfig, anchors: AnchorSet, seed: int = 0,
                 max_child_log_scale: float | None = 0.05, reference_level_skip: bool = True, views: int = 1):
        self.cfg = cfg
        self.views = views
        self.max_child_log_scale = max_child_log_scale
        self.reference_level_skip = reference_level_skip
        self.generator = torch.Generator().manual_seed(seed)
        n, k, device = anchors.num_anchors, anchors.n_offsets, anchors.positions.device
        self.opacity_accum = torch.zeros(n, device=device)  # [N] summed clamped child opacity
        self.anchor_visits = torch.zeros(n, device=device)  # [N] views in which the anchor was visible
        self.offset_grad_accum = torch.zeros(n * k, device=device)  # [N*k] summed NDC gradient norms
        self.offset_visits = torch.zeros(n * k, device=device)  # [N*k] views where the child was drawn

    @classmethod
    def from_config(cls, cfg: Config, anchors: AnchorSet) -> "GrowPruneStrategy":
        """The strategy of one anchor set as ``cfg.strategy`` and ``cfg.seed`` configure it."""
        return cls(cfg.strategy, anchors, seed=cfg.seed, max_child_log_scale=cfg.strategy.max_child_log_scale,
                   reference_level_skip=cfg.strategy.reference_level_skip,
                   views=cfg.distributed.planned_views)

    def should_collect(self, step: int) -> bool:
        """Statistics window: ``start_stat < step < update_until``."""
        return self.cfg.start_stat < step < self.cfg.update_until

    def should_adjust(self, step: int) -> bool:
        """Inside the statistics window, after ``update_from``, every ``update_interval`` steps."""
        return self.should_collect(step) and step > self.cfg.update_from and step % self.cfg.update_interval == 0

    @torch.no_grad()
    def step_stats(self, neural: NeuralGaussians, radii: torch.Tensor, means2d_grad: torch.Tensor,
                   width: int, height: int) -> None:
        """Accumulate one rendered view.

        Args:
            neural: the view's neural Gaussians (M kept).
            radii: [M] (or [M, 2]) screen radii in pixels; > 0 where drawn.
            means2d_grad: [M, 2] gradient of the loss w.r.t. the 2D means in pixels. Multiplied by
                (width/2, height/2) it becomes the gradient w.r.t. NDC coordinates, the unit of
                ``grad_threshold``.
            width, height: image size in pixels.
        """
        anchor_idx = neural.anchor_index
        self.opacity_accum.index_add_(0, anchor_idx, neural.neural_opacity.detach().clamp_min(0).sum(dim=1))
        self.anchor_visits[anchor_idx] += 1
        child = neural.child_index()
        if child.numel() == 0:
            return
        if means2d_grad is None:
            raise ValueError("means2d_grad is None: call retain_grad() on the render's means2d before backward")
        drawn = radii > 0
        if drawn.dim() > 1:  # per-axis radii [M, 2]
            drawn = drawn.any(dim=-1)
        # scaled by Python numbers: a tensor of (width/2, height/2) would be a blocking copy to the GPU
        norms = torch.stack([means2d_grad[:, 0] * (width / 2.0), means2d_grad[:, 1] * (height / 2.0)], -1).norm(dim=-1)
        # Gaussians not drawn add 0 (a mask would need the device's data on the host to size its output)
        self.offset_grad_accum.index_add_(0, child, torch.where(drawn, norms, 0.0).to(self.offset_grad_accum))
        self.offset_visits.index_add_(0, child, drawn.to(self.offset_visits))

    @torch.no_grad()
    def adjust(self, anchors: AnchorSet, optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
        """Grow, reset, prune, clamp; edits ``anchors`` and ``optimizer`` in place. Returns counts."""
        cfg, k = self.cfg, anchors.n_offsets
        grown = self._grow(anchors)
        eligible = self.offset_visits > cfg.update_interval * self.views * cfg.success_threshold * 0.5
        self.offset_grad_accum[eligible] = 0.0
        self.offset_visits[eligible] = 0.0
        settled = self.anchor_visits > cfg.update_interval * self.views * cfg.success_threshold
        prune = settled & (self.opacity_accum < cfg.min_opacity * self.anchor_visits)
        self.opacity_accum[settled] = 0.0
        self.anchor_visits[settled] = 0.0
        n_new = 0 if grown is None else grown["positions"].shape[0]
        anchors.edit(optimizer, keep=~prune, append=grown)
        self._edit_stats(~prune, n_new, k)
        if self.max_child_log_scale is not None:
            anchors.scalings[:, 3:].clamp_(max=self.max_child_log_scale)
        return {"grown": n_new, "pruned": int(prune.sum())}

    def _grow(self, anchors: AnchorSet) -> dict[str, torch.Tensor] | None:
        """New anchor rows over all levels (coarse to fine), or None."""
        cfg, k = self.cfg, anchors.n_offsets
        grads = torch.nan_to_num(self.offset_grad_accum / self.offset_visits, nan=0.0)
        eligible = self.offset_visits > cfg.update_interval * self.views * cfg.success_threshold * 0.5
        child_pos = anchors.child_positions().reshape(-1, 3)
        occupied, positions, features, sizes = anchors.positions, [], [], []
        for level in range(cfg.levels):
            draw = torch.rand(grads.shape, generator=self.generator).to(grads.device)
            if self.reference_level_skip and level > 0 and not positions:
                continue
            threshold = cfg.grad_threshold * 2**level
            candidates = eligible & (grads >= threshold) & (draw > 0.5 ** (level + 1))
            if not candidates.any():
                continue
            size = anchors.voxel_size * cfg.init_factor / cfg.hierarchy_factor**level
            idx = candidates.nonzero()[:, 0]
            pos, feat = grow_cells(child_pos[idx], idx // k, anchors.features, occupied, size)
            if pos.shape[0]:
                positions.append(pos)
                features.append(feat)
                sizes.append(torch.full((pos.shape[0], 6), math.log(size), device=pos.device))
                occupied = torch.cat([occupied, pos])
        if not positions:
            return None
        positions = torch.cat(positions)
        return {"positions": positions, "features": torch.cat(features), "scalings": torch.cat(sizes),
                "offsets": positions.new_zeros(positions.shape[0], k, 3)}

    def _edit_stats(self, keep: torch.Tensor, n_new: int, k: int) -> None:
        """Apply the anchors' row edit to the statistics; new anchors start at zero."""
        for name in _STATE:
            stat = getattr(self, name)
            per_child = name.startswith("offset")
            rows_keep = keep.repeat_interleave(k) if per_child else keep
            setattr(self, name, edit_rows(stat, rows_keep, stat.new_zeros(n_new * (k if per_child else 1))))

    def to(self, device: torch.device | str) -> "GrowPruneStrategy":
        """Move the statistics to ``device`` (with their block's anchors); returns self."""
        for name in _STATE:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict:
        """Statistics and generator state, for checkpoints and block swapping."""
        out = {name: getattr(self, name).clone() for name in _STATE}
        out["generator"] = self.generator.get_state()
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (tensors keep the device of the current statistics)."""
        for name in _STATE:
            setattr(self, name, state[name].to(getattr(self, name).device).clone())
        self.generator.set_state(state["generator"].cpu())  # generator states live on the CPU
