"""``mgs render``: a fly-through video (MP4) of a trained run along a camera path."""

from __future__ import annotations

import argparse

from momentum_gs.commands.common import add_device, device_of, use_run_settings
from momentum_gs.eval.video import render_video
from momentum_gs.ranges import MAX_FRAMES, Range, add_number

VIDEO_FPS = Range(0, 1000, open_low=True, why="a frame must last a positive time, and no screen shows 1000 frames a "
                  "second: more is a typing slip")
FRAMES = Range(2, MAX_FRAMES, why="a path needs a first and a last frame; at most an hour of video at 30 fps, as its "
               "cameras are all made before rendering")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs render``."""
    parser.add_argument("run_dir")
    parser.add_argument("--path", required=True, metavar="training|orbit|FILE.json",
                        help="training: through the training cameras; orbit: one turn around the scene; or a "
                             "nerfstudio camera-path JSON in the scene's own frame (see docs/render.md)")
    parser.add_argument("--out", required=True, help="the video, .mp4; a generated path is also written beside it "
                                                     "(.json), to edit and pass back as --path")
    add_number(parser, "--fps", kind=float, allowed=VIDEO_FPS,
               help="frames per second (default 30, or the file's)")
    add_number(parser, "--frames", kind=int, allowed=FRAMES,
               help="frames in all (default: 10 per training camera up to 900; 240 for orbit; the file's)")
    parser.add_argument("--size", metavar="WxH", help="frame size, even numbers (default: the training images', "
                                                      "or the file's)")
    add_device(parser)


def run(args: argparse.Namespace) -> None:
    """Render the video and print where it went."""
    use_run_settings(args.run_dir, device_of(args))
    result = render_video(args.run_dir, args.path, args.out, fps=args.fps, frames=args.frames, size=args.size,
                          device=device_of(args))
    print(result.summary())
