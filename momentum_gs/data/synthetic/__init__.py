"""An embedded synthetic aerial scene: a procedural city photographed by a drone, in the Mill-19 layout.

``make_synthetic_scene(out)`` writes ``out/train`` and ``out/val`` (each ``images/*.png`` + ``sparse/0``
COLMAP binary model), ``out/val/depths/*.npy`` (each held-out view's ray-cast depth: float32 camera-space z
in model units, NaN where the view sees the sky), ``out/mesh.ply`` (the ground-truth surface: the triangles
of the city that a training view sees, model units, per-vertex albedo; see :mod:`.mesh`) and
``out/scene.json``. Cameras fly a lawnmower path at a fixed altitude with oblique views; the held-out views
are positions interleaved along the same path. The point cloud imitates SfM: surface points seen by the
training views, with small noise and a few outliers. Everything is a function of the seed. World frame:
z up, ground at z = 0, cameras with OpenCV axes; generated in metres and written in model units of
``metres_per_unit`` metres (10 by default), as SfM models have their own scale.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from momentum_gs.data.colmap.folder import write_model
from momentum_gs.data.colmap.model import ColmapCamera, ColmapImage, ColmapModel, rotmat_to_qvec
from momentum_gs.data.scene_info import SCENE_INFO_NAME, read_scene_info
from momentum_gs.data.synthetic.city import City, make_city
from momentum_gs.data.synthetic.mesh import COUNTRYSIDE, CityMesh, ground_truth_mesh, mesh_colors
from momentum_gs.data.synthetic.render import cast_camera, render, shade
from momentum_gs.errors import UserError
from momentum_gs.io.mesh import write_mesh

MESH_NAME = "mesh.ply"
# Independent random streams, so that e.g. exposure variation leaves the geometry and poses untouched.
_CITY, _PATH, _POINTS, _EXPOSURE = range(4)


@dataclass(frozen=True)
class SynthPreset:
    """The size of a synthetic scene (all overridable by keyword in ``make_synthetic_scene``)."""

    blocks: tuple[int, int] = (4, 4)  # city blocks along x and y (24 m blocks, 8 m roads)
    width: int = 128  # image width, pixels
    height: int = 96  # image height, pixels
    n_train: int = 48  # training views
    n_val: int = 8  # held-out views, interleaved along the flight path
    n_points: int = 4000  # SfM-like surface points (plus outliers)
    outlier_fraction: float = 0.01  # extra points uniform in the city box, as SfM mismatches
    altitude: float = 55.0  # flight height above the ground, metres
    pitch_deg: tuple[float, float] = (35.0, 60.0)  # camera pitch below the horizon, degrees
    hfov_deg: float = 60.0  # horizontal field of view, degrees
    supersample: int = 2  # rays per pixel along each axis (anti-aliasing)
    shadows: bool = True  # cast sun shadows
    metres_per_unit: float = 10.0  # scale of the written model: SfM units, like a real reconstruction's
    ground_grain: float = 0.0  # the ground's albedo varies by up to this share from one 15 cm square to the next
    surface_grain: float = 0.0  # ground, roofs and walls: albedo up to this share from one 50 cm square to the next


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(blocks=(2, 2), width=48, height=36, n_train=8, n_val=2, n_points=400, altitude=45.0),
    "small": SynthPreset(blocks=(3, 3), width=96, height=72, n_train=30, n_val=5, n_points=2000, altitude=50.0),
    "demo": SynthPreset(),
    "city8": SynthPreset(blocks=(8, 4), width=160, height=120, n_train=192, n_val=24, n_points=16000,
                         altitude=60.0),
}


def look_at_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """[4, 4] world_to_cam of a camera at ``position`` [3] heading ``yaw`` (rad from +x, counter-clockwise)
    and tilted ``pitch`` rad below the horizon, with no roll (image x stays horizontal)."""
    forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), -np.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:  # looking straight down: let yaw set the image x axis
        right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])  # rows: camera x, y (down), z axes in world
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3], world_to_cam[:3, 3] = R, -R @ position
    return world_to_cam


def intrinsics(p: SynthPreset) -> np.ndarray:
    """[3, 3] K in pixels: square pixels, principal point at the image centre."""
    f = 0.5 * p.width / np.tan(np.radians(p.hfov_deg) / 2)
    return np.array([[f, 0.0, p.width / 2], [0.0, f, p.height / 2], [0.0, 0.0, 1.0]])


def _lawnmower(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """[n, 2] positions equally spaced along a serpentine path covering the rectangle ``lo``-``hi``."""
    size = hi - lo
    rows = max(2, int(round(np.sqrt(n * size[1] / size[0]))))  # row spacing ≈ spacing along a row
    ys = np.linspace(lo[1], hi[1], rows)
    corners = [[(lo[0], y), (hi[0], y)][:: 1 if r % 2 == 0 else -1] for r, y in enumerate(ys)]
    corners = np.array(corners, dtype=np.float64).reshape(-1, 2)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(corners, axis=0), axis=1))])
    s = (np.arange(n) + 0.5) / n * arc[-1]
    return np.column_stack([np.interp(s, arc, corners[:, 0]), np.interp(s, arc, corners[:, 1])])


def flight_path(rng: np.random.Generator, city: City, p: SynthPreset) -> list[np.ndarray]:
    """``n_train + n_val`` world_to_cam [4, 4] poses along the path, each looking at a point of the city.

    Yaws follow a golden-angle sequence (with jitter) so that every area is seen from many headings; a yaw
    whose view centre would fall outside the city is turned in steps of 45° until it falls inside.
    """
    n = p.n_train + p.n_val
    half, margin = city.size / 2, 0.25 * p.altitude
    xy = _lawnmower(-half - margin, half + margin, n)
    poses = []
    for k in range(n):
        pitch = np.radians(rng.uniform(*p.pitch_deg))
        altitude = p.altitude * rng.uniform(0.97, 1.03)
        reach = altitude / np.tan(pitch)  # horizontal distance to the ground under the image centre
        yaw = k * np.radians(137.5) + rng.uniform(-0.3, 0.3)
        for _ in range(8):
            target = xy[k] + reach * np.array([np.cos(yaw), np.sin(yaw)])
            if np.all(np.abs(target) <= half):
                break
            yaw += np.pi / 4
        else:
            yaw = np.arctan2(-xy[k, 1], -xy[k, 0])  # towards the city centre
        poses.append(look_at_pose(np.array([*xy[k], altitude]), yaw, pitch))
    return poses


def val_indices(p: SynthPreset) -> np.ndarray:
    """[n_val] positions along the path held out for validation, spread evenly between training views."""
    n = p.n_train + p.n_val
    return np.floor((np.arange(p.n_val) + 0.5) * n / max(p.n_val, 1)).astype(np.int64)


def sample_points(rng: np.random.Generator, city: City, p: SynthPreset, poses: list[np.ndarray]) -> tuple:
    """SfM-like points seen by the training ``poses``.

    Returns ``(points [P, 3] metres, colors [P, 3] uint8, errors [P] pixels, observations)`` where
    observations[v] = (xys [n, 2] pixels, rows [n]) are the sampled pixels of view v and their point rows.
    """
    K, sigma = intrinsics(p), 0.002 * float(np.max(city.size))
    counts = np.full(len(poses), p.n_points // len(poses)) + (np.arange(len(poses)) < p.n_points % len(poses))
    points, colours, observations, start = [], [], [], 0
    for world_to_cam, count in zip(poses, counts):
        pix = rng.uniform([0.0, 0.0], [p.width, p.height], size=(count, 2))
        hits, o, d = cast_camera(city, K, world_to_cam, pix)
        keep = np.isfinite(hits.t)  # the sky has no points
        colour = shade(city, hits, o, d, p.shadows)[keep]
        points.append(o + hits.t[keep, None] * d[keep] + rng.normal(0.0, sigma, (int(keep.sum()), 3)))
        colours.append(colour)
        observations.append((pix[keep], start + np.arange(int(keep.sum()))))
        start += int(keep.sum())
    n_out = int(round(p.outlier_fraction * p.n_points))
    box = city.bounds()
    points.append(rng.uniform(box[0], box[1] + [0.0, 0.0, 10.0], size=(n_out, 3)))
    colours.append(rng.uniform(0.0, 1.0, (n_out, 3)))
    points, colours = np.concatenate(points), np.concatenate(colours)
    errors = np.concatenate([rng.uniform(0.2, 1.2, start), rng.uniform(1.5, 4.0, n_out)])
    return points, np.round(colours * 255).astype(np.uint8), errors, observations


def _write_split(split_dir: Path, names: list[str], images: list[np.ndarray], poses: list[np.ndarray],
                 p: SynthPreset, cloud: tuple, observations: list | None) -> None:
    """Write one Mill-19 split: ``images/*.png`` and ``sparse/0`` (one shared PINHOLE camera)."""
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    K = intrinsics(p)
    camera = ColmapCamera(1, "PINHOLE", p.width, p.height, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
    records = {}
    for i, (name, image, world_to_cam) in enumerate(zip(names, images, poses)):
        cv2.imwrite(str(split_dir / "images" / name), image[..., ::-1])  # OpenCV writes BGR
        xys, rows = observations[i] if observations else (None, None)
        records[i + 1] = ColmapImage(i + 1, rotmat_to_qvec(world_to_cam[:3, :3]),
                                     world_to_cam[:3, 3] / p.metres_per_unit, 1, name, xys, rows)
    points, colours, errors = cloud
    write_model(ColmapModel({1: camera}, records, points / p.metres_per_unit, colours, errors),
                split_dir / "sparse" / "0")


def _resolve(preset: str, overrides: dict) -> SynthPreset:
    """The preset with ``overrides`` applied; unknown names become a UserError."""
    if preset not in PRESETS:
        raise UserError(f"unknown synthetic preset '{preset}' (choose one of: {', '.join(PRESETS)})")
    fields = {f.name for f in dataclasses.fields(SynthPreset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(f"unknown synthetic scene setting(s) {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(fields))})")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}  # from YAML/CLI
    p = dataclasses.replace(PRESETS[preset], **overrides)
    if (min(p.n_train, p.n_val, p.width, p.height, p.supersample, *p.blocks) < 1
            or not 0 < p.pitch_deg[0] <= p.pitch_deg[1] <= 90 or p.altitude <= 0 or p.metres_per_unit <= 0
            or not 0 <= p.ground_grain <= 1 or not 0 <= p.surface_grain <= 1):
        raise UserError(f"synthetic scene settings out of range: {p}")
    return p


def _prepare(out_dir: Path) -> None:
    """Make ``out_dir`` ready: new, empty, or a previous synthetic scene (whose splits are replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; the synthetic scene needs a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / "scene.json").is_file():
            raise UserError(f"{out_dir} is not empty and holds no synthetic scene; choose a new folder")
        for split in ("train", "val"):
            shutil.rmtree(out_dir / split, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _exposure_gains(seed: int, n: int) -> np.ndarray:
    """[n, 3] per-image RGB gains: 0.8-1.2 overall times ±5 % per channel (auto exposure, white balance)."""
    rng = np.random.default_rng([seed, _EXPOSURE])
    return rng.uniform(0.8, 1.2, (n, 1)) * rng.uniform(0.95, 1.05, (n, 3))


def make_synthetic_scene(out_dir: Path, preset: str = "demo", seed: int = 0, vary_exposure: bool = False,
                         progress: Callable[[int, int], None] | None = None, **overrides) -> Path:
    """Generate the scene ``preset`` (see ``PRESETS``) into ``out_dir`` and return ``out_dir``.

    Args:
        vary_exposure: multiply each image by a random gain (0.8-1.2 overall, ±5 % per channel), like the
            auto-exposure of a real drone flight; geometry, poses and points stay the same.
        progress: called as ``progress(done, total)`` after each rendered view.
        overrides: ``SynthPreset`` fields to change, e.g. ``width=64``.
    """
    p, out_dir = _resolve(preset, overrides), Path(out_dir)
    _prepare(out_dir)
    city = _city(p, seed)
    poses = flight_path(np.random.default_rng([seed, _PATH]), city, p)
    gains = _exposure_gains(seed, len(poses))
    images, depths = [], []
    for i, world_to_cam in enumerate(poses):
        image, depth = render(city, intrinsics(p), world_to_cam, p.width, p.height, p.supersample, p.shadows,
                              with_depth=True)
        depths.append(np.where(np.isfinite(depth), depth / p.metres_per_unit, np.nan).astype(np.float32))
        image = image * gains[i] if vary_exposure else image
        images.append(np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8))
        if progress is not None:
            progress(i + 1, len(poses))
    names = [f"{i:06d}.png" for i in range(len(poses))]
    val = val_indices(p)
    train = np.setdiff1d(np.arange(len(poses)), val)
    *cloud, observations = sample_points(np.random.default_rng([seed, _POINTS]), city, p, [poses[i] for i in train])
    for split, idx, obs in (("train", train, observations), ("val", val, None)):
        picked = [(names[i], images[i], poses[i]) for i in idx]
        _write_split(out_dir / split, *(list(column) for column in zip(*picked)), p, tuple(cloud), obs)
    (out_dir / "val" / "depths").mkdir()
    for i in val:  # ground-truth depth of the held-out views, in the COLMAP model's units (NaN: sky)
        np.save(out_dir / "val" / "depths" / f"{Path(names[i]).stem}.npy", depths[i], allow_pickle=False)
    mesh = ground_truth_mesh(city, [poses[i] for i in train], intrinsics(p), p.width, p.height)
    write_mesh(out_dir / MESH_NAME, mesh.vertices / p.metres_per_unit, mesh.faces, mesh_colors(city, mesh))
    _write_info(out_dir, preset, seed, vary_exposure, p, city, dict(zip(names, gains.tolist())), mesh)
    return out_dir


def _write_info(out_dir: Path, preset: str, seed: int, vary_exposure: bool, p: SynthPreset, city: City,
                gains: dict, mesh: CityMesh) -> None:
    """``scene.json``: how the scene was made and where it lies (later code reads the up axis and bounds)."""
    info = {
        "generator": "momentum_gs.data.synthetic", "version": 1, "preset": preset, "seed": seed,
        "settings": dataclasses.asdict(p), "vary_exposure": vary_exposure,
        "up": [0.0, 0.0, 1.0], "metres_per_unit": p.metres_per_unit, "ground": "plane z = 0 (unbounded)",
        # model units, as the COLMAP files: [[xmin, ymin, zmin], [xmax, ymax, zmax]]
        "city_bounds": (city.bounds() / p.metres_per_unit).tolist(),
        # xy extent of the city and its ring of tree clumps, model units
        "ground_size": ((city.size + 2 * COUNTRYSIDE) / p.metres_per_unit).tolist(),
        # the ground-truth surface seen by the training views; its box in model units, as city_bounds
        "mesh": MESH_NAME, "mesh_faces": len(mesh.faces),
        "mesh_bounds": (np.stack([mesh.vertices.min(0), mesh.vertices.max(0)]) / p.metres_per_unit).tolist(),
        "exposure_gains": gains if vary_exposure else None,  # per image name, RGB
    }  # fmt: skip
    (out_dir / SCENE_INFO_NAME).write_text(json.dumps(info, indent=1) + "\n")


def _city(p: SynthPreset, seed: int) -> City:
    """The city of preset ``p`` and ``seed``, metres."""
    city = make_city(np.random.default_rng([seed, _CITY]), p.blocks, max_height=min(35.0, 0.65 * p.altitude))
    return dataclasses.replace(city, ground_grain=p.ground_grain, surface_grain=p.surface_grain)


def city_of(out_dir: Path) -> tuple[City, float]:
    """The city a synthetic scene was made from (metres), rebuilt from its ``scene.json``, and the scene's metres
    per model unit; a UserError for a folder that is not a synthetic scene."""
    info = read_scene_info(out_dir)
    if info is None or "settings" not in info or "seed" not in info:
        raise UserError(f"{Path(out_dir) / SCENE_INFO_NAME} does not say how the scene was made: {out_dir} is not a "
                        "synthetic scene written by `mgs synth`")
    settings = {key: tuple(value) if isinstance(value, list) else value for key, value in info["settings"].items()}
    p = SynthPreset(**settings)
    return _city(p, int(info["seed"])), p.metres_per_unit


def scene_bounds(out_dir: Path) -> np.ndarray:
    """[2, 3] (min, max) box of the city in model units (z up), read from ``out_dir/scene.json``
    (:func:`~momentum_gs.data.scene_info.read_scene_info`)."""
    info = read_scene_info(out_dir)
    if info is None or "city_bounds" not in info:
        lacks = "not found" if info is None else "has no city_bounds"
        raise UserError(f"{Path(out_dir) / SCENE_INFO_NAME} {lacks}: {out_dir} is not a synthetic scene written by "
                        "`mgs synth`")
    return np.array(info["city_bounds"], dtype=np.float64)
