"""Levels of detail of baked Gaussians: a tree of tiles whose parents hold coarser versions of their children.

A block's Gaussians are cut by a k-d tree (the median of the box's longest axis) until every leaf holds at most
``tile_size`` Gaussians. A parent holds a coarser copy of everything below it, at most ``tile_size``
Gaussians, made by merging its children's content: Gaussians that fall in one cell of a grid sized for
``tile_size`` are replaced by one whose mean and covariance are the weighted mean and covariance of the group
(moment matching), weights opacity × surface (the product of the two largest scales), the colour
coefficients averaged with the same weights, and the opacity chosen so that the merged Gaussian covers about
what the group covered (its summed opacity × surface over the merged surface, capped at 1).

A tile's ``geometric_error`` is the error, in world units, of drawing it instead of its children: the 90th
percentile over its children's Gaussians of how far each lies from the merged Gaussian that replaces it
(centre distance plus the change of its largest scale). A leaf's is 0. 3D Tiles viewers compare it, seen
from the camera, with a screen-space error in pixels to decide when to open a tile's children.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.model.lod import extent, merge_to
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.ranges import MAX_TILE_FILES, TILE, check_number

TILE_SIZE = 32_768  # Gaussians per tile at most, by default (--tile-size)


def tiles_at_most(counts: list[int], tile_size: int) -> int:
    """An upper bound of the tiles the trees of blocks of ``counts`` Gaussians make (median cuts until a leaf holds
    ``tile_size`` at most: at most 2^d leaves at depth d = ⌈log2(n / tile_size)⌉, 2^(d+1) − 1 tiles), plus one tile
    above the blocks for each block."""
    total = 0
    for n in counts:
        depth = max(0, math.ceil(math.log2(n / tile_size))) if n > tile_size else 0
        total += 2 ** (depth + 1) - 1 if n else 0
    return total + len(counts)


def check_tile_count(counts: list[int], tile_size: int, option: str = "--tile-size") -> None:
    """Refuse, in one line and before any file is written, tiles of ``tile_size`` Gaussians for blocks of
    ``counts`` Gaussians (an upper bound each) whose files could pass :data:`~momentum_gs.ranges.MAX_TILE_FILES`,
    with the ``option`` value that keeps them under."""
    count = tiles_at_most(counts, tile_size)
    if count <= MAX_TILE_FILES:
        return
    fit = tile_size
    while tiles_at_most(counts, fit) > MAX_TILE_FILES:
        fit *= 2
    raise UserError(f"{option} {tile_size} would cut {sum(counts):,} Gaussians into up to {count:,} tile files, more "
                    f"than the {MAX_TILE_FILES:,} one export may write; {option} {fit} or more keeps them under")


@dataclass
class Tile:
    """One tile of a level-of-detail tree.

    gaussians: its content (on the CPU; None once let go, in a tree that streams its tiles: ``build_tree``'s
    ``done``); box: [2, 3] min and max corners, world units, holding the 3-sigma extent of its content and every
    descendant's; geometric_error: world units, 0 for a leaf; children: the
    finer tiles it is replaced by; name: a file-name-safe id unique in the tree (e.g. ``b3-0-1``)."""

    gaussians: StandardGaussians | None
    box: np.ndarray
    geometric_error: float
    name: str
    children: list["Tile"] = field(default_factory=list)

    def walk(self):
        """This tile and every descendant, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()


def build_tree(gaussians: StandardGaussians, name: str, tile_size: int,
               done: Callable[[Tile], object] | None = None) -> Tile:
    """The level-of-detail tree of ``gaussians`` (on the CPU): leaves of at most ``tile_size`` Gaussians cut
    by a k-d tree, parents merged from their children (see the module notes).

    With ``done``, the tree streams: each tile is handed to ``done`` as soon as its content is final (a leaf
    when it is cut, a parent when it is merged), and a parent's children let their content go once it is
    merged (their ``gaussians`` become None); only the root keeps its content. Besides ``gaussians`` itself,
    the tree then holds at most about ``tile_size`` × (depth + 4) Gaussians at once: the contents waiting
    for their sibling along one path from the root, and one merge. Without ``done`` every tile keeps its
    content."""
    reason = check_number(tile_size, TILE)  # the one check of the tile size: every tree is built here
    if reason:
        raise UserError(f"the tile size (--tile-size) {reason}")
    means = gaussians.means.numpy()
    return _subtree(gaussians, means, np.arange(len(means)), name, tile_size, done)


def _subtree(gaussians: StandardGaussians, means: np.ndarray, index: np.ndarray, name: str, tile_size: int,
             done: Callable[[Tile], object] | None) -> Tile:
    """The tree of the rows ``index`` of ``gaussians`` (``means`` its means as numpy): :func:`build_tree`. The
    cut sorts row numbers, not Gaussians: a subtree copies only its leaves' rows."""
    if len(index) <= tile_size:
        content = gaussians if len(index) == len(gaussians) else take(gaussians, index)
        tile = Tile(content, extent(content), 0.0, name)
    else:
        points = means[index]
        axis = int(np.argmax(points.max(0) - points.min(0)))
        order = index[np.argsort(points[:, axis], kind="stable")]
        del points
        half = len(order) // 2
        children = [_subtree(gaussians, means, part, f"{name}-{i}", tile_size, done)
                    for i, part in enumerate((order[:half], order[half:]))]
        tile = merge_tiles(children, name, tile_size)
        if done is not None:
            for child in children:
                child.gaussians = None
    if done is not None:
        done(tile)
    return tile


def merge_tiles(children: list[Tile], name: str, tile_size: int) -> Tile:
    """A parent of ``children``: their content merged down to at most ``tile_size`` Gaussians."""
    content = concatenate([child.gaussians for child in children])
    merged, error = merge_to(content, tile_size)
    box = np.stack([np.min([c.box[0] for c in children], 0), np.max([c.box[1] for c in children], 0)])
    box = np.stack([np.minimum(box[0], extent(merged)[0]), np.maximum(box[1], extent(merged)[1])])
    return Tile(merged, box, error + max(child.geometric_error for child in children), name, children)


def take(gaussians: StandardGaussians, index: np.ndarray) -> StandardGaussians:
    """The Gaussians at ``index``."""
    index = torch.from_numpy(np.asarray(index, np.int64))
    return StandardGaussians(*(t.index_select(0, index) for t in _fields(gaussians)))


def concatenate(parts: list[StandardGaussians]) -> StandardGaussians:
    """The Gaussians of ``parts`` one after the other (the same SH degree)."""
    return StandardGaussians(*(torch.cat(ts) for ts in zip(*(_fields(p) for p in parts))))


def _fields(g: StandardGaussians) -> tuple[torch.Tensor, ...]:
    return g.means, g.quats, g.scales, g.opacities, g.sh
