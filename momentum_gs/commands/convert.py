"""``mgs convert {matrixcity,mill19,downsample}``: bring a public dataset into the train/ + val/ COLMAP layout,
check it, or pre-build its downsampled images."""

from __future__ import annotations

import argparse

from momentum_gs.data.convert import check_mill19, downsample, matrixcity_to_colmap, prepare_mill19
from momentum_gs.ranges import COORDINATE, DOWNSAMPLE, FIT_WIDTH, FLOAT32_MAX, SEED, Range, add_number

GROUND_POINTS = Range(1, 10**9, why="at least one point; 10^9 take 24 GB as float64 positions, more than a scene "
                      "needs to seed its anchors")
UP = Range(-FLOAT32_MAX, FLOAT32_MAX, why="only the direction counts (it is normalised), so a component "
           "beyond float32's largest number (3.4e38) is a typing slip")
SCALE = Range(0, FLOAT32_MAX, open_low=True, why="a factor on every position: 0 folds the scene into one point, and "
              "beyond float32's largest number (3.4e38) a position of 1 leaves float32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The kinds of ``mgs convert`` and their options."""
    kinds = parser.add_subparsers(dest="convert_kind", required=True)
    mc = kinds.add_parser("matrixcity", help="MatrixCity transforms.json (NeRF convention) to COLMAP")
    mc.add_argument("--train", nargs="+", required=True, metavar="JSON", help="training transforms files")
    mc.add_argument("--test", nargs="+", required=True, metavar="JSON", help="test transforms files (become val/)")
    mc.add_argument("--out", required=True, help="output scene folder (gets train/ and val/)")
    mc.add_argument("--images", nargs="+", metavar="DIR", help="folders holding the images (e.g. aerial/train "
                    "aerial/test); each JSON's folder is tried last")
    mc.add_argument("--points", help="initial points in the same frame: .ply or COLMAP model folder")
    add_number(mc, "--num-points", kind=int, allowed=GROUND_POINTS, default=100_000,
               help="random ground points when --points is not given")
    add_number(mc, "--up", kind=float, allowed=UP, nargs=3, default=(0.0, 0.0, 1.0), metavar=("X", "Y", "Z"),
               help="world up")
    add_number(mc, "--ground-height", kind=float, allowed=COORDINATE, default=0.0,
               help="ground height along --up (JSON units)")
    add_number(mc, "--scale", kind=float, allowed=SCALE, default=1.0, help="multiply positions by this")
    mc.add_argument("--sequential-names", action="store_true", help="name images 0000.png... (CityGaussian's names)")
    mc.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    add_number(mc, "--seed", kind=int, allowed=SEED, default=0)
    mill = kinds.add_parser("mill19", help="check or build the train/ + val/ layout (Mill-19, UrbanScene3D)")
    mill.add_argument("src", help="a *-pixsfm folder (train/ + val/), or images/ + sparse/0 with --val-list")
    mill.add_argument("--out", help="write the layout here (default: fix SRC in place)")
    mill.add_argument("--colmap", help="folder with train/ and val/ COLMAP models (CityGaussian's "
                      "colmap_results/<scene>)")
    mill.add_argument("--val-list", help="text file of held-out image names, one a line")
    mill.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    mill.add_argument("--check", action="store_true", help="only check SRC")
    down = kinds.add_parser("downsample", help="pre-build the images_<N> cache that training reads")
    down.add_argument("scene")
    add_number(down, "--factor", kind=int, allowed=DOWNSAMPLE, default=4,
               help="integer factor (data.downsample)")
    add_number(down, "--max-width", kind=int, allowed=FIT_WIDTH, default=0,
               help="fit this width instead (data.max_width)")


def run(args: argparse.Namespace) -> None:
    """``mgs convert ...``: convert, check or downsample, and print what was done."""
    if args.convert_kind == "matrixcity":
        counts = matrixcity_to_colmap({"train": args.train, "val": args.test}, args.images, args.out,
                                      points=args.points, num_points=args.num_points, up=args.up,
                                      ground_height=args.ground_height, scale=args.scale,
                                      sequential_names=args.sequential_names, copy=args.copy, seed=args.seed)
        print(f"{counts['train']} training and {counts['val']} test views, {counts['points']} points -> {args.out}")
        if counts["rescaled"]:
            print(f"note: {counts['rescaled']} poses had a scaled rotation; the scale was divided out and the "
                  "positions kept as given (use --scale to change units)")
    elif args.convert_kind == "mill19":
        if args.check:
            counts = check_mill19(args.src)
        else:
            counts = prepare_mill19(args.src, args.out, args.colmap, args.val_list, args.copy)
        print(f"{args.out or args.src}: {counts['train']} training and {counts['val']} validation images, layout ok")
    else:
        for folder in downsample(args.scene, args.factor, args.max_width):
            print(folder)
