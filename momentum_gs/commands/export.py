"""``mgs export``: the trained scene in a format of :data:`~momentum_gs.export.formats.FORMATS` (standard 3D
Gaussians as PLY, .splat, .spz, SOG or a web page, levels of detail in tiles, or the Scaffold-GS layout); the
choices, defaults and most of the help come from that table."""

from __future__ import annotations

import argparse

from momentum_gs.commands.common import argument_type, use_run_settings
from momentum_gs.export.formats import FORMATS, REFINE_STEPS
from momentum_gs.export.refine import REFINE_BUDGET_CPU
from momentum_gs.export.shared import export_formats, parse_formats
from momentum_gs.export.tiles.gltf import COMPRESSIONS
from momentum_gs.export.tiles.lod import TILE_SIZE
from momentum_gs.ranges import MAX_STEPS, TILE, Range, add_number

STEPS = Range(0, MAX_STEPS, why="0 is the bake alone, and 10^9 steps take 11 days at 1000 steps a second, so more "
              "is a typing slip")
REFINE_SECONDS = Range(0, why="seconds, 0 for no limit: a time cannot be negative")


def _names(test) -> str:
    """The formats for which ``test(format)`` holds, as "a, b and c"."""
    names = [name for name, spec in FORMATS.items() if test(spec)]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def format_help() -> str:
    """--format's help: each format, what it writes and what it is (:data:`FORMATS`)."""
    return "; ".join(f"{name}: {spec.output}, {spec.what}" + (" (through splat-transform, Node.js)"
                                                              if spec.splat_transform else "")
                     for name, spec in FORMATS.items())


def sh_degree_help() -> str:
    """--sh-degree's help: each format's default degree, and those that hold one degree only (:data:`FORMATS`)."""
    def grouped(chosen: bool, words: str) -> str:
        degrees = sorted({s.sh_degree for s in FORMATS.values() if s.sh_choice == chosen and s.sh_degree is not None})
        return ", ".join(words.format(degree=d, names=_names(lambda s: s.sh_choice == chosen and s.sh_degree == d))
                         for d in reversed(degrees))

    return (f"SH degree of the baked Gaussians (default {grouped(True, '{degree} for {names}')}); "
            f"{grouped(False, '{names} hold degree {degree} only')}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs export``."""
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/export; "
                                      f"{_names(lambda s: s.folder)} go to RUN_DIR/export/FORMAT; given, one of "
                                      "them alone goes to --out itself, several to --out/FORMAT)")
    parser.add_argument("--format", type=argument_type(parse_formats), default=["ply"],
                        metavar="FORMAT[,FORMAT...]",
                        help=f"what is written: {format_help()}. Several, separated by commas (3dtiles,html,ply), "
                             "share one bake")
    parser.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3), help=sh_degree_help())
    add_number(parser, "--refine", dest="refine_steps", kind=int, allowed=STEPS, default=None, metavar="STEPS",
               help="train the baked Gaussians this many steps against the photos and the model's renders "
                    f"(default {REFINE_STEPS}, cut to --refine-budget; 0: the bake alone, in seconds; "
                    f"{_names(lambda s: s.refine_steps is None)}: 0, the only choice)")
    add_number(parser, "--refine-budget", kind=float, allowed=REFINE_SECONDS, default=None, metavar="SECONDS",
               help="cut the refinement to the steps that fit in this time, measured on its first steps "
                    f"(default {REFINE_BUDGET_CPU:.0f} on a CPU, no limit on a GPU; 0: no limit)")
    add_number(parser, "--tile-size", kind=int, allowed=TILE, default=TILE_SIZE, metavar="GAUSSIANS",
               help=f"3dtiles: Gaussians per tile at most, sog-lod: per finest piece (default {TILE_SIZE}); the "
                    "coarser levels have as many")
    parser.add_argument("--keep-floaters", action="store_true",
                        help="keep the Gaussians far outside what the photos saw (under the ground, beyond the "
                             "capture), which an export drops by default and counts")
    parser.add_argument("--tile-compression", choices=COMPRESSIONS, default="spz",
                        help="3dtiles: each tile's Gaussians as one SPZ stream (default; glTF "
                             "KHR_gaussian_splatting_compression_spz_2, several times smaller, what CesiumJS draws "
                             "as splats) or as float32 attributes (none: exact, but CesiumJS cannot draw them)")


def run(args: argparse.Namespace) -> None:
    """Export, and print what was written."""
    use_run_settings(args.run_dir)
    print("\n".join(export_formats(args.run_dir, args.format, out=args.out, sh_degree=args.sh_degree,
                                   refine_steps=args.refine_steps, refine_budget=args.refine_budget,
                                   tile_size=args.tile_size, tile_compression=args.tile_compression,
                                   keep_floaters=args.keep_floaters)))
