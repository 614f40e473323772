"""A scene folder as COLMAP leaves it, written by hand: ``images/`` (PNG) and a model in ``sparse/0``, cameras on a
circle looking at the origin, images of a gradient and noise."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.colmap.folder import write_model
from momentum_gs.data.colmap.model import ColmapCamera, ColmapImage, ColmapModel, rotmat_to_qvec

W, H = 64, 48
PINHOLE = ("PINHOLE", [60.0, 62.0, 20.5, 30.25])  # principal point well off the centre


def look_at(center: np.ndarray, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[4, 4] world-to-camera pose (x right, y down, z forward) looking from ``center`` at ``target``."""
    z = np.asarray(target, float) - center
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 0.0, -1.0], z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, -R @ center
    return pose


def centers(n: int) -> np.ndarray:
    """[n, 3] camera centres on a circle of radius 5 at height 2."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([5 * np.cos(angles), 5 * np.sin(angles), np.full(n, 2.0)], 1)


def pattern(seed: int, width: int = W, height: int = H) -> np.ndarray:
    """[H, W, 3] uint8 RGB: a smooth gradient plus noise, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, np.full_like(xx, seed * 20 % 256)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def make_folder(folder: Path, n: int = 10, camera=PINHOLE, n_points: int = 20, sparse: str = "sparse/0",
                size=(W, H), images=None) -> list[np.ndarray]:
    """Write ``images/`` (PNG) and a COLMAP model into ``folder``; returns the camera centres' poses."""
    (folder / "images").mkdir(parents=True)
    poses = [look_at(c) for c in centers(n)]
    records = {}
    for i, pose in enumerate(poses):
        name = f"img_{i:03d}.png"
        image = pattern(i, *size) if images is None else images[i]
        cv2.imwrite(str(folder / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        # ids in reverse name order, so that sorting by name is visible
        records[100 - i] = ColmapImage(100 - i, rotmat_to_qvec(pose[:3, :3]), pose[:3, 3], 1, name)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (n_points, 3))
    model = ColmapModel({1: ColmapCamera(1, camera[0], *size, np.array(camera[1]))}, records, points,
                        rng.integers(0, 256, (n_points, 3)).astype(np.uint8), np.ones(n_points))
    write_model(model, folder / sparse)
    return poses
