"""Read and write COLMAP sparse models (``cameras``, ``images``, ``points3D``), binary or text.

Binary layout, little-endian (COLMAP docs, "Output Format"):
- ``cameras.bin``: u64 count; per camera u32 id, i32 model id, u64 width, u64 height, f64 params[].
- ``images.bin``: u64 count; per image u32 id, f64 qvec[4] (w, x, y, z), f64 tvec[3], u32 camera id, a
  NUL-terminated name, u64 keypoint count, then per keypoint f64 x, f64 y, i64 point id (-1 = none).
- ``points3D.bin``: u64 count; per point u64 id, f64 xyz[3], u8 rgb[3], f64 error, u64 track length, then
  per track element u32 image id, u32 keypoint index.
COLMAP 4.x also writes ``rigs.bin``/``frames.bin``; one camera per image needs neither: both are ignored.
Point ids are not kept: ``ColmapImage.point3d_ids`` are rows of ``ColmapModel.points``.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np

from momentum_gs.errors import DataWarning, UserError

# Every model id COLMAP defines, so that an unsupported one is named in the error instead of "unknown".
CAMERA_MODELS: dict[int, str] = dict(enumerate(
    "SIMPLE_PINHOLE PINHOLE SIMPLE_RADIAL RADIAL OPENCV OPENCV_FISHEYE FULL_OPENCV FOV SIMPLE_RADIAL_FISHEYE "
    "RADIAL_FISHEYE THIN_PRISM_FISHEYE RAD_TAN_THIN_PRISM_FISHEYE SIMPLE_DIVISION DIVISION SIMPLE_FISHEYE FISHEYE "
    "EUCM EQUIRECTANGULAR".split()))  # fmt: skip
MODEL_IDS = {name: model_id for model_id, name in CAMERA_MODELS.items()}
# The models OpenCV's distortion model covers (so we can undistort them), with their parameter counts.
SUPPORTED_MODELS: dict[str, int] = {
    "SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8, "FULL_OPENCV": 12,
}  # fmt: skip

_CAMERA = struct.Struct("<IiQQ")
_IMAGE = struct.Struct("<I4d3dI")
_U64 = struct.Struct("<Q")
_KEYPOINT = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
_POINT = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"), ("n", "<u8")])
_TRACK = np.dtype([("image", "<u4"), ("keypoint", "<u4")])
_STEMS = ("cameras", "images", "points3D")
_BAD_LINE = "{} line {} is corrupt: expected {}"


@dataclass
class ColmapCamera:
    """One COLMAP camera; ``params`` in COLMAP's order for ``model``, in pixels (pixel centres at +0.5)."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64


@dataclass
class ColmapImage:
    """One registered image; ``qvec`` (w, x, y, z) and ``tvec`` map world to camera coordinates."""

    id: int
    qvec: np.ndarray  # [4] w,x,y,z world-to-camera rotation
    tvec: np.ndarray  # [3] world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray | None = None  # [n,2] keypoints in pixels (may be empty)
    point3d_ids: np.ndarray | None = None  # [n] int64 row of ColmapModel.points, -1 = none


@dataclass
class ColmapModel:
    """A sparse reconstruction: cameras and images by id, the point cloud as arrays."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [P,3] float64 xyz
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))  # [P,3] uint8
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [P] float64 reprojection error


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """[4] quaternion (w, x, y, z; normalised here) → [3, 3] rotation matrix."""
    w, x, y, z = np.asarray(qvec, np.float64) / np.linalg.norm(qvec)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices → [..., 4] unit quaternions (w, x, y, z) with w >= 0."""
    R = np.asarray(R, np.float64)
    (a, b, c), (d, e, f), (g, h, i) = (tuple(R[..., r, col] for col in range(3)) for r in range(3))
    # Row k holds 4 q_k q_j for j = w, x, y, z; the row with the largest diagonal 4 q_k^2 divides safely.
    P = np.stack([np.stack(row, -1) for row in ([1 + a + e + i, h - f, c - g, d - b],
                                                [h - f, 1 + a - e - i, b + d, c + g],
                                                [c - g, b + d, 1 - a + e - i, f + h],
                                                [d - b, c + g, f + h, 1 - a - e + i])], -2)
    k = np.argmax(np.diagonal(P, axis1=-2, axis2=-1), -1)[..., None, None]
    row = np.take_along_axis(P, k, -2)[..., 0, :]
    q = row / (2 * np.sqrt(np.take_along_axis(row, k[..., 0], -1)))
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] >= 0, 1.0, -1.0)


