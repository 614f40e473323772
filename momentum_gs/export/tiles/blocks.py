"""``mgs export --format 3dtiles``: Gaussians as an OGC 3D Tiles 1.1 tileset with levels of detail, block by block.

:func:`write_tiles` takes the Gaussians as a stream of blocks (any iterable of :class:`StandardGaussians`: a
run's blocks baked one at a time by :func:`bake_blocks`, or a generated scene) and holds one block at a time:
- each block is cut into a tree of tiles (:mod:`momentum_gs.export.tiles.lod`) that is written as it is built, leaves
  first, each parent once its two children are merged, whose contents are then let go;
- above the blocks, the blocks' roots wait for partners until together they hold more than a tile's worth;
  then they are merged into a tile of theirs, which waits likewise at the level above (:class:`BlockLevels`):
  full blocks pair up, two such tiles merge into one above them and so on, in the order the blocks come (for a
  partition its block order: x first, then y); small blocks gather until they fill a tile. Each level above the
  blocks holds at most a tile's worth of Gaussians and one more tile. The top tile is the tileset's root.
So the memory held is one block, its tree's tiles along one path and about two tiles per level above the blocks:
bounded by the block and tile sizes, whatever the number of blocks; the time grows linearly with the Gaussians.
The tiles are GLB files (glTF ``KHR_gaussian_splatting``, by default as SPZ streams, which CesiumJS draws:
:mod:`momentum_gs.export.tiles.gltf`). With the scene's
``georef.json`` (``mgs sfm`` with GPS photos) the root's transform puts the scene on the globe (WGS84); without
one the tileset stays in the scene's own frame. Only the tree's boxes and errors stay in memory to the end,
where ``tileset.json`` is written.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.data.georef import read_georef
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.estimate import sized
from momentum_gs.export.floaters import drop_floaters, dropped_line, views_of
from momentum_gs.export.tiles.gltf import COMPRESSIONS, save_glb
from momentum_gs.export.tiles.lod import TILE_SIZE, Tile, build_tree, check_tile_count, merge_tiles
from momentum_gs.export.tiles.tileset import TILES_FOLDER, write_tileset
from momentum_gs.io.folders import written_whole
from momentum_gs.io.safe_path import inside
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.standard import StandardGaussians, bake
from momentum_gs.trained import load_blocks


TILESET_NAMES = {"tileset.json", TILES_FOLDER}  # what a tileset's folder holds at its top


@dataclass
class TilesWritten:
    """What :func:`write_tiles` wrote: the tileset's path, the blocks that held Gaussians, the Gaussians (in
    the leaves), the tiles, the levels of the tree and the tiles' bytes on disk."""

    path: Path
    blocks: int
    gaussians: int
    tiles: int
    levels: int
    tile_bytes: int


def export_tiles(run_dir: str | Path, out: str | Path, sh_degree: int = 3, tile_size: int = TILE_SIZE,
                 tile_compression: str = "spz", keep_floaters: bool = False) -> list[str]:
    """Write ``out/tileset.json`` and ``out/tiles/*.glb`` of a run, baked block by block, tiles of at most
    ``tile_size`` Gaussians, each tile's Gaussians as one SPZ stream (``tile_compression`` "spz", what CesiumJS
    draws) or float32 attributes ("none"), without the Gaussians far outside what the photos saw unless
    ``keep_floaters`` (:mod:`momentum_gs.export.floaters`); returns the lines to print."""
    if tile_compression not in COMPRESSIONS:
        raise UserError(f"--tile-compression must be one of {', '.join(COMPRESSIONS)}, got {tile_compression}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the tileset needs a folder (--out)")
    cfg, _, blocks, _ = load_blocks(Path(run_dir))
    scene = load_scene(cfg.data)
    georef = read_georef(Path(cfg.data.path))
    if all(block.num_anchors == 0 for block in blocks):
        raise UserError("no block of the run holds anchors in its cell; nothing to export")
    check_tile_count([block.num_anchors * block.anchors.n_offsets for block in blocks], tile_size)
    box = views_of(scene, georef, keep_floaters)
    counts = [0, 0]  # Gaussians baked, dropped

    def kept(stream: Iterable[StandardGaussians]) -> Iterator[StandardGaussians]:
        for gaussians in stream:
            counts[0] += len(gaussians)
            gaussians, dropped = drop_floaters(gaussians, box)
            counts[1] += dropped
            yield gaussians
            del gaussians

    written = write_tiles_whole(kept(bake_blocks(blocks, scene.train, cfg.render, sh_degree)), out, tile_size,
                                georef, tile_compression)
    return tiles_lines(written, sh_degree, tile_size, tile_compression, georef, cfg.data.path,
                       dropped_line(counts[1], counts[0]))


