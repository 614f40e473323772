"""``mgs render RUN``: a fly-through video of a trained scene along a camera path.

The path is ``training`` (through the training cameras), ``orbit`` (one turn around the scene) or a
nerfstudio camera-path JSON file (:mod:`momentum_gs.eval.camera_path`, :mod:`momentum_gs.eval.camera_path_json`).
Every frame is rendered by the model with the mean appearance code (the same colours all the way) and
encoded as MPEG-4 by OpenCV into a temporary file beside the video, renamed into place at the end, so a
failure leaves nothing half-written. A generated path is also written next to the video as a camera-path
JSON (``flythrough.mp4`` → ``flythrough.json``), to edit and render again with ``--path flythrough.json``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch

from momentum_gs.config import RenderConfig
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.estimate import sized
from momentum_gs.eval.camera_path import ORBIT_FRAMES, CameraPath, orbit_path, through_keys, training_path
from momentum_gs.eval.camera_path_json import read_path_json, write_path_json
from momentum_gs.io.atomic import remove_stale_temporaries, write_failed
from momentum_gs.ranges import MAX_FRAMES
from momentum_gs.trained import load_run

GENERATED = ("training", "orbit")
DEFAULT_FPS = 30.0


@dataclass
class VideoResult:
    """What ``mgs render`` wrote: the video, its frames, size and frame rate, the camera-path JSON written
    beside it (None for a path read from a file), and the rendering speed."""

    video: Path
    frames: int
    width: int
    height: int
    fps: float
    camera_path: Path | None
    render_fps: float

    def summary(self) -> str:
        """The one line ``mgs render`` ends with."""
        written = f"; camera path: {self.camera_path}" if self.camera_path else ""
        return (f"rendered {self.frames} frames at {self.width}x{self.height} ({self.frames / self.fps:.1f} s of "
                f"video at {self.fps:g} fps, {self.render_fps:.1f} frames/s) to {self.video}{written}")


def parse_size(text: str) -> tuple[int, int]:
    """(width, height) from ``"WxH"``; both positive and even (MPEG-4 encoders halve the colour planes)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) <= 0:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT in pixels, e.g. --size 1280x720")
    width, height = int(match[1]), int(match[2])
    if width % 2 or height % 2:
        raise UserError(f"--size {width}x{height}: the video encoder needs an even width and height")
    check_side(width, height)
    return width, height


MAX_SIDE = 8190  # pixels on a side of an MPEG-4 frame (its headers hold 13 bits; the width and height are even)


def check_side(width: int, height: int) -> None:
    """Refuse a frame size the MPEG-4 encoder cannot take, before anything is rendered."""
    if max(width, height) > MAX_SIDE:
        raise UserError(f"frames of {width}x{height}: the MPEG-4 encoder takes at most {MAX_SIDE} pixels a side; "
                        "give a smaller --size")