def check_camera(camera_id: int, model: str, n_params: int, where: str) -> None:
    """Raise a UserError unless ``model`` is supported and has its number of parameters."""
    if model not in SUPPORTED_MODELS:
        known = "" if model in MODEL_IDS else " (not a COLMAP camera model)"
        raise UserError(f"{where}: camera {camera_id} uses the {model} model{known}, which is not supported "
                        f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort the images with "
                        "`colmap image_undistorter` first")
    if n_params != SUPPORTED_MODELS[model]:
        raise UserError(f"{where}: camera {camera_id} ({model}) has {n_params} params, not {SUPPORTED_MODELS[model]}")


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


def _add(table: dict, key: int, value: object, what: str, path: Path) -> None:
    """``table[key] = value``, refusing a second record with the same id."""
    if key in table:
        raise UserError(f"{path}: {what} id {key} appears twice; the model is corrupt (re-export it from COLMAP)")
    table[key] = value


# The focal-length parameters of each supported model (the rest are principal point and distortion).
_FOCALS = {"SIMPLE_PINHOLE": 1, "PINHOLE": 2, "SIMPLE_RADIAL": 1, "RADIAL": 1, "OPENCV": 2, "FULL_OPENCV": 2}


def image_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an image name inside ``images/`` (empty, absolute, leaving the folder through
    ``..``, a drive or a NUL), or None when it is fine; sub-folders such as ``cam1/0001.jpg`` are fine."""
    if not name or "\0" in name:
        return "is empty or holds a NUL byte"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "points outside the images folder"
    return None


def validate_model(model: ColmapModel, files: dict[str, Path]) -> None:
    """Refuse, with one line naming the record, what would poison training or reach outside the dataset:
    non-finite or zero-length poses, non-positive or non-finite focal lengths, non-positive sizes, non-finite
    parameters or points, image names that leave ``images/`` and names that appear twice."""
    for cam in model.cameras.values():
        where = f"{files['cameras']}: camera {cam.id}"
        if cam.width <= 0 or cam.height <= 0:
            raise UserError(f"{where} has size {cam.width}x{cam.height}; width and height must be positive")
        if not np.isfinite(cam.params).all():
            raise UserError(f"{where} has non-finite parameters {cam.params.tolist()}")
        if (cam.params[: _FOCALS[cam.model]] <= 0).any():
            raise UserError(f"{where} has focal length {cam.params[: _FOCALS[cam.model]].tolist()}; it must be "
                            "positive (pixels)")
    names: dict[str, int] = {}
    for image in model.images.values():
        where = f"{files['images']}: image {image.id} ({image.name!r})"
        problem = image_name_problem(image.name)
        if problem:
            raise UserError(f"{where}: the name {problem}; names are paths relative to images/")
        if image.name in names:
            raise UserError(f"{files['images']}: images {names[image.name]} and {image.id} are both named "
                            f"{image.name!r}; each image needs its own file")
        names[image.name] = image.id
        norm = float(np.linalg.norm(image.qvec))
        if not (np.isfinite(image.qvec).all() and np.isfinite(image.tvec).all()):
            raise UserError(f"{where} has a non-finite pose (q {image.qvec.tolist()}, t {image.tvec.tolist()}); "
                            "drop the image or fix its pose")
        if not 1e-6 < norm < 1e6:
            raise UserError(f"{where} has a rotation quaternion of length {norm:.3g}, which is not a rotation; "
                            "drop the image or fix its pose")
    bad = ~np.isfinite(model.points).all(axis=1)
    if bad.any():
        raise UserError(f"{files['points3D']}: {int(bad.sum())} of {len(bad)} points have non-finite coordinates "
                        f"(first: row {int(np.flatnonzero(bad)[0])}); the model is corrupt")


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    cur, cameras = _Cursor(path), {}
    for _ in range(cur.count(_CAMERA.size)):
        camera_id, model_id, width, height = cur.unpack(_CAMERA)
        if model_id not in CAMERA_MODELS:
            cur.fail(f"camera {camera_id} has unknown model id {model_id}")
        model = CAMERA_MODELS[model_id]
        check_camera(camera_id, model, SUPPORTED_MODELS.get(model, -1), str(path))
        params = cur.array(np.dtype("<f8"), SUPPORTED_MODELS[model]).astype(np.float64)
        _add(cameras, camera_id, ColmapCamera(camera_id, model, int(width), int(height), params), "camera", path)
    cur.done()
    return cameras


def _read_images_bin(path: Path, keypoints: bool) -> dict[int, ColmapImage]:
    cur, images = _Cursor(path), {}
    for _ in range(cur.count(_IMAGE.size + 9)):
        image_id, *pose, camera_id = cur.unpack(_IMAGE)
        image = ColmapImage(image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, cur.text())
        kps = cur.array(_KEYPOINT, cur.unpack(_U64)[0])
        if keypoints:
            image.xys, image.point3d_ids = kps["xy"].astype(np.float64), kps["id"].astype(np.int64)
        _add(images, image_id, image, "image", path)
    cur.done()
    return images


def _point_offsets(cur: _Cursor, n: int) -> tuple[np.ndarray, int]:
    """[n] byte offsets of the point records and the end of the last, walking the variable-length tracks."""
    start, size, buf = cur.pos, len(cur.buf), cur.buf
    if size - start == n * _POINT.itemsize:  # every track empty (e.g. written by us): a fixed stride
        return start + _POINT.itemsize * np.arange(n, dtype=np.int64), size
    read_len, offsets, pos = struct.Struct("<Q").unpack_from, [], start
    for _ in range(n):
        if pos + _POINT.itemsize > size:
            cur.fail(f"expected {pos + _POINT.itemsize - size} more bytes at offset {pos}")
        offsets.append(pos)
        pos += _POINT.itemsize + 8 * read_len(buf, pos + 43)[0]
    if pos > size:
        cur.fail(f"expected {pos - size} more bytes at offset {size}")
    return np.array(offsets, dtype=np.int64), pos


def _read_points_bin(path: Path) -> np.ndarray:
    """The [P] structured point records (id, xyz, rgb, error, n) of ``points3D.bin``; tracks are skipped."""
    cur = _Cursor(path)
    offsets, end = _point_offsets(cur, cur.count(_POINT.itemsize))
    data, out, columns = np.frombuffer(cur.buf, np.uint8), np.empty(len(offsets), _POINT), np.arange(_POINT.itemsize)
    for s in range(0, len(offsets), 1 << 16):  # gather in chunks: the index array holds 51 int64s per point
        out[s : s + (1 << 16)] = data[offsets[s : s + (1 << 16), None] + columns].reshape(-1).view(_POINT)
    if _POINT.itemsize * len(out) + 8 * int(out["n"].sum()) != end - _U64.size:
        cur.fail("its track lengths do not add up to its size")
    cur.pos = end
    cur.done()
    return out


def _text_records(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every line of a text model, comments dropped; blank lines are kept."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file (corrupt, or a binary model named .txt?)")
    return [(i, line) for i, line in enumerate(lines, 1) if not line.lstrip().startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for lineno, line in (r for r in _text_records(path) if r[1].strip()):
        try:
            f = line.split()
            cam = ColmapCamera(int(f[0]), f[1], int(f[2]), int(f[3]), np.array(f[4:], dtype=np.float64))
        except (ValueError, IndexError):
            raise UserError(_BAD_LINE.format(path, lineno, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"))
        check_camera(cam.id, cam.model, len(cam.params), f"{path} line {lineno}")
        _add(cameras, cam.id, cam, "camera", path)
    return cameras


def _read_images_txt(path: Path, keypoints: bool) -> dict[int, ColmapImage]:
    records, images = iter(_text_records(path)), {}
    for lineno, line in records:
        if not line.strip():
            continue
        try:
            f = line.split(maxsplit=9)  # the name is the rest of the line and may hold spaces
            pose = np.array(f[1:8], dtype=np.float64)
            image = ColmapImage(int(f[0]), pose[:4], pose[4:7], int(f[8]), f[9].strip())
        except (ValueError, IndexError):
            raise UserError(_BAD_LINE.format(path, lineno, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"))
        lineno, keypoint_line = next(records, (lineno + 1, ""))  # always present, blank without keypoints
        try:
            kps = np.array(keypoint_line.split(), dtype=np.float64).reshape(-1, 3)
        except ValueError:
            raise UserError(_BAD_LINE.format(path, lineno, "X Y POINT3D_ID triples (or a blank line)"))
        if keypoints:
            image.xys, image.point3d_ids = kps[:, :2], kps[:, 2].astype(np.int64)
        _add(images, image.id, image, "image", path)
    return images


def _read_points_txt(path: Path) -> np.ndarray:
    rows = []
    for lineno, line in (r for r in _text_records(path) if r[1].strip()):
        f = line.split()
        try:
            if len(f) < 8 or len(f) % 2:
                raise ValueError
            rows.append((int(f[0]), *map(float, f[1:4]), *map(int, f[4:7]), float(f[7]), (len(f) - 8) // 2))
        except ValueError:
            raise UserError(_BAD_LINE.format(path, lineno, "POINT3D_ID X Y Z R G B ERROR TRACK[]"))
    out, table = np.empty(len(rows), _POINT), np.array(rows, dtype=np.float64).reshape(-1, 9)
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


def _index_point_ids(images: dict[int, ColmapImage], point_ids: np.ndarray) -> None:
    """Turn the COLMAP point ids of the images' keypoints into rows of the point arrays (-1 = none)."""
    order = np.append(np.argsort(point_ids, kind="stable"), -1)
    # The sentinel after the largest id keeps searchsorted's answer a valid index that matches nothing.
    sorted_ids = np.append(point_ids[order[:-1]], np.iinfo(np.int64).max)
    for image in images.values():
        if image.point3d_ids is not None:
            pos = np.searchsorted(sorted_ids, image.point3d_ids)
            image.point3d_ids = np.where(sorted_ids[pos] == image.point3d_ids, order[pos], -1).astype(np.int64)