def write_tiles_whole(blocks: Iterable[StandardGaussians], out: Path, tile_size: int, georef: dict | None,
                      tile_compression: str) -> "TilesWritten":
    """:func:`write_tiles` into the folder ``out``, replaced whole (a killed export leaves the one before it); the
    tileset's path in the result is the one in ``out``."""
    with written_whole(out, "a 3D Tiles export", TILESET_NAMES) as work:
        written = write_tiles(blocks, work, tile_size, georef, tile_compression)
    written.path = out / written.path.name
    return written


def tiles_lines(written: "TilesWritten", sh_degree: int, tile_size: int, tile_compression: str, georef: dict | None,
                data_path: str, dropped: str = "") -> list[str]:
    """The lines a 3D Tiles export prints: what it wrote, where it stands on the globe, and what was dropped."""
    lines = [f"exported {written.gaussians} standard 3D Gaussians (SH degree {sh_degree}) of {written.blocks} "
             f"block(s) as {written.tiles} tiles of at most {tile_size} Gaussians in {written.levels} levels to "
             f"{written.path} ({written.tile_bytes / 2**20:.1f} MB of tiles), 3D Tiles 1.1 with glTF "
             f"KHR_gaussian_splatting"
             + (" in SPZ streams (KHR_gaussian_splatting_compression_spz_2)" if tile_compression == "spz" else "")]
    if georef:
        o = georef["origin"]
        lines.append(f"placed on the globe: the scene's origin at latitude {o['lat']:.6f}, longitude {o['lon']:.6f}, "
                     f"{o['alt']:.1f} m (WGS84, from {Path(data_path) / 'georef.json'})")
    else:
        lines.append("not placed on the globe: the scene has no georef.json (mgs sfm writes one from photos with "
                     "GPS), so the tileset is in the scene's own frame")
    return lines + ([dropped] if dropped else [])


def bake_blocks(blocks: list[GaussianScene], cameras: list[Camera], render_cfg: RenderConfig,
                sh_degree: int, desc: str = "tiles") -> Iterator[StandardGaussians]:
    """Each block of ``blocks`` baked in turn (:func:`~momentum_gs.model.standard.bake`), on the CPU, under a
    progress bar named ``desc``; a block without anchors gives no Gaussians. The list is emptied as it goes: a
    block's anchors are let go once it is baked."""
    count = len(blocks)
    for _ in sized(range(count), count, desc, "block", "--tile-size larger or --sh-degree lower"):
        block = blocks.pop(0)
        if block.num_anchors == 0:
            yield _empty(sh_degree)
            continue
        yield bake(block, cameras, render_cfg, degree=sh_degree, show_progress=count == 1).to("cpu")
        del block


def write_tiles(blocks: Iterable[StandardGaussians], out: str | Path, tile_size: int = TILE_SIZE,
                georef: dict | None = None, tile_compression: str = "spz",
                content: Callable[[StandardGaussians, Path, str], object] = save_glb) -> TilesWritten:
    """Write ``blocks`` (an iterable of per-block Gaussians, read once, one block at a time; block ``i`` names
    its tiles ``b<i>...``, an empty block is skipped) as the 3D Tiles tileset ``out/tileset.json`` with its
    tiles ``out/tiles/<name>.glb`` of at most ``tile_size`` Gaussians, each written by ``content(gaussians, path,
    tile_compression)`` as soon as it is final (``tile_compression``: "spz" or "none",
    :func:`momentum_gs.export.tiles.gltf.save_glb`); placed
    on the globe when ``georef`` (``data.georef.read_georef``'s dictionary) is given. See the module notes for
    the tree and the memory it holds."""
    out = Path(out)
    inside(out / TILES_FOLDER, out).mkdir(parents=True, exist_ok=True)  # not a link out of the folder named
    written = TilesWritten(out, 0, 0, 0, 0, 0)

    def done(tile: Tile) -> None:
        path = out / TILES_FOLDER / f"{tile.name}.glb"
        content(tile.gaussians, path, tile_compression)
        _give_back_freed_memory()
        written.tiles += 1
        written.tile_bytes += path.stat().st_size if path.is_file() else 0

    above, b = BlockLevels(tile_size, done), 0
    for gaussians in blocks:  # not enumerate(): its cached tuple would hold a block while the next one is made
        if len(gaussians):
            written.gaussians += len(gaussians)
            written.blocks += 1
            above.add(build_tree(gaussians.to("cpu"), f"b{b}", tile_size, done), b)
        del gaussians  # before the next block is made
        b += 1
    root = above.finish()
    if root is None:
        raise UserError("no block holds a Gaussian; nothing to export")
    written.path = write_tileset(root, out, georef, content=None, compression=tile_compression)
    written.levels = _levels(root)
    return written


