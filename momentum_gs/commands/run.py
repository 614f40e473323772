"""``mgs run``: photos to a site in one command: sfm, training (to a time budget), evaluation, one bake shared by
the 3D Tiles, the web page and the PLY, and ``SITE/index.html`` (:mod:`momentum_gs.site.stages`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from momentum_gs.commands.train import DURATION
from momentum_gs.errors import UserError
from momentum_gs.site.folder import Site
from momentum_gs.site.stages import MAX_AUTO_BLOCKS, STAGES, run_stages
from momentum_gs.train.plan import duration


def _blocks(text: str) -> str:
    if text == "auto" or (text.isdigit() and 1 <= int(text) <= 1024):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: give auto or a number of blocks from 1 to 1024")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs run``."""
    parser.add_argument("photos", help="folder of photos (JPEG, PNG, TIFF; with GPS in their EXIF the site is placed "
                                       "on the globe)")
    parser.add_argument("--out", required=True, help="the site's folder: scene/, run/, export/, index.html")
    parser.add_argument("--time", type=DURATION, metavar="DURATION",
                        help="the training's budget (30m, 2h, 1h30m; s for seconds): its steps are fitted to it "
                             "(default: the config's steps, with the plan saying how long they take)")
    parser.add_argument("--blocks", type=_blocks, default="auto",
                        help=f"blocks the scene is trained in: auto (default: sized from the photos and the "
                             f"capture's extent, at most {MAX_AUTO_BLOCKS}) or a number")
    parser.add_argument("--gcp", type=Path, help="ground control points (OpenDroneMap's gcp_list.txt, as mgs sfm "
                        "--gcp): the site is placed and adjusted on them (default: PHOTOS/gcp_list.txt if there "
                        "is one)")
    parser.add_argument("--check", type=Path, help="check points in the same format: never used in a fit; their "
                        "errors, RMSE, CE90 and LE90 go into the scene's sfm.json and the site's page")
    parser.add_argument("--from", dest="first", choices=STAGES,
                        help="redo this stage and the ones after it (default: only the stages not done yet)")


def run(args: argparse.Namespace) -> None:
    """Run the stages not done yet and print a summary."""
    photos = Path(args.photos)
    if not photos.is_dir():
        raise UserError(f"{photos} is not a folder of photos")
    started = time.perf_counter()
    site = Site(Path(args.out))
    for listed in (args.gcp, args.check):  # before any work
        if listed is not None and not listed.is_file():
            raise UserError(f"{listed} is not a file; give a gcp_list.txt (a projection line, then 'x y z pixel_x "
                            "pixel_y image [name]' lines)")
    run_stages(photos, site, args.time, args.blocks, args.first, gcp=args.gcp, check=args.check)
    print(f"site done in {duration(time.perf_counter() - started)}: {site.page} (python -m http.server -d "
          f"{site.root} 8000, then open http://localhost:8000/)")