def _model_files(sparse_dir: Path) -> dict[str, Path]:
    """The three model files, ``.bin`` preferred per file; a UserError says what is missing."""
    if not sparse_dir.is_dir():
        raise UserError(f"COLMAP model folder {sparse_dir} does not exist")
    candidates = {stem: (sparse_dir / f"{stem}.bin", sparse_dir / f"{stem}.txt") for stem in _STEMS}
    files = {stem: next((p for p in paths if p.is_file()), None) for stem, paths in candidates.items()}
    missing = [f"{stem}.bin" for stem, path in files.items() if path is None]
    if missing:
        raise UserError(f"{sparse_dir} is not a complete COLMAP model: missing {', '.join(missing)} (a model "
                        "folder holds cameras, images and points3D as .bin or .txt, e.g. `colmap mapper`'s sparse/0)")
    return files


def read_model(sparse_dir: Path, keypoints: bool = True) -> ColmapModel:
    """Read a COLMAP model folder (``.bin`` preferred over ``.txt``; ``rigs``/``frames`` are ignored).

    Args:
        sparse_dir: folder holding ``cameras``, ``images`` and ``points3D``.
        keypoints: also read each image's keypoints and their point rows (off: faster, less memory).
    Returns:
        The model; ``points`` [P, 3] float64 world units, ``colors`` [P, 3] uint8, ``errors`` [P] pixels.
    """
    files = _model_files(Path(sparse_dir))
    binary = {stem: path.suffix == ".bin" for stem, path in files.items()}
    cameras = (_read_cameras_bin if binary["cameras"] else _read_cameras_txt)(files["cameras"])
    points = (_read_points_bin if binary["points3D"] else _read_points_txt)(files["points3D"])
    images = (_read_images_bin if binary["images"] else _read_images_txt)(files["images"], keypoints)
    for image in images.values():
        if image.camera_id not in cameras:
            raise UserError(f"{files['images']}: image {image.name} uses camera {image.camera_id}, "
                            f"which {files['cameras']} does not define")
    _index_point_ids(images, points["id"].astype(np.int64))
    model = ColmapModel(cameras, images, points["xyz"].copy(), points["rgb"].copy(), points["error"].copy())
    validate_model(model, files)
    return model


