"""``mgs sfm``: photos (or a video) to a training scene with COLMAP's structure from motion (pycolmap),
georeferenced in level ENU metres when the photos carry GPS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from momentum_gs.data.sfm.options import (AltitudeMode, EXHAUSTIVE_MAX, EXHAUSTIVE_MAX_GPS, Matcher, SfmOptions)
from momentum_gs.data.sfm.run import run_lines, run_sfm
from momentum_gs.errors import UserError
from momentum_gs.ranges import MAX_WIDTH, Range, add_number

DEFAULT = SfmOptions()
MAX_SIZE = Range(64, MAX_WIDTH, why="a SIFT feature's descriptor spans a few tens of pixels, so below 64 a photo has "
                 "room for almost none; scenes hold images of at most 65536 pixels a side")
VIDEO_FPS = Range(0, 1000, open_low=True, why="above the video's own frame rate every frame is taken, and 1000 is "
                  "beyond any camera's (slow motion films at 960)")
THREADS = Range(-1, 4096, why="-1 is every core (COLMAP reads 0 the same way); 4096 threads are more than any "
                "machine's cores, so more is a typing slip")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs sfm`` (defaults: :class:`~momentum_gs.data.sfm.options.SfmOptions`'s)."""
    parser.add_argument("photos", nargs="?", help="folder of photos (JPEG, PNG, TIFF; subfolders too)")
    parser.add_argument("--out", required=True,
                        help="scene folder to write (images/ + sparse/0, sfm.json, cameras.png)")
    parser.add_argument("--matcher", default=DEFAULT.matcher, choices=get_args(Matcher),
                        help=f"default auto: with GPS exhaustive up to {EXHAUSTIVE_MAX_GPS} photos, then spatial; "
                             f"without, exhaustive up to {EXHAUSTIVE_MAX}, then sequential")
    parser.add_argument("--camera-model", default=DEFAULT.camera_model,
                        help=f"COLMAP camera model (default {DEFAULT.camera_model}; SIMPLE_RADIAL, ...)")
    cams = parser.add_mutually_exclusive_group()
    cams.add_argument("--single-camera", dest="camera_mode", action="store_const", const="single",
                      help="one camera for all photos (default: one per EXIF camera and image size)")
    cams.add_argument("--per-image", dest="camera_mode", action="store_const", const="per-image",
                      help="one camera per photo (zooming lenses)")
    add_number(parser, "--max-size", kind=int, allowed=MAX_SIZE, default=DEFAULT.max_size,
               help=f"longest image side for feature extraction, px (default {DEFAULT.max_size})")
    parser.add_argument("--gps-altitude", default=DEFAULT.gps_altitude, choices=get_args(AltitudeMode),
                        help="the photos' GPS altitude: auto (default) uses it only where it agrees with the level "
                             "the photos show, use trusts it, ignore levels by the photos alone")
    parser.add_argument("--gcp", help="ground control points in OpenDroneMap's gcp_list.txt format (a projection "
                        "line, then 'x y z pixel_x pixel_y image [name]' lines): the scene is placed on them and "
                        "adjusted on them and the photos' GPS together (default: PHOTOS/gcp_list.txt if there is "
                        "one)")
    parser.add_argument("--check", help="check points, in the same format as --gcp: never used in a fit, each "
                        "measured against the result (east, north, up error, RMSE, CE90 and LE90 in sfm.json)")
    parser.add_argument("--adjust-gps", action=argparse.BooleanOptionalAction, default=True,
                        help="without --gcp: adjust the placed scene on its photos and its GPS together, so the GPS "
                        "straightens what the photos allow to bend (default: on; --no-adjust-gps leaves the scene "
                        "as the GPS placed it)")
    parser.add_argument("--keep-largest", action="store_true",
                        help="a capture in disconnected parts: write the largest part (default: refuse)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a scene already in --out, once this run has succeeded (default: refuse)")
    parser.add_argument("--video", help="a video to sample into frames instead of PHOTOS")
    add_number(parser, "--fps", kind=float, allowed=VIDEO_FPS, default=2.0,
               help="frames a second taken from --video (default 2)")
    parser.add_argument("--vocab-tree", help="COLMAP vocabulary tree file, for --matcher vocab (no default)")
    add_number(parser, "--threads", kind=int, allowed=THREADS, default=DEFAULT.threads,
               help="CPU threads for COLMAP (default -1: all)")


def run(args: argparse.Namespace) -> None:
    """Run the SfM and print its report."""
    if (args.photos is None) == (args.video is None):
        raise UserError("give either a folder of photos (mgs sfm PHOTOS --out DATA) or --video FILE")
    opts = SfmOptions(matcher=args.matcher, camera_model=args.camera_model,
                      camera_mode=args.camera_mode or DEFAULT.camera_mode, max_size=args.max_size,
                      vocab_tree=args.vocab_tree, threads=args.threads, gps_altitude=args.gps_altitude,
                      keep_largest=args.keep_largest, overwrite=args.overwrite, gcp=args.gcp,
                      check=args.check, adjust_gps=args.adjust_gps)
    report = run_sfm(Path(args.photos) if args.photos else None, Path(args.out), opts,
                     video=Path(args.video) if args.video else None, fps=args.fps)
    print("\n".join(run_lines(report, Path(args.out))))
