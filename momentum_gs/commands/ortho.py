"""``mgs ortho``: a true orthophoto and a surface model (DSM) of a trained run, as GeoTIFFs."""

from __future__ import annotations

import argparse
from pathlib import Path

from momentum_gs.commands.common import use_run_settings
from momentum_gs.maps.despike import WINDOW
from momentum_gs.maps.guide import WINDOW as GUIDE_WINDOW
from momentum_gs.maps.make import make_maps, summary_lines
from momentum_gs.maps.ortho import DEPTHS
from momentum_gs.ranges import DESPIKE, LENGTH, add_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs ortho``."""
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="the folder of orthophoto.tif, dsm.tif, dsm_spread.tif, dsm_support.tif, "
                                      "orthophoto.png and maps.json (default RUN/maps; an earlier one there is "
                                      "replaced whole)")
    add_number(parser, "--gsd", kind=float, allowed=LENGTH,
               help="pixel size, metres in a georeferenced scene (default: the photos' ground sampling distance "
                    "at the training size)")
    parser.add_argument("--gaussians", metavar="PLY",
                        help="map this standard 3DGS PLY of the run (mgs export's point_cloud.ply, refined) instead "
                             "of baking the run again")
    parser.add_argument("--depth", choices=DEPTHS, default="median",
                        help="the DSM from the depth where the view from above turns opaque (median, default: a "
                             "roof or the ground, as mgs mesh fuses) or from the expected depth (mean: blends "
                             "across roof edges and with faint Gaussians above the surface)")
    parser.add_argument("--no-spread", dest="spread", action="store_false",
                        help="leave out dsm_spread.tif and dsm_support.tif, the DSM's spread over the training "
                             "photos and the photos that see each height (each photo is rendered three times for "
                             "them)")
    add_number(parser, "--despike", kind=int, allowed=DESPIKE, default=WINDOW, metavar="PIXELS",
               help="a DSM height more than 3 pixels' size off the median of the PIXELS × PIXELS around it takes "
                    "that median: spikes out, steps kept, features under about 0.7 × PIXELS across flattened "
                    f"(default {WINDOW}; 0 keeps every height)")
    parser.add_argument("--no-guide", dest="guide", action="store_false",
                        help="keep the DSM's heights as the despike leaves them: by default each then takes the "
                             f"median of the {GUIDE_WINDOW} × {GUIDE_WINDOW} pixels around it, weighted by how alike "
                             "their colours in the orthophoto are and how well the photos agree on them (needs the "
                             "spread)")


def run(args: argparse.Namespace) -> None:
    """Make the maps and print the summary."""
    use_run_settings(args.run_dir)
    summary = make_maps(Path(args.run_dir), args.out, args.gsd, depth=args.depth, gaussians=args.gaussians,
                        spread=args.spread, despike_window=args.despike, guide=args.guide)
    print("\n".join(summary_lines(summary)))
