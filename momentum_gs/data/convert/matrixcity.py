"""MatrixCity (or any NeRF-style ``transforms.json``, OpenGL camera axes) → COLMAP models in the Mill-19
layout, with random ground points where no point cloud is given."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.data.colmap.model import ColmapCamera, ColmapImage, ColmapModel, rotmat_to_qvec
from momentum_gs.data.convert.common import IMAGE_SUFFIXES, SPLITS, _ensure_free, _place, _staged
from momentum_gs.data.convert.nerf_transforms import read_transforms
from momentum_gs.data.images import read_image
from momentum_gs.data.scene import _sparse_dir
from momentum_gs.errors import UserError, listing
from momentum_gs.io.foreign import read_ply_vertices, require_finite_fields

GREY = 128  # colour of generated points: Scaffold-GS anchors learn their features, point colours go unused
GROUND_BAND = 0.1  # generated points lie up to this fraction of the median camera altitude above the ground
MAX_RANGE = 5.0  # ... and at most this many camera altitudes from their camera (no points at the horizon)


@dataclass
class _Frame:
    """One MatrixCity view: its image, its name in the output, its pose (OpenCV axes) and pinhole intrinsics."""

    src: Path
    name: str
    cam_to_world: np.ndarray  # [4, 4] float64, OpenCV axes, world units after `scale`
    intrinsics: tuple[int, int, float, float, float, float]  # width, height, fx, fy, cx, cy (pixels)
    rotation_scale: float = 1.0  # the scale divided out of the given rotation
    distortion: tuple[float, ...] = ()  # k1 k2 p1 p2 (OPENCV) or k1 k2 p1 p2 k3 k4 k5 k6 (FULL_OPENCV); () none


# Distortion keys of instant-ngp / colmap2nerf transforms files, in OpenCV's order.
OPENCV_KEYS, FULL_OPENCV_KEYS = ("k1", "k2", "p1", "p2"), ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")


def _distortion(levels: Sequence[dict], where: str) -> tuple[float, ...]:
    """The lens distortion a frame's levels give (instant-ngp's ``k1 k2 k3 k4 p1 p2``), as OpenCV coefficients:
    () when all are absent or zero, 4 (OPENCV) or 8 (FULL_OPENCV) values otherwise; fisheye is refused."""
    get = lambda key: next((level[key] for level in levels if level.get(key) is not None), None)  # noqa: E731
    if any(level.get("is_fisheye") for level in levels):
        raise UserError(f"{where}: a fisheye camera (is_fisheye) is not supported; undistort the images first")
    values = {key: float(get(key) or 0.0) for key in FULL_OPENCV_KEYS}
    if not all(math.isfinite(v) for v in values.values()):
        raise UserError(f"{where}: non-finite distortion coefficients {values}")
    if not any(values.values()):
        return ()
    if any(values[k] for k in ("k4", "k5", "k6")):  # a rational term in OpenCV, a radial one in other tools
        raise UserError(f"{where}: distortion k4/k5/k6 are not read (tools disagree on their meaning); "
                        "undistort the images first, or keep k1 k2 k3 p1 p2 only")
    keys = FULL_OPENCV_KEYS if any(values[k] for k in FULL_OPENCV_KEYS[4:]) else OPENCV_KEYS
    return tuple(values[k] for k in keys)


def opengl_to_opencv(cam_to_world: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world with OpenGL/Blender camera axes (x right, y up, z backward) → the same pose with
    OpenCV/COLMAP axes (x right, y down, z forward): the camera's y and z axes, columns 1 and 2, flip sign."""
    out = np.array(cam_to_world, np.float64)
    out[:3, 1:3] *= -1
    return out