def _point_records(model: ColmapModel) -> tuple[np.ndarray, np.ndarray]:
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
    records = np.empty(n, _POINT)
    records["id"], records["xyz"], records["rgb"] = np.arange(1, n + 1), model.points, model.colors
    records["error"], records["n"] = model.errors, np.bincount(rows, minlength=n)
    return records, track


def _file_ids(image: ColmapImage) -> np.ndarray:
    """[n] point ids as written to a file: ``row + 1`` (COLMAP ids start at 1), or -1 for none."""
    if image.point3d_ids is None:
        return np.full(0 if image.xys is None else len(image.xys), -1, np.int64)
    return np.where(image.point3d_ids >= 0, image.point3d_ids + 1, -1).astype(np.int64)


def _write_bin(model: ColmapModel, sparse_dir: Path) -> None:
    out = [_U64.pack(len(model.cameras))]
    for cam in model.cameras.values():
        header = _CAMERA.pack(cam.id, MODEL_IDS[cam.model], cam.width, cam.height)
        out.append(header + np.asarray(cam.params, "<f8").tobytes())
    (sparse_dir / "cameras.bin").write_bytes(b"".join(out))
    out = [_U64.pack(len(model.images))]
    for im in model.images.values():
        xys = np.zeros((0, 2)) if im.xys is None else np.asarray(im.xys)
        kps = np.zeros(len(xys), _KEYPOINT)
        kps["xy"], kps["id"] = xys, _file_ids(im)
        pose = np.concatenate([im.qvec, im.tvec]).astype(np.float64)
        out += [_IMAGE.pack(im.id, *pose, im.camera_id), im.name.encode() + b"\0", _U64.pack(len(kps)), kps.tobytes()]
    (sparse_dir / "images.bin").write_bytes(b"".join(out))
    records, track = _point_records(model)
    out, ends = [_U64.pack(len(records))], np.cumsum(records["n"])
    if len(track) == 0:  # no tracks: every record has the same size and they go out as one block
        out.append(records.tobytes())
    else:
        out += [records[i : i + 1].tobytes() + track[e - records["n"][i] : e].tobytes() for i, e in enumerate(ends)]
    (sparse_dir / "points3D.bin").write_bytes(b"".join(out))


