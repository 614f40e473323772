"""``mgs export --format sog-lod``: PlayCanvas's streamed SOG (``lod-meta.json`` and chunks of SOG images) from
the same level-of-detail trees as the 3D Tiles export.

Level 0 is the finest (every leaf of every block's tree); level ``j`` is the cut of each block's tree where the
tiles are ``j`` levels above the leaves (a block whose tree is shallower gives its root), and the coarsest level
is the blocks' roots merged into one tile, so each level covers the whole scene. Each block's levels are written
as standard PLY files as soon as its tree exists (one block in memory at a time); PlayCanvas's
``splat-transform`` then tags each file with its level and writes the streamed format, which it cuts into its own
spatial chunks. ``splat-transform`` reads every level at once, so its memory grows with the scene.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.export.standard_ply import save_standard_ply
from momentum_gs.export.tiles.blocks import bake_blocks
from momentum_gs.export.tiles.lod import TILE_SIZE, Tile, build_tree, check_tile_count, concatenate, merge_tiles
from momentum_gs.io.folders import written_whole
from momentum_gs.io.splat_transform import run_splat_transform, splat_transform_command
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.trained import load_blocks


def level_cuts(tree: Tile) -> list[StandardGaussians]:
    """The Gaussians of ``tree`` level by level, finest first: entry ``j`` is the content of the tiles ``j``
    levels above the leaves (a leaf nearer the root than ``j`` is taken through its highest ancestor within
    ``j``), so each entry covers everything the tree covers. The tree's tiles must still hold their content."""
    heights: dict[int, int] = {}

    def height(tile: Tile) -> int:
        heights[id(tile)] = 1 + max((height(c) for c in tile.children), default=-1)
        return heights[id(tile)]

    levels = [[] for _ in range(height(tree) + 1)]

    def cut(tile: Tile, parent_height: int) -> None:
        for j in range(heights[id(tile)], parent_height):
            levels[j].append(tile.gaussians)
        for child in tile.children:
            cut(child, heights[id(tile)])

    cut(tree, len(levels))
    return [concatenate(parts) for parts in levels]


class LevelFiles:
    """The standard PLY files of every block's levels, in a working folder, and the ``splat-transform`` arguments
    that tag each with its level."""

    def __init__(self, folder: Path, tile_size: int):
        self.folder, self.tile_size = folder, tile_size
        self.files: list[tuple[Path, int]] = []
        self.roots: list[Tile] = []  # each block's root (its content only), for the coarsest level
        self.depth = 0  # levels of the deepest block

    def add_block(self, tree: Tile, name: str) -> None:
        """Write ``tree``'s levels as ``<name>-l<j>.ply``; keep only its root's content."""
        cuts = level_cuts(tree)
        for j, gaussians in enumerate(cuts):
            self.files.append((save_standard_ply(gaussians, self.folder / f"{name}-l{j}.ply"), j))
        self.roots.append(Tile(tree.gaussians, tree.box, tree.geometric_error, tree.name))
        self.depth = max(self.depth, len(cuts))

    def arguments(self) -> list[str]:
        """``splat-transform``'s inputs: each file followed by ``-l`` and its level; a block shallower than the
        deepest repeats its root for the levels it lacks; more than one block adds their merged roots on top."""
        last = {}
        for path, level in self.files:
            block = path.name.rsplit("-l", 1)[0]
            last[block] = max(last.get(block, (None, -1)), (path, level), key=lambda item: item[1])
        tagged = list(self.files)
        for path, level in last.values():
            tagged += [(path, j) for j in range(level + 1, self.depth)]
        if len(self.roots) > 1:
            top = merge_tiles(self.roots, "root", self.tile_size)
            tagged.append((save_standard_ply(top.gaussians, self.folder / "root.ply"), self.depth))
        return [item for path, level in tagged for item in (str(path), "-l", str(level))]

    @property
    def levels(self) -> int:
        """The number of levels written (the merged roots' included)."""
        return self.depth + (len(self.roots) > 1)


LEVELS_FOLDER = ".levels"  # the levels' PLY files, inside the folder being made


def write_streamed_sog(command: list[str], trees, out: Path, tile_size: int) -> tuple[Path, int]:
    """Write ``out/lod-meta.json`` and its chunks from the block ``trees`` (an iterable of (tree, name), each
    tree still holding its content). The format is made in a folder beside ``out`` and moved into place when
    complete (:func:`~momentum_gs.io.folders.written_whole`): a failed or killed conversion leaves ``out`` as it
    was. Returns (the meta file, the levels)."""
    with written_whole(out, "a streamed SOG export", {"lod-meta.json"}) as made:
        levels = made / LEVELS_FOLDER  # splat-transform's input, removed once it has read it
        levels.mkdir()
        files = LevelFiles(levels, tile_size)
        for tree, name in trees:
            files.add_block(tree, name)
        if not files.roots:
            raise UserError("no block of the run holds anchors in its cell; nothing to export")
        run_splat_transform(command, files.arguments(), made / "lod-meta.json")
        shutil.rmtree(levels)
    return out / "lod-meta.json", files.levels


def export_sog_lod(run_dir: str | Path, out: str | Path, sh_degree: int = 0, tile_size: int = TILE_SIZE) -> list[str]:
    """``mgs export RUN --format sog-lod``: ``out/lod-meta.json`` and its chunks; returns the lines to print."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the streamed SOG needs a folder (--out)")
    command = splat_transform_command("--format sog-lod")  # before baking: a missing tool is said at once
    cfg, _, blocks, _ = load_blocks(Path(run_dir))
    check_tile_count([block.num_anchors * block.anchors.n_offsets for block in blocks], tile_size)
    cameras = load_scene(cfg.data).train
    count, total = [0], len(blocks)

    def trees():
        for b, baked in enumerate(bake_blocks(blocks, cameras, cfg.render, sh_degree, "levels")):
            if len(baked):
                count[0] += len(baked)
                yield build_tree(baked, f"b{b}", tile_size), f"b{b}"

    meta, levels = write_streamed_sog(command, trees(), out, tile_size)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    return [f"exported {count[0]} standard 3D Gaussians (SH degree {sh_degree}) of {total} block(s) in "
            f"{levels} levels of detail to {meta} ({size:.1f} MB), PlayCanvas's streamed SOG"]
