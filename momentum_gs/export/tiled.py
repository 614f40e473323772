"""``mgs export --format 3dtiles``: a run as an OGC 3D Tiles 1.1 tileset with levels of detail, block by block.

Each block is baked on its own (its anchors cropped to its cell, the shared decoder) and cut into a tree of
tiles (:mod:`momentum_gs.export.lod`); its tiles are written as GLB files (glTF ``KHR_gaussian_splatting``, by
default as SPZ streams, which CesiumJS draws: :mod:`momentum_gs.export.gltf`) as soon as its tree is built, then only its root's content is kept, so one block
at a time is in memory. The tileset's root holds the blocks' roots merged, with the blocks as its children, so
the tree follows the partition. With the scene's ``georef.json`` (``mgs sfm`` with GPS photos) the root's
transform puts the scene on the globe (WGS84); without one the tileset stays in the scene's own frame.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.data.georef import read_georef
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.estimate import sized
from momentum_gs.export.bake import bake
from momentum_gs.export.gltf import COMPRESSIONS, save_glb
from momentum_gs.export.lod import Tile, build_tree, merge_tiles
from momentum_gs.export.tileset import write_tileset
from momentum_gs.io.safe_path import inside
from momentum_gs.trained import load_blocks

TILE_SIZE = 32_768  # Gaussians per tile at most


def export_tiles(run_dir: str | Path, out: str | Path, sh_degree: int = 3, tile_size: int = TILE_SIZE,
                 compression: str = "spz") -> list[str]:
    """Write ``out/tileset.json`` and ``out/tiles/*.glb`` of a run, the tiles' Gaussians as one SPZ stream each
    (``compression`` "spz", what CesiumJS draws) or float32 attributes ("none"); returns the lines to print."""
    if tile_size < 1:
        raise UserError(f"--tile-size must be at least 1, got {tile_size}")
    if compression not in COMPRESSIONS:
        raise UserError(f"--tile-compression must be one of {', '.join(COMPRESSIONS)}, got {compression}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the tileset needs a folder (--out)")
    cfg, _, blocks, _ = load_blocks(Path(run_dir))
    cameras = load_scene(cfg.data).train
    georef = read_georef(Path(cfg.data.path))
    inside(out / "tiles", out).mkdir(parents=True, exist_ok=True)  # not a link out of the folder named
    roots, gaussians, tiles = [], 0, 0
    for b in sized(range(len(blocks)), len(blocks), "tiles", "block", "--tile-size larger or --sh-degree lower"):
        if blocks[b].num_anchors == 0:
            continue
        baked = bake(blocks[b], cameras, cfg.render, degree=sh_degree, show_progress=len(blocks) == 1)
        tree = build_tree(baked.to("cpu"), f"b{b}", tile_size)
        gaussians += len(baked)
        tiles += _write_contents(tree, out, compression)
        roots.append(tree)
    if not roots:
        raise UserError("no block of the run holds anchors in its cell; nothing to export")
    root = merge_tiles(roots, "root", tile_size) if len(roots) > 1 else roots[0]
    if len(roots) > 1:
        save_glb(root.gaussians, out / "tiles" / f"{root.name}.glb", compression)
        tiles += 1
    path = write_tileset(root, out, georef, content=None, compression=compression)
    size = sum(p.stat().st_size for p in (out / "tiles").glob("*.glb")) / 2**20
    depth = _levels(root)
    lines = [f"exported {gaussians} standard 3D Gaussians (SH degree {sh_degree}) of {len(roots)} block(s) as "
             f"{tiles} tiles of at most {tile_size} Gaussians in {depth} levels to {path} ({size:.1f} MB of tiles), "
             f"3D Tiles 1.1 with glTF KHR_gaussian_splatting"
             + (" in SPZ streams (KHR_gaussian_splatting_compression_spz_2)" if compression == "spz" else "")]
    if georef:
        o = georef["origin"]
        lines.append(f"placed on the globe: the scene's origin at latitude {o['lat']:.6f}, longitude {o['lon']:.6f}, "
                     f"{o['alt']:.1f} m (WGS84, from {Path(cfg.data.path) / 'georef.json'})")
    else:
        lines.append("not placed on the globe: the scene has no georef.json (mgs sfm writes one from photos with "
                     "GPS), so the tileset is in the scene's own frame")
    return lines


def _levels(tile: Tile) -> int:
    """The number of levels of the tree under ``tile``, itself included."""
    return 1 + max((_levels(child) for child in tile.children), default=0)


def _write_contents(tree: Tile, out: Path, compression: str) -> int:
    """Write every tile of ``tree`` as ``out/tiles/<name>.glb``; keep only the root's content in memory. Returns
    the number of tiles written."""
    count = 0
    for tile in tree.walk():
        save_glb(tile.gaussians, out / "tiles" / f"{tile.name}.glb", compression)
        count += 1
        if tile is not tree:
            tile.gaussians = None
    return count
