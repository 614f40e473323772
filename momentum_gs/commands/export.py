"""``mgs export``: the trained scene as standard 3D Gaussians (PLY, .splat, .spz, SOG, a web page) or in the
Scaffold-GS layout."""

from __future__ import annotations

import argparse

from momentum_gs.commands.common import use_run_settings
from momentum_gs.export.refine import REFINE_BUDGET_CPU
from momentum_gs.export.run import FORMATS, export_run
from momentum_gs.export.tiles.blocks import TILE_SIZE
from momentum_gs.export.tiles.gltf import COMPRESSIONS
from momentum_gs.ranges import MAX_STEPS, TILE, Range, add_number

REFINE_STEPS = Range(0, MAX_STEPS, why="0 is the bake alone, and 10^9 steps take 11 days at 1000 steps a second, so "
                     "more is a typing slip")
REFINE_SECONDS = Range(0, why="seconds, 0 for no limit: a time cannot be negative")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs export``."""
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/export; the Scaffold-GS layout goes to "
                                      "RUN_DIR/export/scaffold)")
    parser.add_argument("--format", choices=FORMATS, default="ply",
                        help="ply: standard 3D Gaussians with SH colours, baked from the training views (what "
                             "3DGS viewers read); splat: the 32-byte-per-Gaussian web-viewer file (colour "
                             "without view dependence); spz: the ply's Gaussians quantised and gzipped (several times "
                             "smaller, read by web viewers); html: scene.html, a viewer page with the scene "
                             "inside that opens in a browser (no network needed); sog: PlayCanvas SOG, made by "
                             "the splat-transform command (Node.js); sog-lod: PlayCanvas's streamed SOG "
                             "(lod-meta.json and chunks) with levels of detail block by block, also through "
                             "splat-transform; 3dtiles: an OGC 3D Tiles 1.1 tileset (tileset.json and glTF "
                             "KHR_gaussian_splatting tiles) with levels of detail, block by block, placed on the "
                             "globe when the scene has a georef.json; scaffold: the anchor PLY + decoder.pt")
    parser.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3),
                        help="SH degree of --format ply, spz and 3dtiles (default 3) and sog and sog-lod (default "
                             "0: splat-transform compresses higher degrees slowly on a CPU); splat and html keep "
                             "degree 0")
    add_number(parser, "--refine", kind=int, allowed=REFINE_STEPS, default=None, metavar="STEPS",
               help="train the baked Gaussians this many steps against the photos and the model's renders "
                    "(default 500, cut to --refine-budget; 0: the bake alone, in seconds; 3dtiles and sog-lod: 0, "
                    "the only choice)")
    add_number(parser, "--refine-budget", kind=float, allowed=REFINE_SECONDS, default=None, metavar="SECONDS",
               help="cut the refinement to the steps that fit in this time, measured on its first steps "
                    f"(default {REFINE_BUDGET_CPU:.0f} on a CPU, no limit on a GPU; 0: no limit)")
    add_number(parser, "--tile-size", kind=int, allowed=TILE, default=TILE_SIZE, metavar="GAUSSIANS",
               help=f"3dtiles: Gaussians per tile at most, sog-lod: per finest piece (default {TILE_SIZE}); the "
                    "coarser levels have as many")
    parser.add_argument("--tile-compression", choices=COMPRESSIONS, default="spz",
                        help="3dtiles: each tile's Gaussians as one SPZ stream (default; glTF "
                             "KHR_gaussian_splatting_compression_spz_2, several times smaller, what CesiumJS draws "
                             "as splats) or as float32 attributes (none: exact, but CesiumJS cannot draw them)")


def run(args: argparse.Namespace) -> None:
    """Export, and print what was written."""
    use_run_settings(args.run_dir)
    refine = args.refine if args.refine is not None else (0 if args.format in ("3dtiles", "sog-lod") else 500)
    print("\n".join(export_run(args.run_dir, args.format, args.out, args.sh_degree, refine, args.refine_budget,
                               args.tile_size, args.tile_compression)))
