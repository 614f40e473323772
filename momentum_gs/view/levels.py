"""Levels of detail in the live viewer: a run too large to draw whole in every frame is drawn block by block, each
block at the level its screen-space error and the frame's budget allow.

A block's levels are built once, the first time it is drawn with levels on (in a background thread: the block is
drawn whole until they are ready): its Gaussians baked from at most ``BAKE_VIEWS`` of the training views that
see it (:func:`~momentum_gs.model.standard.bake`, SH degree 0), then merged again and again to a quarter of the
count (:func:`~momentum_gs.model.lod.merge_to`, the merge of the 3D Tiles export) down to ``MIN_LEVEL``
Gaussians. Level 0 is the block itself, decoded live as without levels; level l > 0 is the l-th merge, whose
geometric error (world units) is the sum of the errors of the merges that made it.

In a frame, level l of a block seen from distance d (camera centre to the block's box, world units) with focal
length f (pixels) is off by about error_l · f / d pixels. Every block in view starts at its coarsest level; the
block whose error shows most is refined one level at a time while its error is above ``pixel_error`` and the
frame's Gaussians stay within the budget; a block whose box lies outside the view is not drawn. The budget is a
count of Gaussians: the frame time asked for over the time one Gaussian costs, a running mean over the frames
drawn, seeded with the rate measured on the development CPU (docs/benchmarks/viewer.md).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.lod import extent, merge_to
from momentum_gs.model.standard import StandardGaussians, bake

LEVEL_FACTOR = 4  # each level holds at most a quarter of the Gaussians of the one below it
MIN_LEVEL = 1024  # Gaussians: no coarser level is made once a level is this small
BAKE_VIEWS = 16  # training views a block's Gaussians are baked from (those that see it, evenly spaced)
PIXEL_ERROR = 1.0  # pixels: a level is fine enough where its geometric error covers at most this much
FRAME_TIME = 0.1  # seconds a moving camera's frame aims at
REST_FACTOR = 10  # the resting camera's full frame may take this many times as long
SECONDS_PER_GAUSSIAN = 1.3e-6  # the first guess of a Gaussian's cost, before frames are timed (see the module notes)
RATE_WEIGHT = 0.3  # weight of the latest frame in the running mean of the seconds a Gaussian costs
MIN_TIMED = 1000  # frames of fewer Gaussians leave the rate alone: fixed costs dominate their time


@dataclass
class BlockLevels:
    """One block's levels, finest first: ``gaussians[l]`` (None for level 0, the block decoded live; the merges
    on the viewer's device), ``counts[l]`` (Gaussians; level 0's is the baked count), ``errors[l]`` (world units,
    0 for level 0) and ``box`` ([2, 3] min and max corners, world units, around every level and every child the
    anchors can place; None: unknown, the block is always drawn)."""

    gaussians: list[StandardGaussians | None]
    counts: list[int]
    errors: list[float]
    box: np.ndarray | None

    @property
    def coarsest(self) -> int:
        """The index of the coarsest level."""
        return len(self.counts) - 1


def anchor_box(anchors) -> np.ndarray:
    """[2, 3] min and max corners (world units) around every child the anchors can place, reaching out 3 times
    the largest scale a child of its anchor can have."""
    with torch.no_grad():
        centres = anchors.child_positions().reshape(-1, 3)
        reach = 3 * torch.exp(anchors.scalings[:, 3:]).amax(1).repeat_interleave(anchors.n_offsets)[:, None]
        corners = torch.stack([(centres - reach).amin(0), (centres + reach).amax(0)])
    return corners.double().cpu().numpy()


def in_view(box: np.ndarray, camera) -> bool:
    """Whether part of ``box`` ([2, 3] corners, world units) may be in ``camera``'s view: False only when its 8
    corners all lie behind the camera or all beyond one side of its frustum."""
    world_to_cam = camera.world_to_cam.double().cpu().numpy()
    K = camera.K.double().cpu().numpy()
    x, y, z = (np.array(list(itertools.product(*box.T))) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]).T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    outside = (z <= 0, fx * x + cx * z < 0, (camera.width - cx) * z - fx * x < 0, fy * y + cy * z < 0,
               (camera.height - cy) * z - fy * y < 0)
    return not any(side.all() for side in outside)


def box_distance(box: np.ndarray, point: np.ndarray) -> float:
    """Distance (world units) from ``point`` [3] to ``box`` [2, 3]; 0 inside it."""
    return float(np.linalg.norm(np.maximum(np.maximum(box[0] - point, point - box[1]), 0)))


def choose_levels(levels: dict[int, BlockLevels], camera, budget: int, pixel_error: float = PIXEL_ERROR
                  ) -> dict[int, int | None]:
    """block → the level to draw from ``camera`` (0 the finest), or None for a block out of view. Each block in
    view starts at its coarsest level; the block whose error shows most (error · focal / distance, in pixels) is
    refined one level at a time while that is above ``pixel_error`` and the Gaussians drawn stay within
    ``budget`` (the coarsest levels are drawn even beyond it)."""
    focal, centre = float(camera.K[1, 1]), camera.center.double().cpu().numpy()
    chosen: dict[int, int | None] = {}
    heap, total = [], 0
    for b, block in levels.items():
        if block.box is not None and not in_view(block.box, camera):
            chosen[b] = None
            continue
        chosen[b] = block.coarsest
        total += block.counts[-1]
        distance = max(box_distance(block.box, centre), 1e-9) if block.box is not None else 1e-9
        heap.append((-block.errors[-1] * focal / distance, b, distance))
    heapq.heapify(heap)
    while heap:
        shown, b, distance = heapq.heappop(heap)
        if -shown <= pixel_error:
            break  # every other block's error shows less
        block, level = levels[b], chosen[b]
        extra = block.counts[level - 1] - block.counts[level]
        if total + extra > budget:
            continue  # this block stays where it is; a cheaper one may still be refined
        chosen[b], total = level - 1, total + extra
        heapq.heappush(heap, (-block.errors[level - 1] * focal / distance, b, distance))
    return chosen


def block_views(cameras: list, box: np.ndarray, limit: int = BAKE_VIEWS) -> list:
    """At most ``limit`` of ``cameras`` that see part of ``box``, evenly spaced (of all of them when none does)."""
    seeing = [camera for camera in cameras if in_view(box, camera)] or list(cameras)
    if len(seeing) > limit:
        seeing = [seeing[i] for i in np.linspace(0, len(seeing) - 1, limit).round().astype(int)]
    return seeing


@torch.no_grad()
def build_levels(anchors, decoder, appearance, cameras: list, render_cfg) -> BlockLevels:
    """The levels of the block of ``anchors`` and ``decoder`` (see the module notes); a block none of the
    ``cameras`` draws a Gaussian of has level 0 only."""
    if anchors.num_anchors == 0:
        return BlockLevels([None], [0], [0.0], None)
    box = anchor_box(anchors)
    try:
        baked = bake(GaussianScene(anchors, decoder, appearance), block_views(cameras, box), render_cfg, degree=0,
                     show_progress=False).to("cpu")
    except UserError:  # nothing drawn from the views: the block is drawn whole
        return BlockLevels([None], [anchors.num_anchors * anchors.n_offsets], [0.0], box)
    gaussians, counts, errors, current = [None], [len(baked)], [0.0], baked
    while len(current) > MIN_LEVEL:
        current, error = merge_to(current, max(MIN_LEVEL, math.ceil(len(current) / LEVEL_FACTOR)))
        reach = extent(current)
        box = np.stack([np.minimum(box[0], reach[0]), np.maximum(box[1], reach[1])])
        gaussians.append(current.to(anchors.positions.device))
        counts.append(len(current))
        errors.append(errors[-1] + error)
    return BlockLevels(gaussians, counts, errors, box)


class FrameBudget:
    """The Gaussians a frame may draw to take about ``seconds``: ``seconds`` over the seconds one Gaussian costs
    (``rate``), a running mean over the frames drawn."""

    def __init__(self, seconds: float, rate: float = SECONDS_PER_GAUSSIAN):
        self.seconds, self.rate = seconds, rate

    @property
    def gaussians(self) -> int:
        """The budget, in Gaussians."""
        return max(1, int(self.seconds / self.rate))

    def measured(self, seconds: float, gaussians: int) -> None:
        """A frame of ``gaussians`` took ``seconds``."""
        if gaussians >= MIN_TIMED:
            self.rate += RATE_WEIGHT * (seconds / gaussians - self.rate)


def placed_gaussians(parts) -> int:
    """Neural Gaussians the (anchors, decoder) ``parts`` can place (anchors × children per anchor): what a frame
    of them decodes at most."""
    return sum(anchors.num_anchors * anchors.n_offsets for anchors, _ in parts)


def levels_needed(source, frame_time: float = FRAME_TIME) -> bool:
    """Whether ``source``'s blocks hold more Gaussians than a moving camera's frame may draw in ``frame_time``
    seconds at the first guess of a Gaussian's cost: the default of ``mgs view --lod``."""
    return placed_gaussians(source.parts(range(source.num_blocks))) > FrameBudget(frame_time).gaussians
