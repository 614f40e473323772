"""COLMAP's binary model files, read and written; their point records are also the text reader's output.

Layout, little-endian (COLMAP docs, "Output Format"):
- ``cameras.bin``: u64 count; per camera u32 id, i32 model id, u64 width, u64 height, f64 params[].
- ``images.bin``: u64 count; per image u32 id, f64 qvec[4] (w, x, y, z), f64 tvec[3], u32 camera id, a
  NUL-terminated name, u64 keypoint count, then per keypoint f64 x, f64 y, i64 point id (-1 = none).
- ``points3D.bin``: u64 count; per point u64 id, f64 xyz[3], u8 rgb[3], f64 error, u64 track length, then
  per track element u32 image id, u32 keypoint index.
COLMAP 4.x also writes ``rigs.bin``/``frames.bin``; one camera per image needs neither: both are ignored.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NoReturn

import numpy as np

from momentum_gs.data.colmap.model import (CAMERA_MODELS, MODEL_IDS, SUPPORTED_MODELS, ColmapCamera, ColmapImage,
                                           ColmapModel, check_camera)
from momentum_gs.errors import UserError

_CAMERA = struct.Struct("<IiQQ")
_IMAGE = struct.Struct("<I4d3dI")
_U64 = struct.Struct("<Q")
_KEYPOINT = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
# One point of ``points3D``, its track left out: the in-memory form of both readers.
POINT_RECORD = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"),
                         ("n", "<u8")])
_TRACK = np.dtype([("image", "<u4"), ("keypoint", "<u4")])


class _Cursor:
    """Reads a binary file front to back; running off its end becomes a one-line UserError."""

    def __init__(self, path: Path):
        self.path, self.buf, self.pos = path, path.read_bytes(), 0

    def fail(self, what: str) -> NoReturn:
        raise UserError(f"{self.path} is truncated or corrupt ({what})")

    def take(self, n: int) -> int:  # advance by n bytes, returning where they start
        if self.pos + n > len(self.buf):
            self.fail(f"expected {self.pos + n - len(self.buf)} more bytes at offset {self.pos}")
        self.pos += n
        return self.pos - n

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack_from(self.buf, self.take(fmt.size))

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        return np.frombuffer(self.buf, dtype, count, self.take(count * dtype.itemsize))

    def count(self, min_record: int) -> int:
        """The leading u64 record count, checked against the bytes left (so garbage cannot allocate TBs)."""
        (n,) = self.unpack(_U64)
        if n * min_record > len(self.buf) - self.pos:
            self.fail(f"the header claims {n} records but only {len(self.buf) - self.pos} bytes follow")
        return n

    def text(self) -> str:
        start, end = self.pos, self.buf.find(b"\0", self.pos)
        if end < 0:
            self.fail(f"unterminated image name at offset {start}")
        self.pos = end + 1
        try:
            return self.buf[start:end].decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"the image name at offset {start} is not UTF-8")

    def done(self) -> None:
        if self.pos != len(self.buf):
            self.fail(f"{len(self.buf) - self.pos} unexpected bytes after the last record at offset {self.pos}")


def add_record(table: dict, key: int, value: object, what: str, path: Path) -> None:
    """``table[key] = value``, refusing a second record with the same id."""
    if key in table:
        raise UserError(f"{path}: {what} id {key} appears twice; the model is corrupt (re-export it from COLMAP)")
    table[key] = value


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    """The cameras of ``cameras.bin`` by id."""
    cur, cameras = _Cursor(path), {}
    for _ in range(cur.count(_CAMERA.size)):
        camera_id, model_id, width, height = cur.unpack(_CAMERA)
        if model_id not in CAMERA_MODELS:
            cur.fail(f"camera {camera_id} has unknown model id {model_id}")
        model = CAMERA_MODELS[model_id]
        check_camera(camera_id, model, SUPPORTED_MODELS.get(model, -1), str(path))
        params = cur.array(np.dtype("<f8"), SUPPORTED_MODELS[model]).astype(np.float64)
        add_record(cameras, camera_id, ColmapCamera(camera_id, model, int(width), int(height), params), "camera", path)
    cur.done()
    return cameras


def read_images_bin(path: Path, keypoints: bool) -> dict[int, ColmapImage]:
    """The images of ``images.bin`` by id, with their keypoints when ``keypoints``."""
    cur, images = _Cursor(path), {}
    for _ in range(cur.count(_IMAGE.size + 9)):
        image_id, *pose, camera_id = cur.unpack(_IMAGE)
        image = ColmapImage(image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, cur.text())
        kps = cur.array(_KEYPOINT, cur.unpack(_U64)[0])
        if keypoints:
            image.xys, image.point3d_ids = kps["xy"].astype(np.float64), kps["id"].astype(np.int64)
        add_record(images, image_id, image, "image", path)
    cur.done()
    return images


def _point_offsets(cur: _Cursor, n: int) -> tuple[np.ndarray, int]:
    """[n] byte offsets of the point records and the end of the last, walking the variable-length tracks."""
    start, size, buf = cur.pos, len(cur.buf), cur.buf
    if size - start == n * POINT_RECORD.itemsize:  # every track empty (e.g. written by us): a fixed stride
        return start + POINT_RECORD.itemsize * np.arange(n, dtype=np.int64), size
    read_len, offsets, pos = struct.Struct("<Q").unpack_from, [], start
    for _ in range(n):
        if pos + POINT_RECORD.itemsize > size:
            cur.fail(f"expected {pos + POINT_RECORD.itemsize - size} more bytes at offset {pos}")
        offsets.append(pos)
        pos += POINT_RECORD.itemsize + 8 * read_len(buf, pos + 43)[0]
    if pos > size:
        cur.fail(f"expected {pos - size} more bytes at offset {size}")
    return np.array(offsets, dtype=np.int64), pos


def read_points_bin(path: Path) -> np.ndarray:
    """The [P] structured point records (id, xyz, rgb, error, n) of ``points3D.bin``; tracks are skipped."""
    cur = _Cursor(path)
    offsets, end = _point_offsets(cur, cur.count(POINT_RECORD.itemsize))
    data, out, columns = np.frombuffer(cur.buf, np.uint8), np.empty(len(offsets), POINT_RECORD), np.arange(POINT_RECORD.itemsize)
    for s in range(0, len(offsets), 1 << 16):  # gather in chunks: the index array holds 51 int64s per point
        out[s : s + (1 << 16)] = data[offsets[s : s + (1 << 16), None] + columns].reshape(-1).view(POINT_RECORD)
    # each length below the file's size first, so that their uint64 sum cannot wrap around
    if len(out) and (out["n"].max() > len(cur.buf) or
                     POINT_RECORD.itemsize * len(out) + 8 * int(out["n"].sum()) != end - _U64.size):
        cur.fail("its track lengths do not add up to its size")
    cur.pos = end
    cur.done()
    return out


def point_records(model: ColmapModel) -> tuple[np.ndarray, np.ndarray]:
    """[P] point records (id = row + 1) and [T] tracks grouped by point, rebuilt from the image keypoints."""
    n, rows, pairs = len(model.points), [np.zeros(0, np.int64)], [np.zeros((0, 2), np.int64)]
    for image in sorted(model.images.values(), key=lambda im: im.id):
        if image.point3d_ids is not None:
            keypoint = np.flatnonzero(image.point3d_ids >= 0)
            rows.append(image.point3d_ids[keypoint])
            pairs.append(np.stack([np.full(len(keypoint), image.id), keypoint], 1))
    rows = np.concatenate(rows)
    if len(rows) and rows.max() >= n:
        raise ValueError(f"an image keypoint refers to point row {rows.max()}, but there are only {n} points")
    order = np.argsort(rows, kind="stable")
    track = np.empty(len(rows), _TRACK)
    track["image"], track["keypoint"] = np.concatenate(pairs)[order].T
    records = np.empty(n, POINT_RECORD)
    records["id"], records["xyz"], records["rgb"] = np.arange(1, n + 1), model.points, model.colors
    records["error"], records["n"] = model.errors, np.bincount(rows, minlength=n)
    return records, track


def file_point_ids(image: ColmapImage) -> np.ndarray:
    """[n] point ids as written to a file: ``row + 1`` (COLMAP ids start at 1), or -1 for none."""
    if image.point3d_ids is None:
        return np.full(0 if image.xys is None else len(image.xys), -1, np.int64)
    return np.where(image.point3d_ids >= 0, image.point3d_ids + 1, -1).astype(np.int64)


def write_bin(model: ColmapModel, sparse_dir: Path) -> None:
    """Write ``cameras.bin``, ``images.bin`` and ``points3D.bin`` into ``sparse_dir``."""
    out = [_U64.pack(len(model.cameras))]
    for cam in model.cameras.values():
        header = _CAMERA.pack(cam.id, MODEL_IDS[cam.model], cam.width, cam.height)
        out.append(header + np.asarray(cam.params, "<f8").tobytes())
    (sparse_dir / "cameras.bin").write_bytes(b"".join(out))
    out = [_U64.pack(len(model.images))]
    for im in model.images.values():
        xys = np.zeros((0, 2)) if im.xys is None else np.asarray(im.xys)
        kps = np.zeros(len(xys), _KEYPOINT)
        kps["xy"], kps["id"] = xys, file_point_ids(im)
        pose = np.concatenate([im.qvec, im.tvec]).astype(np.float64)
        out += [_IMAGE.pack(im.id, *pose, im.camera_id), im.name.encode() + b"\0", _U64.pack(len(kps)), kps.tobytes()]
    (sparse_dir / "images.bin").write_bytes(b"".join(out))
    records, track = point_records(model)
    out, ends = [_U64.pack(len(records))], np.cumsum(records["n"])
    if len(track) == 0:  # no tracks: every record has the same size and they go out as one block
        out.append(records.tobytes())
    else:
        out += [records[i : i + 1].tobytes() + track[e - records["n"][i] : e].tobytes() for i, e in enumerate(ends)]
    (sparse_dir / "points3D.bin").write_bytes(b"".join(out))
