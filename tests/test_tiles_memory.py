"""The tiled export holds one block at a time: the Gaussians it holds at once do not grow with the number of blocks.

What is measured is a count, not bytes: every :class:`StandardGaussians` made while the export runs is watched
(a weak reference), and at each one's birth the Gaussians of all those still alive are summed (one count per
distinct storage of means, so two objects sharing tensors count once). The count is exact and the same on
every run, whatever else the machine does; resident memory (the benchmark, scripts/bench_tiles_memory.py)
moves with the allocator, the imports and the neighbours, by more than the tens of thousands of Gaussians a
fast test can afford to tell apart. The export keeps its Gaussians in StandardGaussians (blocks, tile contents,
merges); its float64 scratch inside a merge is bounded by the tile size and not counted here.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest

from momentum_gs.export.tiles.blocks import write_tiles
from momentum_gs.model.standard import StandardGaussians
from tests.helpers.standard_city import generated_city

PER_BLOCK, TILE = 20_000, 2048


@pytest.fixture
def held(monkeypatch):
    """A function returning the most Gaussians held at once since the fixture began (see the module notes)."""
    alive: dict[int, weakref.ref] = {}
    peak = [0]
    original = StandardGaussians.__init__

    def watched(self, *args, **kwargs):
        original(self, *args, **kwargs)
        alive[id(self)] = weakref.ref(self)
        storages = {}
        for key, ref in list(alive.items()):
            g = ref()
            if g is None or id(g) != key:
                del alive[key]
                continue
            storage = g.means.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes() // (3 * g.means.element_size())
        peak[0] = max(peak[0], sum(storages.values()))

    monkeypatch.setattr(StandardGaussians, "__init__", watched)

    def reset() -> int:
        value, peak[0] = peak[0], 0
        return value
    return reset


def _export(blocks: int, out) -> None:
    written = write_tiles(generated_city(blocks, PER_BLOCK, degree=1), out, TILE)
    assert written.gaussians == blocks * PER_BLOCK and written.blocks == blocks


def test_the_gaussians_held_at_once_do_not_grow_with_the_blocks(held, tmp_path):
    _export(2, tmp_path / "two")
    two = held()
    _export(8, tmp_path / "eight")
    eight = held()
    # Above the blocks one tile per level waits for its partner: log2(8) - log2(2) = 2 levels more, and one tile
    # more for blocks 2 to 7, whose tiles may come closer to the tile size than those of blocks 0 and 1. Holding
    # the blocks' roots (6 tiles more) or the blocks (120 000 more) fails.
    assert eight <= two + 3 * TILE, (two, eight)
    # One block; in its tree, one merge (two children, their concatenation, the result) and the tiles waiting for
    # a sibling along one path (depth - 1); above the blocks, one tile per level: far below two blocks.
    depth = math.ceil(math.log2(PER_BLOCK / TILE))
    assert PER_BLOCK <= eight <= PER_BLOCK + TILE * (depth + 4 + math.log2(8)), (two, eight)


def test_the_count_sees_blocks_held_together(held):
    """The measure itself: holding the eight blocks at once is counted as such."""
    everything = list(generated_city(8, PER_BLOCK // 10, degree=0))
    assert held() == 8 * (PER_BLOCK // 10)
    assert np.isclose(sum(len(g) for g in everything), 8 * (PER_BLOCK // 10))
