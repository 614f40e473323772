"""Frames per second of the live viewer (``mgs view``) and its time to the first frame.

    python scripts/bench_view.py RUN [--sizes 640x480 1280x720] [--device cpu] [--rounds 2]
    python scripts/bench_view.py RUN --first-frame      # needs Chromium

The first form renders the viewer's frames as its server does (``momentum_gs.view.frames.render_frame``, all
blocks, the mean appearance code, then the image encoding viser sends: PNG for a resting camera's frame, JPEG
for the small frame while the camera moves) from every training camera's pose with the canvas size asked
for, and prints frames per second. What the browser takes to show a frame is not included.

The second starts ``mgs view RUN`` as a user does, opens the page in headless Chromium as soon as the address
is printed, and prints the seconds from the command's start to the first full frame sent.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.render.kernels import describe_cpu, kernels_in_use  # noqa: E402
from momentum_gs.view.frames import camera_pose, frame_size, render_frame, viewer_camera  # noqa: E402
from momentum_gs.view.server import PREVIEW_PIXELS  # noqa: E402
from momentum_gs.view.sources import RunSource  # noqa: E402


def frames_per_second(source: RunSource, width: int, height: int, preview: bool, rounds: int) -> tuple[float, int]:
    """(frames per second, mean Gaussians drawn) over ``rounds`` passes through the training cameras' poses."""
    size = frame_size(width, height, PREVIEW_PIXELS) if preview else (width, height)
    cameras = []
    for camera in source.cameras:
        position, wxyz, fov, _ = camera_pose(camera)
        cameras.append(viewer_camera(position, wxyz, fov, *size).to(source.device))
    blocks = tuple(range(source.num_blocks))
    render_frame(source.parts(blocks), source.appearance, cameras[0], source.cfg.render)  # warm-up
    drawn, started = [], time.perf_counter()
    for _ in range(rounds):
        for camera in cameras:
            image, gaussians, _ = render_frame(source.parts(blocks), source.appearance, camera, source.cfg.render)
            ok, _ = cv2.imencode(".jpg" if preview else ".png", image[..., ::-1],
                                 [cv2.IMWRITE_JPEG_QUALITY, 85] if preview else [])
            assert ok
            drawn.append(gaussians)
    return len(drawn) / (time.perf_counter() - started), int(np.mean(drawn))


def first_frame(run: str, port: int) -> tuple[float, str]:
    """(seconds from starting ``mgs view RUN`` to its first full frame with headless Chromium on the page, the
    line saying how long the CPU kernels took to be ready)."""
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        raise SystemExit("--first-frame needs Chromium")
    started = time.perf_counter()
    view = subprocess.Popen([sys.executable, "-m", "momentum_gs.cli", "view", run, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    browser = None
    try:
        build = ""
        for line in view.stdout:
            if line.startswith("kernels:"):
                build = line.strip()
            if "Ctrl-C to stop" in line:
                break
        profile = tempfile.mkdtemp()
        browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
                                    "--enable-unsafe-swiftshader", f"--user-data-dir={profile}",
                                    "--window-size=640,480",
                                    "--remote-debugging-port=0", f"http://127.0.0.1:{port}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for line in view.stderr:
            if "first frame" in line:
                return time.perf_counter() - started, build
        raise SystemExit(f"mgs view ended without a frame: {line.strip()}")
    finally:
        if browser is not None:
            browser.kill()
        view.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--first-frame", action="store_true")
    parser.add_argument("--port", type=int, default=8093)
    args = parser.parse_args()
    if args.first_frame:
        seconds, build = first_frame(args.run, args.port)
        print(f"first frame {seconds:.1f} s after starting mgs view {args.run} ({build})")
        return
    device = torch.device(args.device)
    source = RunSource(args.run, device)
    print(f"{args.run}: {source.num_blocks} block(s), {sum(a.num_anchors for a in source.anchors)} anchors, "
          f"{len(source.cameras)} camera poses; {describe_cpu() if device.type == 'cpu' else device}; "
          f"{kernels_in_use(device)}; {torch.get_num_threads()} thread(s)")
    print("| canvas | full frame (PNG) FPS | Gaussians | moving-camera frame (JPEG) | FPS |")
    print("|---|---:|---:|---|---:|")
    for text in args.sizes:
        width, height = (int(v) for v in text.lower().split("x"))
        full, drawn = frames_per_second(source, width, height, False, args.rounds)
        preview, _ = frames_per_second(source, width, height, True, args.rounds)
        small = "x".join(map(str, frame_size(width, height, PREVIEW_PIXELS)))
        print(f"| {width}x{height} | {full:.1f} | {drawn} | {small} | {preview:.1f} |", flush=True)


if __name__ == "__main__":
    main()