def _rigid(matrix, where: str) -> tuple[np.ndarray, float]:
    """[4, 4] rigid transform from a 4x4 or 3x4 ``transform_matrix``, and the uniform scale divided out of its
    rotation (MatrixCity's raw ``rot_mat`` carries 0.01); anything else than a scaled rotation is a UserError."""
    try:
        m = np.array(matrix, np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise UserError(f"{where}: transform_matrix must be a 4x4 (or 3x4) matrix of numbers")
    norms = np.linalg.norm(m[:3, :3], axis=0)
    R = m[:3, :3] / np.maximum(norms, 1e-300)
    if np.ptp(norms) > 1e-3 * norms.max() or not np.allclose(R.T @ R, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
        raise UserError(f"{where}: transform_matrix is not a rotation (times a scale) and a translation")
    m[:3, :3] = R
    return m, float(norms.mean())


def _intrinsics(levels: Sequence[dict], size: tuple[int, int] | None, where: str
                ) -> tuple[int, int, float, float, float, float]:
    """(w, h, fx, fy, cx, cy) from the first of ``levels`` (frame, its file, the first training file) that
    gives each; ``size`` (read from an image) when none gives w and h."""
    get = lambda key: next((level[key] for level in levels if level.get(key) is not None), None)
    w, h = (get("w"), get("h")) if get("w") is not None and get("h") is not None else (size or (None, None))
    focal = next((level for level in levels if "fl_x" in level or "camera_angle_x" in level), None)
    if w is None or focal is None:
        raise UserError(f"{where}: no intrinsics; give fl_x (and fl_y, cx, cy, w, h) or camera_angle_x")
    w, h = int(round(float(w))), int(round(float(h)))
    if "fl_x" in focal:
        fx = float(focal["fl_x"])
        fy = float(focal.get("fl_y", fx))
    else:
        fx = 0.5 * w / math.tan(0.5 * float(focal["camera_angle_x"]))
        angle_y = focal.get("camera_angle_y")
        fy = fx if angle_y is None else 0.5 * h / math.tan(0.5 * float(angle_y))
    cx, cy = get("cx"), get("cy")  # NeRF and COLMAP both put the image corner at 0: no half-pixel shift
    cx, cy = float(w / 2 if cx is None else cx), float(h / 2 if cy is None else cy)
    if min(w, h) < 1 or not (fx > 0 and fy > 0):
        raise UserError(f"{where}: bad intrinsics w={w} h={h} fx={fx} fy={fy}")
    return w, h, fx, fy, cx, cy


def _is_file(path: str) -> bool:
    """Whether ``path`` is a file; a name the system cannot take (too long, not encodable) is none."""
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):
        return False


def _find_image(file_path: str, roots: Sequence[Path]) -> Path | None:
    """The image a frame's ``file_path`` names, looked for under each root as given, as ``<folder>/input/<name>``
    (MatrixCity's untarred blocks) and as ``<name>``; a path without a suffix tries the usual image suffixes. A
    path that leads out of its root (``../block_1/0000``, as MatrixCity's pose files write them) is looked for
    by its folder and name only, so that no file outside the roots is read. The candidates are plain strings:
    pathlib (Python 3.11) interns every part of a path it makes, and names read from a file have no place in the
    interpreter's table of interned strings."""
    parts = [part for part in file_path.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts:
        return None
    name, block = parts[-1], parts[-2] if len(parts) > 1 and parts[-2] != ".." else ""
    blocks = [f"{block}/input/{name}", f"{block}/{name}"] if block else []
    tails = dict.fromkeys([*["/".join(parts)] * (".." not in parts), *blocks, name])
    for root in roots:
        for tail in tails:
            base = os.path.join(str(root), tail)
            candidates = [base] if os.path.splitext(base)[1] in IMAGE_SUFFIXES else []
            candidates += [base + suffix for suffix in IMAGE_SUFFIXES]
            found = next((c for c in candidates if _is_file(c)), None)
            if found is not None:
                return Path(found)
    return None


def _read_frames(json_paths: Sequence[Path], image_roots: Sequence[Path], fallback: dict, scale: float
                 ) -> list[_Frame]:
    """All frames of one split's transforms files; a UserError names the missing images (all files first)."""
    frames, missing = [], []
    for path in json_paths:
        meta, size = read_transforms(path), None
        roots = [*image_roots, path.parent]
        for i, frame in enumerate(meta["frames"]):
            where = f"{path} frame {i}"
            src = _find_image(frame["file_path"], roots)
            if src is None:
                missing.append(frame["file_path"])
                continue
            rigid, rotation_scale = _rigid(frame.get("transform_matrix", frame.get("rot_mat")), where)
            cam_to_world = opengl_to_opencv(rigid)
            cam_to_world[:3, 3] *= scale
            levels = (frame, meta, fallback)
            if size is None and not any(level.get("w") and level.get("h") for level in levels):
                size = read_image(src).shape[1::-1]  # no w/h given: the file's first image tells
            frames.append(_Frame(src, src.name, cam_to_world, _intrinsics(levels, size, where), rotation_scale,
                                 _distortion(levels, where)))
    if missing:
        where = ", ".join(map(str, [*image_roots, "the transforms file's folder"]))
        raise UserError(f"{len(missing)} image(s) listed in {', '.join(map(str, json_paths))} are missing (looked "
                        f"in {where}): {listing(missing)}; pass the folders they are relative to with --images")
    return frames


def _name_frames(frames: list[_Frame], sequential: bool) -> None:
    """Output names: ``0000.png``... in order (CityGaussian's), else file names, prefixed by their block folder
    (``block_1/0000.png``) when blocks share names; a name still shared (a file listed twice) is a UserError."""
    if sequential:
        for i, f in enumerate(frames):
            f.name = f"{i:04d}{f.src.suffix}"
        return
    if len({f.name for f in frames}) < len(frames):
        for f in frames:
            block = f.src.parent.parent if f.src.parent.name == "input" else f.src.parent
            f.name = f"{block.name}/{f.src.name}"
    counts = Counter(f.name for f in frames)
    shared = sorted(name for name, n in counts.items() if n > 1)
    if shared:
        raise UserError(f"{len(shared)} image name(s) are used by several frames of one split: {listing(shared)}")


def ground_points(cam_to_world: np.ndarray, intrinsics: np.ndarray, count: int, rng: np.random.Generator,
                  up: Sequence[float] = (0.0, 0.0, 1.0), ground_height: float = 0.0) -> np.ndarray:
    """[count, 3] random points in the cameras' view of the ground, for scenes without SfM points.

    MatrixCity is rendered, so it has exact poses but no SfM cloud. Scaffold-GS needs initial points only to
    seed anchors where the cameras look; growing fills in the rest. Rays through random pixels of every
    camera (an even share each) stop at a random height between the ground plane ``x · up = ground_height``
    and ``GROUND_BAND`` of the median camera altitude above it, so each point lies in a camera's frustum.
    The defaults (z up, ground at height 0) suit MatrixCity's z-up world; the ground height is our assumption,
    not a documented fact, so a camera below the plane is a UserError. Real SfM points (``--points``) are better.

    Args:
        cam_to_world: [N, 4, 4] camera-to-world poses, OpenCV axes, world units.
        intrinsics: [N, 6] width, height, fx, fy, cx, cy in pixels.
    """
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    altitude = cam_to_world[:, :3, 3] @ up - ground_height
    if (altitude <= 0).any():
        raise UserError(f"camera {int(np.argmin(altitude))} is not above the ground plane (height {ground_height} "
                        f"along {up.tolist()}); set the ground height and up axis, or give a point cloud (--points)")
    band, per_camera, out = GROUND_BAND * float(np.median(altitude)), -(-count // len(cam_to_world)), []
    for pose, (w, h, fx, fy, cx, cy), alt in zip(cam_to_world, intrinsics, altitude):
        pix = rng.uniform((0, 0), (w, h), (4 * per_camera, 2))
        rays = np.c_[(pix[:, 0] - cx) / fx, (pix[:, 1] - cy) / fy, np.ones(len(pix))] @ pose[:3, :3].T
        descent = -(rays @ up)
        t = (alt - rng.uniform(0, band, len(pix))) / np.where(descent > 0, descent, np.inf)
        keep = (t > 0) & (t * np.linalg.norm(rays, axis=1) <= MAX_RANGE * alt)
        out.append((pose[:3, 3] + t[keep, None] * rays[keep])[:per_camera])
    points = np.concatenate(out)
    if len(points) == 0:
        raise UserError("no camera looks down at the ground plane; set the up axis and ground height, or give --points")
    return points[rng.permutation(len(points))[:count]]


def read_points(path: str | Path, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """[P, 3] float64 points (times ``scale``) and [P, 3] uint8 colours from a ``.ply`` (vertex x, y, z and
    optionally red, green, blue) or from a COLMAP model folder's ``points3D``."""
    path = Path(path)
    if path.is_dir():
        model = read_model(_sparse_dir(path) or path, keypoints=False)
        xyz, rgb = model.points, model.colors
    else:
        vertex = read_ply_vertices(path, "point cloud PLY")
        require_finite_fields(vertex, path, "the point cloud")
        if not {"x", "y", "z"} <= set(vertex.dtype.names):
            raise UserError(f"{path}: the vertex element has no x, y, z properties")
        xyz = np.stack([vertex[k] for k in "xyz"], 1).astype(np.float64)
        rgb = np.full((len(xyz), 3), GREY, np.uint8)
        if {"red", "green", "blue"} <= set(vertex.dtype.names):
            rgb = np.stack([vertex[k] for k in ("red", "green", "blue")], 1).astype(np.float64)
            rgb = np.clip(rgb * (255.0 if rgb.max(initial=0) <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    if len(xyz) == 0 or not np.isfinite(xyz).all():
        raise UserError(f"{path}: the point cloud is empty or holds non-finite coordinates")
    return xyz * scale, rgb


def _frames_model(frames: Sequence[_Frame], points: np.ndarray, colors: np.ndarray) -> ColmapModel:
    """A COLMAP model of ``frames``: one camera per distinct intrinsics and distortion (PINHOLE, or OPENCV /
    FULL_OPENCV with the lens distortion, which loading then undistorts), world-to-camera poses."""
    cameras: dict[int, ColmapCamera] = {}
    ids: dict[tuple, int] = {}
    images = {}
    for i, f in enumerate(frames, 1):
        camera_id = ids.setdefault((f.intrinsics, f.distortion), len(ids) + 1)
        w, h, *params = f.intrinsics
        model = {0: "PINHOLE", 4: "OPENCV", 8: "FULL_OPENCV"}[len(f.distortion)]
        cameras.setdefault(camera_id, ColmapCamera(camera_id, model, w, h, np.array([*params, *f.distortion])))
        world_to_cam_R = f.cam_to_world[:3, :3].T
        tvec = -world_to_cam_R @ f.cam_to_world[:3, 3]
        images[i] = ColmapImage(i, rotmat_to_qvec(world_to_cam_R), tvec, camera_id, f.name)
    return ColmapModel(cameras, images, points, colors, np.zeros(len(points)))


def matrixcity_to_colmap(transforms_json_paths: Mapping[str, Sequence[str | Path]],
                         image_root: str | Path | Sequence[str | Path] | None, out_dir: str | Path, *,
                         points: str | Path | None = None, num_points: int = 100_000,
                         up: Sequence[float] = (0.0, 0.0, 1.0), ground_height: float = 0.0, scale: float = 1.0,
                         sequential_names: bool = False, copy: bool = False, seed: int = 0) -> dict[str, int]:
    """Convert MatrixCity (or any NeRF-style ``transforms.json``) into ``out_dir/{train,val}``.

    Args:
        transforms_json_paths: ``{"train": [json, ...], "val": [json, ...]}`` ("test" is taken as "val"); several
            files per split (e.g. one per block) are concatenated. Frames: ``transform_matrix`` (camera-to-world,
            OpenGL axes) and ``file_path`` (relative, extension optional). Intrinsics per frame, else per file
            (``fl_x, fl_y, cx, cy, w, h`` or ``camera_angle_x``), else from the first training file.
        image_root: folder(s) the ``file_path`` are looked up in, as given, as ``<block>/input/<name>`` and
            ``<block>/<name>`` (untarred MatrixCity blocks) or as ``<name>``; each JSON's folder is tried last.
        out_dir: gets ``train/`` and ``val/``, each ``images/`` (links) + ``sparse/0`` (COLMAP binary).
        points: initial point cloud in the same world frame (.ply or COLMAP model folder), else ``num_points``
            random points in the training cameras' view of the ground (``ground_points``; ``up`` and
            ``ground_height`` in transforms.json units). Only ``train/`` gets points.
        scale: multiplies positions (camera centres and points); 1 keeps the JSON's units, those of
            CityGaussian's MatrixCity model and the paper's box if its rotations carry no scale.
        sequential_names: name images ``0000.png``... per split in frame order, as CityGaussian's released
            MatrixCity COLMAP models do.
    Returns:
        {"train": images, "val": images, "points": points, "rescaled": poses whose rotation had a scale}.
    """
    splits = _checked_splits(transforms_json_paths, points, num_points, scale)
    out_dir = Path(out_dir)
    roots = [image_root] if isinstance(image_root, (str, Path)) else list(image_root or [])
    roots = [Path(root) for root in roots]
    _ensure_free(out_dir)
    frames = _split_frames(splits, roots, scale, sequential_names)
    xyz, rgb = _initial_points(frames["train"], points, num_points, scale, up, ground_height, seed)
    with _staged(out_dir) as stage:
        for split, split_frames in frames.items():
            cloud = (xyz, rgb) if split == "train" else (np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
            write_model(_frames_model(split_frames, *cloud), stage / split / "sparse" / "0")
            _place(((f.src, f.name) for f in split_frames), stage / split / "images", copy)
    rescaled = sum(abs(f.rotation_scale - 1) > 1e-3 for split_frames in frames.values() for f in split_frames)
    return {"train": len(frames["train"]), "val": len(frames["val"]), "points": len(xyz), "rescaled": rescaled}


def _checked_splits(transforms_json_paths: Mapping[str, Sequence[str | Path]], points: str | Path | None,
                    num_points: int, scale: float) -> dict[str, list[Path]]:
    """split → its transforms files ("test" taken as "val"); a UserError unless both splits have files and the
    scale and number of random points make sense."""
    splits = {("val" if k == "test" else k): [Path(p) for p in v] for k, v in transforms_json_paths.items()}
    if set(splits) != set(SPLITS) or not all(splits.values()):
        raise UserError("MatrixCity conversion needs training and test transforms files (train and val/test)")
    if not scale > 0 or (points is None and num_points < 1):
        raise UserError(f"the scale must be > 0 and the number of random points >= 1 (got {scale}, {num_points})")
    return splits


def _split_frames(splits: dict[str, list[Path]], roots: list[Path], scale: float, sequential_names: bool
                  ) -> dict[str, list[_Frame]]:
    """split → its frames, named; intrinsics a file does not give come from the first training file."""
    fallback = {k: v for k, v in read_transforms(splits["train"][0]).items() if k != "frames"}
    frames = {split: _read_frames(paths, roots, fallback, scale) for split, paths in splits.items()}
    for split_frames in frames.values():
        _name_frames(split_frames, sequential_names)
    return frames


def _initial_points(train: list[_Frame], points: str | Path | None, num_points: int, scale: float,
                    up: Sequence[float], ground_height: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[P, 3] positions and [P, 3] uint8 colours of the training split's points: those of ``points`` when given,
    else ``num_points`` grey random points in the training cameras' view of the ground."""
    if points is not None:
        return read_points(points, scale)
    xyz = ground_points(np.stack([f.cam_to_world for f in train]), np.array([f.intrinsics for f in train]),
                        num_points, np.random.default_rng(seed), up, ground_height * scale)
    return xyz, np.full((len(xyz), 3), GREY, np.uint8)