class BlockLevels:
    """The levels above the blocks' trees, built as the blocks come. At each level, tiles wait for partners
    until together they hold more Gaussians than a tile may; then they are merged into one tile of the level
    above (two full blocks' roots pair up; small ones gather until they fill a tile), which waits there in turn.
    So each level holds at most a tile's worth of Gaussians and one more tile. ``done(tile)`` writes a tile; a
    block's root is written already when it is added, a tile above once it is named (the top one is ``root``)."""

    def __init__(self, tile_size: int, done: Callable[[Tile], object]):
        self.tile_size, self.done = tile_size, done
        self.levels: list[list[tuple[int, int, Tile]]] = []  # per level: (first block, last block, tile) waiting
        self.unwritten: set[int] = set()  # ids of the tiles above the blocks not yet written

    def add(self, tile: Tile, block: int) -> None:
        """Take block ``block``'s root ``tile`` (written, its content kept) and merge what fills a tile."""
        self._wait(0, (block, block, tile))

    def finish(self) -> Tile | None:
        """The tileset's root (None when no block came). From the lowest level up, what waits is merged into the
        level above when it holds more than a tile's worth, else it joins the level above as it is (no tile above
        the blocks copies its children unmerged); at the top level it is merged into the root."""
        carry: list[tuple[int, int, Tile]] = []
        for level, waiting in enumerate(self.levels):
            entries = waiting + carry  # the blocks in order: what comes up from below came later
            if not any(self.levels[level + 1:]):
                carry = [self._merge(entries, "root")] if len(entries) > 1 else entries
                break
            full = len(entries) > 1 and sum(len(tile.gaussians) for _, _, tile in entries) > self.tile_size
            carry = [self._merge(entries)] if full else entries
        if not carry:
            return None
        root = carry[0][2]
        if id(root) in self.unwritten:
            root.name = "root"
            self._write(root)
        root.gaussians, self.levels = None, []
        return root

    def _wait(self, level: int, entry: tuple[int, int, Tile]) -> None:
        if level == len(self.levels):
            self.levels.append([])
        waiting = self.levels[level]
        waiting.append(entry)
        if len(waiting) > 1 and sum(len(tile.gaussians) for _, _, tile in waiting) > self.tile_size:
            self.levels[level] = []
            self._wait(level + 1, self._merge(waiting))

    def _merge(self, entries: list[tuple[int, int, Tile]], name: str | None = None) -> tuple[int, int, Tile]:
        """The parent of the tiles of ``entries`` (named ``g<first block>-<last block>`` unless ``name``), which
        write their content if it is not written yet and let it go."""
        first, last = entries[0][0], entries[-1][1]
        children = [tile for _, _, tile in entries]
        parent = merge_tiles(children, name or f"g{first}-{last}", self.tile_size)
        for child in children:
            if id(child) in self.unwritten:
                self._write(child)
            child.gaussians = None
        self.unwritten.add(id(parent))
        return first, last, parent

    def _write(self, tile: Tile) -> None:
        self.unwritten.discard(id(tile))
        self.done(tile)


def _empty(sh_degree: int) -> StandardGaussians:
    """No Gaussians, with SH degree ``sh_degree``'s shapes."""
    return StandardGaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0),
                             torch.zeros(0, (sh_degree + 1) ** 2, 3))


def _levels(tile: Tile) -> int:
    """The number of levels of the tree under ``tile``, itself included."""
    return 1 + max((_levels(child) for child in tile.children), default=0)


def _give_back_freed_memory() -> None:
    """Hand the C heap's freed pages back to the system (glibc's ``malloc_trim``; nothing elsewhere), after each
    tile. glibc keeps freed blocks in its heaps, and the merges' arrays, of sizes that change from tile to tile,
    leave holes there that only a trim gives back: without it the export's resident memory grew from block to
    block. The trim costs time, as the next merge faults the pages handed back in again; both are measured in
    docs/benchmarks/export.md."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """The C library's ``malloc_trim``, or None where there is none."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # TypeError: no process handle (Windows)
        return None
