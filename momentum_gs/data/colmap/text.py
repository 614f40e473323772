"""COLMAP's text model files (``cameras.txt``, ``images.txt``, ``points3D.txt``), read and written."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from momentum_gs.data.colmap.binary import POINT_RECORD, add_record, file_point_ids, point_records
from momentum_gs.data.colmap.model import ColmapCamera, ColmapImage, ColmapModel, check_camera
from momentum_gs.errors import DataWarning, UserError

_BAD_LINE = "{} line {} is corrupt: expected {}"
# COLMAP's ids: camera_t and image_t are 32-bit, point3D_t 64-bit, all unsigned; a keypoint's point is -1 or an id.
_ID32 = (0, 2**32)


def _whole(text: str, low: int, high: int) -> int:
    """``int(text)`` when it lies in [low, high); ValueError otherwise."""
    value = int(text)
    if not low <= value < high:
        raise ValueError(text)
    return value


def _text_records(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line of a text model, comments dropped; blank lines are kept. One at a time:
    a list of pairs would take some 100 bytes per line, of what may be a blank line of 1 byte."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file (corrupt, or a binary model named .txt?)")
    return ((i, line) for i, line in enumerate(lines, 1) if not line.lstrip().startswith("#"))


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    """The cameras of ``cameras.txt`` by id."""
    cameras = {}
    for lineno, line in (r for r in _text_records(path) if r[1].strip()):
        try:
            f = line.split()
            cam = ColmapCamera(_whole(f[0], *_ID32), f[1], _whole(f[2], 0, 2**64), _whole(f[3], 0, 2**64),
                               np.array(f[4:], dtype=np.float64))
        except (ValueError, IndexError, OverflowError):
            raise UserError(_BAD_LINE.format(path, lineno, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[] (a 32-bit id, "
                                             "whole sizes)"))
        check_camera(cam.id, cam.model, len(cam.params), f"{path} line {lineno}")
        add_record(cameras, cam.id, cam, "camera", path)
    return cameras


def read_images_txt(path: Path, keypoints: bool) -> dict[int, ColmapImage]:
    """The images of ``images.txt`` by id, with their keypoints when ``keypoints``."""
    records, images = iter(_text_records(path)), {}
    for lineno, line in records:
        if not line.strip():
            continue
        try:
            f = line.split(maxsplit=9)  # the name is the rest of the line and may hold spaces
            pose = np.array(f[1:8], dtype=np.float64)
            image = ColmapImage(_whole(f[0], *_ID32), pose[:4], pose[4:7], _whole(f[8], *_ID32), f[9].strip())
        except (ValueError, IndexError):
            raise UserError(_BAD_LINE.format(path, lineno, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"))
        lineno, keypoint_line = next(records, (lineno + 1, ""))  # always present, blank without keypoints
        try:
            kps = np.array(keypoint_line.split(), dtype=np.float64).reshape(-1, 3)
            ids = kps[:, 2]
            if not ((ids >= -1) & (ids < 2.0**63) & (ids == np.round(ids))).all():  # NaN fails too
                raise ValueError
        except ValueError:
            raise UserError(_BAD_LINE.format(path, lineno, "X Y POINT3D_ID triples, the id -1 or a point's (or a "
                                             "blank line)"))
        if keypoints:
            image.xys, image.point3d_ids = kps[:, :2], kps[:, 2].astype(np.int64)
        add_record(images, image.id, image, "image", path)
    return images


def read_points_txt(path: Path) -> np.ndarray:
    """The [P] point records (``POINT_RECORD``) of ``points3D.txt``; tracks are skipped."""
    rows = []
    for lineno, line in (r for r in _text_records(path) if r[1].strip()):
        f = line.split()
        try:
            if len(f) < 8 or len(f) % 2:
                raise ValueError
            rgb = (_whole(v, -2**31, 2**31) for v in f[4:7])
            row = (_whole(f[0], 0, 2**64), *map(float, f[1:4]), *rgb, float(f[7]), (len(f) - 8) // 2)
        except ValueError:
            raise UserError(_BAD_LINE.format(path, lineno, "POINT3D_ID X Y Z R G B ERROR TRACK[] (ids from 0 to "
                                             "2^64 - 1, colours whole numbers)"))
        rows.append(row)
    out, table = np.empty(len(rows), POINT_RECORD), np.array(rows, dtype=np.float64).reshape(-1, 9)
    rgb = table[:, 4:7]
    outside = ((rgb < 0) | (rgb > 255)).any(axis=1)
    if outside.any():  # a cast to uint8 would wrap them (300 -> 44)
        warnings.warn(f"{path}: {int(outside.sum())} points have colours outside 0-255 (from {rgb.min():g} to "
                      f"{rgb.max():g}); COLMAP's colours are 8-bit, so they were clipped. If the file holds 16-bit "
                      "colours, divide them by 257", DataWarning, stacklevel=2)
        rgb = np.clip(rgb, 0, 255)
    out["id"], out["xyz"], out["rgb"] = [int(r[0]) for r in rows], table[:, 1:4], rgb
    out["error"], out["n"] = table[:, 7], table[:, 8]
    return out


def write_txt(model: ColmapModel, sparse_dir: Path) -> None:
    """Write ``cameras.txt``, ``images.txt`` and ``points3D.txt`` into ``sparse_dir``."""
    num = lambda values: " ".join(repr(float(v)) for v in values)  # repr round-trips a float64 exactly
    lines = ["# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"]
    lines += [f"{c.id} {c.model} {c.width} {c.height} {num(c.params)}" for c in model.cameras.values()]
    (sparse_dir / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D[] as (X Y POINT3D_ID)"]
    for im in model.images.values():
        xys = [] if im.xys is None else np.asarray(im.xys, np.float64).tolist()
        lines.append(f"{im.id} {num(im.qvec)} {num(im.tvec)} {im.camera_id} {im.name}")
        lines.append(" ".join(f"{x!r} {y!r} {i}" for (x, y), i in zip(xys, file_point_ids(im).tolist())))
    (sparse_dir / "images.txt").write_text("\n".join(lines) + "\n")
    records, track = point_records(model)
    lines, ends = ["# POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID POINT2D_IDX)"], np.cumsum(records["n"])
    for r, end in zip(records, ends.tolist()):
        pairs = "".join(f" {a} {b}" for a, b in track[end - r["n"] : end].tolist())
        lines.append(f"{r['id']} {num(r['xyz'])} {' '.join(map(str, r['rgb']))} {float(r['error'])!r}{pairs}")
    (sparse_dir / "points3D.txt").write_text("\n".join(lines) + "\n")