def _write_txt(model: ColmapModel, sparse_dir: Path) -> None:
    num = lambda values: " ".join(repr(float(v)) for v in values)  # repr round-trips a float64 exactly
    lines = ["# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"]
    lines += [f"{c.id} {c.model} {c.width} {c.height} {num(c.params)}" for c in model.cameras.values()]
    (sparse_dir / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D[] as (X Y POINT3D_ID)"]
    for im in model.images.values():
        xys = [] if im.xys is None else np.asarray(im.xys, np.float64).tolist()
        lines.append(f"{im.id} {num(im.qvec)} {num(im.tvec)} {im.camera_id} {im.name}")
        lines.append(" ".join(f"{x!r} {y!r} {i}" for (x, y), i in zip(xys, _file_ids(im).tolist())))
    (sparse_dir / "images.txt").write_text("\n".join(lines) + "\n")
    records, track = _point_records(model)
    lines, ends = ["# POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID POINT2D_IDX)"], np.cumsum(records["n"])
    for r, end in zip(records, ends.tolist()):
        pairs = "".join(f" {a} {b}" for a, b in track[end - r["n"] : end].tolist())
        lines.append(f"{r['id']} {num(r['xyz'])} {' '.join(map(str, r['rgb']))} {float(r['error'])!r}{pairs}")
    (sparse_dir / "points3D.txt").write_text("\n".join(lines) + "\n")


def write_model(model: ColmapModel, sparse_dir: Path, binary: bool = True) -> None:
    """Write ``model`` into ``sparse_dir`` (created if needed) as ``.bin`` or ``.txt`` files.

    Point ids are written as ``row + 1``; tracks are rebuilt from the images' ``point3d_ids`` (empty when
    the images carry no keypoints). The other format's model files there are removed, so that a reader
    preferring ``.bin`` cannot pick up a stale model.
    """
    sparse_dir = Path(sparse_dir)
    sparse_dir.mkdir(parents=True, exist_ok=True)
    for cam in model.cameras.values():
        if cam.model not in SUPPORTED_MODELS or len(cam.params) != SUPPORTED_MODELS[cam.model]:
            raise ValueError(f"camera {cam.id}: {cam.model} with {len(cam.params)} params cannot be written")
    (_write_bin if binary else _write_txt)(model, sparse_dir)
    for stem in _STEMS:
        (sparse_dir / f"{stem}{'.txt' if binary else '.bin'}").unlink(missing_ok=True)