def even(width: float, height: float) -> tuple[int, int]:
    """The size rounded down to even numbers (at least 2)."""
    return max(2, int(width) // 2 * 2), max(2, int(height) // 2 * 2)


def scene_centre(model) -> np.ndarray:
    """[3] the median of the model's anchor positions, world units."""
    sets = [model.anchors] if hasattr(model, "anchors") else list(model.anchor_sets)
    positions = torch.cat([anchors.positions.detach().cpu() for anchors in sets]).double().numpy()
    if not len(positions):
        raise UserError("the model has no anchors; there is nothing to orbit")
    return np.median(positions, axis=0)


def check_request(path_spec: str, out: Path, frames: int | None, size: str | None, fps: float | None
                  ) -> tuple[CameraPath | None, tuple[int, int] | None]:
    """Check the command's arguments before anything is loaded; returns (the path read from a JSON file, or
    None for a generated one; the requested size or None)."""
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out {out} must end in .mp4")
    if frames is not None and frames < 2:
        raise UserError(f"--frames {frames}: a video needs at least 2 frames")
    if frames is not None and frames > MAX_FRAMES:  # the path's cameras are built before the first frame
        raise UserError(f"--frames {frames}: at most {MAX_FRAMES} frames (an hour at 30 fps) in one video; "
                        "render a longer one in parts")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise UserError(f"--fps {fps}: give a positive frame rate")
    wanted = parse_size(size) if size is not None else None
    if path_spec in GENERATED:
        return None, wanted
    if Path(path_spec).suffix.lower() != ".json":
        raise UserError(f"unknown --path {path_spec!r}: give training, orbit or a camera-path .json file")
    return read_path_json(path_spec), wanted


def build_path(path_spec: str, from_file: CameraPath | None, cfg, model, frames: int | None,
               size: tuple[int, int] | None, fps: float | None) -> CameraPath:
    """The camera path to render: generated from the run's training cameras, or the file's (a smooth path
    through its cameras when ``frames`` differs from its length)."""
    if from_file is not None:
        path = from_file if frames in (None, from_file.num_frames) else through_keys(from_file, frames)
        width, height = size or even(path.width, path.height)
        return replace(path.resized(width, height), fps=fps or path.fps)
    cameras = load_scene(cfg.data, images=False).train
    width, height = size or even(np.median([c.width for c in cameras]), np.median([c.height for c in cameras]))
    if path_spec == "training":
        return training_path(cameras, width, height, frames, fps or DEFAULT_FPS)
    return orbit_path(cameras, scene_centre(model), width, height, frames or ORBIT_FRAMES, fps or DEFAULT_FPS)


@torch.no_grad()
def render_frames(model, path: CameraPath, render_cfg: RenderConfig, timing: list[float]) -> Iterator[np.ndarray]:
    """[H, W, 3] uint8 RGB frames of ``path`` rendered by ``model``, with a progress bar; the seconds each
    render took are appended to ``timing``."""
    model.eval()
    cameras = path.cameras()
    for camera in sized(cameras, len(cameras), "render", "frame", "--frames or --size", dynamic_ncols=True):
        started = time.perf_counter()
        image = model.render(camera, render_cfg, appearance_index=None).output.image
        pixels = image.clamp(0, 1).mul(255).round().byte().cpu().numpy()  # waits for the device
        timing.append(time.perf_counter() - started)
        yield pixels


def write_video(frames: Iterable[np.ndarray], out: Path, fps: float, width: int, height: int) -> Path:
    """Encode RGB ``frames`` ([H, W, 3] uint8) as an MPEG-4 video into a temporary file beside ``out``;
    returns that file, for the caller to rename into place (on failure it is removed)."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}{out.suffix}")  # OpenCV picks the container by suffix
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out.parent, out.name)  # a killed render's half a video
    except OSError as exc:
        raise write_failed(out, exc)
    check_side(width, height)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    try:
        if not writer.isOpened():
            raise UserError(f"cannot write {out}: OpenCV could not open an MPEG-4 writer there")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise UserError(f"cannot write {out}: the encoder wrote nothing (is the disk full?)")
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def render_video(run_dir: str | Path, path_spec: str, out: str | Path, fps: float | None = None,
                 frames: int | None = None, size: str | None = None, device: torch.device | None = None
                 ) -> VideoResult:
    """Render the run's model along a camera path into the MP4 ``out`` (see the module docstring).

    Args:
        path_spec: ``"training"``, ``"orbit"`` or a camera-path JSON file.
        fps: frame rate (default 30, or the file's); frames: frames in the path (default: the path's own);
        size: ``"WxH"`` (default: the training images' size, or the file's, made even); device: where to
        render (default: the run's config).
    """
    out = Path(out)
    from_file, wanted = check_request(path_spec, out, frames, size, fps)
    cfg, model, _ = load_run(Path(run_dir), device)
    path = build_path(path_spec, from_file, cfg, model, frames, wanted, fps)
    timing: list[float] = []
    tmp = write_video(render_frames(model, path, cfg.render, timing), out, path.fps, path.width, path.height)
    path_file = out.with_suffix(".json") if from_file is None else None
    try:
        if path_file is not None:
            write_path_json(path, path_file)
        os.replace(tmp, out)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(out, exc) if isinstance(exc, OSError) else exc
    return VideoResult(out, path.num_frames, path.width, path.height, path.fps, path_file,
                       len(timing) / max(sum(timing), 1e-12))
