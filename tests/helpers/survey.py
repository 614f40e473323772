"""Drone surveys as scenes, without images: 64×48 cameras placed by position, heading and pitch, points on a
ground with some relief, and a lawnmower grid of oblique views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from momentum_gs.data.camera import Camera
from momentum_gs.data.scene import SceneData
from momentum_gs.data.synthetic import look_at_pose

SIZE = (64, 48)


def camera(position, yaw_deg: float, pitch_deg: float, name: str = "c") -> Camera:
    """A 64×48 camera at ``position`` (z up) heading ``yaw_deg`` from +x, ``pitch_deg`` below the horizon."""
    f = 0.5 * SIZE[0] / np.tan(np.radians(30.0))
    K = torch.tensor([[f, 0, SIZE[0] / 2], [0, f, SIZE[1] / 2], [0, 0, 1]], dtype=torch.float32)
    pose = look_at_pose(np.asarray(position, float), np.radians(yaw_deg), np.radians(pitch_deg))
    return Camera(name, *SIZE, K, torch.from_numpy(pose).float())


def scene_of(cameras: list[Camera], points: np.ndarray) -> SceneData:
    """A scene of ``cameras`` (all for training, renamed and numbered in order) and the [N, 3] ``points``."""
    cameras = [Camera(f"{i:04d}", c.width, c.height, c.K, c.world_to_cam, uid=i) for i, c in enumerate(cameras)]
    return SceneData("test", Path("."), cameras, [], points.astype(np.float32), np.zeros((len(points), 3), np.uint8))


def ground_points(lo, hi, n: int, seed: int = 0) -> np.ndarray:
    """[n, 3] points spread uniformly over the rectangle ``lo``..``hi`` (x, y) at heights of 0 to 2."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(lo, hi, (n, 2))
    return np.column_stack([xy, rng.uniform(0.0, 2.0, n)])  # a ground with some relief


def lawnmower_scene(nx: int = 16, ny: int = 12, spacing: float = 10.0, warp=None, seed: int = 0) -> SceneData:
    """A drone survey: an nx × ny grid of jittered camera centres at 40 m, oblique views, ground points."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(nx) * spacing, np.arange(ny) * spacing, indexing="ij")
    xy = np.column_stack([gx.ravel(), gy.ravel()]) + rng.normal(0.0, 0.5, (nx * ny, 2))
    if warp is not None:
        xy = warp(xy)
    cams = [camera([x, y, 40.0], 137.5 * k, 50.0) for k, (x, y) in enumerate(xy)]
    lo, hi = xy.min(0) - 20.0, xy.max(0) + 20.0
    return scene_of(cams, ground_points(lo, hi, 20_000, seed))
