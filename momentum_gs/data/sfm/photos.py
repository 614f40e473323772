"""The photos of `mgs sfm`: found, checked and gathered into ``DATA/images`` before any SfM runs.

Every problem a folder of photos can have (none, one, two photos of the same name in different subfolders)
is one error line here, before anything is extracted; a photo that does not decode cleanly (truncated,
corrupt data the decoder warns about, more pixels than OpenCV decodes) is named and left out.
Photos are hard-linked into ``images/`` when the folders share a file system and copied otherwise; a video
is sampled into numbered JPEG frames with OpenCV.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import write_failed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def find_photos(folder: Path, skip: Path | None = None) -> list[Path]:
    """The image files under ``folder`` (subfolders too, ``skip`` left out), sorted by name.

    Raises a UserError for a missing or empty folder, a folder without images, or two photos of the same
    file name in different subfolders (the scene names its images by file name).
    """
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; give the folder that holds the photos")
    skip = skip.resolve() if skip is not None else None
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")
             and (skip is None or skip not in p.resolve().parents)]
    photos = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not photos:
        what = f"{len(files)} files, none of them" if files else "it is empty, no"
        raise UserError(f"no photos in {folder} ({what} JPEG, PNG or TIFF); give the folder of the drone photos")
    by_name: dict[str, Path] = {}
    for p in photos:
        if p.name in by_name:
            raise UserError(f"two photos are named {p.name}: {by_name[p.name]} and {p}; rename one of them "
                            "(the scene names its images by file name)")
        by_name[p.name] = p
    if len(photos) < 2:
        raise UserError(f"only one photo in {folder} ({photos[0].name}); structure from motion needs at least "
                        "two overlapping photos (a drone survey: dozens, with 60-80 % overlap)")
    return sorted(photos, key=lambda p: p.name)


class Unreadable(ValueError):
    """A photo whose data does not decode cleanly (the reason is the message): left out of the run."""


# What libjpeg and libpng write to stderr for damaged data while still returning a picture (grey or garbled
# rows); benign notes such as libpng's "iCCP: known incorrect sRGB profile" are not among them.
DECODER_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters", "libpng error",
                  "CRC error", "IDAT: Too much image data", "Not enough image data")


@contextmanager
def _stderr_text(into: list[str]):
    """Capture what C libraries write to file descriptor 2 inside the block into ``into[0]``."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            into.append(capture.read().decode("utf-8", "replace"))


def check_photo(path: Path) -> tuple[int, int]:
    """(width, height) of a photo that decodes fully and cleanly.

    Raises :class:`Unreadable` (the photo is left out) for a file that is empty, corrupt, truncated, not an
    image, declares more pixels than OpenCV decodes, or whose decoder reports damaged data; a UserError for a
    file that cannot be read at all (permissions, an I/O error), which the user has to fix.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:  # no read permission, an I/O error
        raise UserError(f"photo {path} cannot be read ({exc.strerror or exc}); fix its permissions or copy it "
                        "again")
    # libjpeg fills a truncated JPEG's missing rows with grey and only warns: its end marker is checked first.
    if path.suffix.lower() in (".jpg", ".jpeg") and data.size > 2 and data[:2].tobytes() == b"\xff\xd8" \
            and b"\xff\xd9" not in data[-4096:].tobytes():
        raise Unreadable("truncated: its end is missing")
    messages: list[str] = []
    try:
        with _stderr_text(messages):
            image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise Unreadable("its header declares more pixels than OpenCV decodes (2^30; "
                             "OPENCV_IO_MAX_IMAGE_PIXELS raises the limit)") from None
        raise Unreadable(f"OpenCV cannot decode it: {str(exc).strip().splitlines()[-1][:120]}") from None
    damage = [line.strip() for line in messages[0].splitlines() if any(m in line for m in DECODER_DAMAGE)]
    if image is None:
        raise Unreadable("empty, corrupt or not an image")
    if damage:
        raise Unreadable(f"the decoder reports damaged data: {damage[0][:120]}")
    return image.shape[1], image.shape[0]


def gather_photos(photos: list[Path], images_dir: Path,
                  prune: bool = False) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Check every photo and link (or copy) those that decode cleanly into ``images_dir``.

    Returns (name → (width, height) of the photos kept, name → reason of those left out). A file already
    there with the same size and time is kept, so a rerun does not copy again; ``prune``: other files in
    ``images_dir`` (a staging folder of ours) are removed.
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    sizes, skipped = {}, {}
    for src in tqdm(photos, desc="check photos", unit="photo", dynamic_ncols=True):
        try:
            sizes[src.name] = check_photo(src)
        except Unreadable as exc:
            skipped[src.name] = str(exc)
            continue
        dst = images_dir / src.name
        if dst.exists() and (dst.samefile(src) or _same_file_data(src, dst)):
            continue
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            try:
                shutil.copy2(src, dst)
            except OSError as exc:  # a full disk
                raise write_failed(dst, exc) from exc
    if prune:
        for stale in images_dir.iterdir():
            if stale.name not in sizes and stale.is_file():
                stale.unlink()
    return sizes, skipped


def _same_file_data(a: Path, b: Path) -> bool:
    """Same size and modification time (a copy made by :func:`shutil.copy2`)."""
    sa, sb = a.stat(), b.stat()
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


def exif_camera(path: Path) -> tuple:
    """(make, model, focal length) from a photo's EXIF (piexif; ``None`` parts when absent): photos that share
    it and their size share a camera."""
    try:
        import piexif

        exif = piexif.load(str(path))
    except Exception:  # PNG, or EXIF piexif cannot parse: no camera identity, the size alone groups
        return (None, None, None)
    zeroth, sub = exif.get("0th", {}), exif.get("Exif", {})
    focal = sub.get(piexif.ExifIFD.FocalLength)
    focal = round(focal[0] / focal[1], 3) if isinstance(focal, tuple) and focal[1] else None
    text = [zeroth.get(tag, b"").decode("latin-1", "replace").strip("\x00 ") or None
            for tag in (piexif.ImageIFD.Make, piexif.ImageIFD.Model)]
    return (*text, focal)


def camera_groups(images_dir: Path, sizes: dict[str, tuple[int, int]]) -> list[list[str]]:
    """Photo names grouped by camera: one group per distinct EXIF camera and image size."""
    groups: dict[tuple, list[str]] = {}
    for name, size in sizes.items():
        groups.setdefault((exif_camera(images_dir / name), size), []).append(name)
    return list(groups.values())


def sample_video(video: Path, fps: float, images_dir: Path) -> list[Path]:
    """Write frames of ``video`` at ``fps`` frames a second as ``<stem>_NNNNN.jpg`` into ``images_dir``."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise UserError(f"cannot open video {video} (missing, corrupt or a codec OpenCV lacks); convert it to MP4 "
                        "(H.264) or extract frames yourself")
    native = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    step = max(native / fps, 1.0) if fps > 0 else 1.0
    images_dir.mkdir(parents=True, exist_ok=True)
    written, index, next_take = [], 0, 0.0
    with tqdm(total=total, desc="sample video", unit="frame", dynamic_ncols=True) as bar:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= next_take - 1e-6:
                path = images_dir / f"{video.stem}_{len(written):05d}.jpg"
                if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise UserError(f"cannot write {path}; choose a writable output folder")
                written.append(path)
                next_take += step
            index += 1
            bar.update(1)
    capture.release()
    if len(written) < 2:
        raise UserError(f"video {video} gave {len(written)} frame(s) at {fps} fps; give a longer video or a "
                        "higher --fps")
    return written
