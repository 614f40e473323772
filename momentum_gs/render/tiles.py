"""Gaussian × tile intersection lists, sorted by (tile, depth), grouped into buckets of similar length.

A Gaussian is listed for every tile that touches the bounding box of the ellipse where its α reaches
1/255 (tile t spans pixel coordinates [t·s, (t+1)·s] on each axis), as in gsplat: every pixel where it
is drawn, and only tiles where it can be.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0  # a Gaussian is skipped at a pixel where its α is below this
# Padded list lengths: a tile of n entries is padded to the next rung, so padding stays under ~25 %.
_LADDER_RATIO = 1.25


@dataclass
class TilePlan:
    """Where every Gaussian × tile pair goes, and in which chunks the torch compositor visits the tiles.

    Attributes:
        tile_size: tile side in pixels. tiles_x, tiles_y: tiles per row / column.
        gauss_ids: [M] Gaussian of each pair, sorted by tile then front to back.
        tile_ids: [M] tile (row-major) of each pair.
        chunk_elems: bound on tiles × pixels × list length per chunk (see ``plan_chunks``).
        offsets: [tiles + 1] int64 ``tile_offsets`` when the maker of the lists has them (else counted).
    """

    tile_size: int
    tiles_x: int
    tiles_y: int
    gauss_ids: Tensor
    tile_ids: Tensor
    chunk_elems: int
    offsets: Tensor | None = None

    @property
    def num_tiles(self) -> int:
        """Number of tiles covering the image (the last row / column may stick out of it)."""
        return self.tiles_x * self.tiles_y

    @functools.cached_property
    def chunks(self) -> list[tuple[Tensor, Tensor]]:
        """(tiles [B], pairs [B, L]) per chunk: the tiles composited together and, for each, its pairs in
        depth order, padded with the index M (a transparent dummy pair). Made on first use: the C++
        compositor reads ``tile_offsets`` instead."""
        return plan_chunks(self.tile_ids, self.num_tiles, self.chunk_elems, self.tile_size * self.tile_size)

    @functools.cached_property
    def tile_offsets(self) -> Tensor:
        """[tiles + 1] int64: tile t's pairs are ``[tile_offsets[t], tile_offsets[t + 1])`` of the sorted list."""
        if self.offsets is not None:
            return self.offsets
        counts = torch.bincount(self.tile_ids, minlength=self.num_tiles)
        return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def reach(covars2d: Tensor, opacities: Tensor, radii: Tensor) -> Tensor:
    """[N, 2] half-widths (pixels, x then y) of the box outside which a Gaussian draws nothing.

    The bounding box of the ellipse where o·exp(-½dᵀΣ⁻¹d) >= 1/255, of half-width sqrt(2·ln(255·o)·Σ_xx)
    along x (gsplat's opacity-aware box). Zero for culled Gaussians (``radii`` 0) and for o < 1/255.
    """
    level = torch.log(opacities.detach() / ALPHA_MIN).clamp(min=0.0)
    var = torch.diagonal(covars2d.detach(), dim1=-2, dim2=-1)
    ellipse = torch.sqrt(2.0 * level[:, None] * var) * 1.001 + 1e-3  # margin against rounding
    drawn = (radii > 0) & (level > 0)
    return torch.where(drawn[:, None], ellipse, torch.zeros_like(var))


def intersect_tiles(
    means2d: Tensor, extents: Tensor, depths: Tensor, tiles_x: int, tiles_y: int, tile_size: int
) -> tuple[Tensor, Tensor]:
    """All (Gaussian, tile) pairs, sorted by tile then by depth (front first).

    Args:
        means2d: [N, 2] pixels. extents: [N, 2] box half-widths in pixels (0 = not drawn). depths: [N].
    Returns:
        gauss_ids [M] and tile_ids [M] (int64, tile = row · tiles_x + col).
    """
    mean, ext = means2d.detach(), extents
    lo = torch.floor((mean - ext) / tile_size).long()
    hi = torch.ceil((mean + ext) / tile_size).long()
    limit = torch.tensor([tiles_x, tiles_y], device=mean.device)
    lo, hi = torch.minimum(lo.clamp(min=0), limit), torch.minimum(hi.clamp(min=0), limit)
    size = torch.where((ext > 0).all(-1, keepdim=True), hi - lo, torch.zeros_like(lo))
    counts = size[:, 0] * size[:, 1]

    num = means2d.shape[0]
    gauss_ids = torch.repeat_interleave(torch.arange(num, device=mean.device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(gauss_ids.numel(), device=mean.device) - first[gauss_ids]
    width = size[gauss_ids, 0]
    tx = lo[gauss_ids, 0] + local % width.clamp(min=1)
    ty = lo[gauss_ids, 1] + local // width.clamp(min=1)
    tile_ids = ty * tiles_x + tx

    # One sort on a combined key: tile major, depth rank minor.
    rank = torch.empty_like(counts)
    rank[torch.argsort(depths.detach(), stable=True)] = torch.arange(num, device=mean.device)
    order = torch.argsort(tile_ids * num + rank[gauss_ids])
    return gauss_ids[order], tile_ids[order]


def plan_chunks(
    tile_ids: Tensor, num_tiles: int, chunk_elems: int, pixels_per_tile: int
) -> list[tuple[Tensor, Tensor]]:
    """Group non-empty tiles by padded list length and split the groups into memory-bounded chunks.

    Args:
        tile_ids: [M] sorted tile of each pair. chunk_elems: bound on tiles × pixels × length per chunk.
    Returns:
        list of (tiles [B], pairs [B, L]) with pairs indexing the sorted list, padded with M.
    """
    device, num_pairs = tile_ids.device, tile_ids.numel()
    counts = torch.bincount(tile_ids, minlength=num_tiles)
    starts = torch.cumsum(counts, 0) - counts
    tiles = torch.nonzero(counts).squeeze(1)
    if tiles.numel() == 0:
        return []
    longest = int(counts.max())
    rungs = sorted({math.ceil(_LADDER_RATIO**k) for k in range(int(math.log(longest, _LADDER_RATIO)) + 2)})
    rungs = torch.tensor(rungs, device=device)
    padded = rungs[torch.bucketize(counts[tiles], rungs)]
    chunks = []
    for length in torch.unique(padded).tolist():
        group = tiles[padded == length]
        steps = torch.arange(length, device=device)
        per_chunk = max(1, chunk_elems // (pixels_per_tile * length))
        for part in torch.split(group, per_chunk):
            pairs = starts[part, None] + steps
            pairs = torch.where(steps < counts[part, None], pairs, torch.full_like(pairs, num_pairs))
            chunks.append((part, pairs))
    return chunks
