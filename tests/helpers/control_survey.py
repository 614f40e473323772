"""A generated survey with ground control: the synthetic city's views rendered at known poses (the 16-view flight
of tests/test_sfm_synthetic.py), GPS EXIF with a chosen error or none, and ``gcp_list.txt`` files whose marks are
the true points projected into the true cameras with a marking error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data.sfm.gcp import write_gcp_list
from momentum_gs.data.synthetic import SynthPreset, intrinsics, look_at_pose
from momentum_gs.data.synthetic.city import make_city
from momentum_gs.data.synthetic.render import render
from momentum_gs.data.synthetic.survey import focal_35mm, gps_exif

ORIGIN = np.array([47.3769, 8.5417, 420.0])  # Zürich: lat°, lon°, m; the city's (0, 0, 0), x east, y north
PRESET = SynthPreset(blocks=(3, 3), width=640, height=480, altitude=50.0, hfov_deg=70.0)
GSD_M = 2 * PRESET.altitude * np.tan(np.radians(PRESET.hfov_deg) / 2) / PRESET.width  # at the ground, straight down
GCP_SPOTS = ((-20.0, -28.0), (20.0, -28.0), (20.0, 12.0), (-20.0, 12.0), (0.0, -8.0))  # corners and centre, metres
CHECK_SPOTS = ((-10.0, -18.0), (10.0, 2.0), (8.0, -20.0), (-8.0, 4.0))


def flight(side: int = 4) -> list[np.ndarray]:
    """world_to_cam [4, 4] of a ``side`` x ``side`` survey grid over 45 m x 45 m (15 m apart for 4), about 50 m up,
    looking 10-25° off straight down in four headings."""
    poses = []
    for row, y in enumerate(np.linspace(-30, 15, side)):
        for col, x in enumerate(np.linspace(-22.5, 22.5, side)[:: 1 if row % 2 == 0 else -1]):
            yaw, pitch = np.radians(90.0 * (row + col)), np.radians(65.0 + 5 * col)
            poses.append(look_at_pose(np.array([x, y, 50.0 + 2 * col]), yaw, pitch))
    return poses


def write_photos(folder: Path, poses: list[np.ndarray], gps_noise_m: float | None, seed: int = 0,
                 no_fix: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """The views as JPEGs, with GPS EXIF ``gps_noise_m`` off per axis (None: no GPS; the views of ``no_fix`` carry
    latitude and longitude 0, as a receiver without a fix writes); name → true centre."""
    import piexif

    city = make_city(np.random.default_rng([0, 0]), PRESET.blocks, max_height=30.0)
    rng = np.random.default_rng([seed, 7])
    folder.mkdir(parents=True)
    centres = {}
    for i, world_to_cam in enumerate(poses):
        name = f"view{i:02d}.jpg"
        centres[name] = -world_to_cam[:3, :3].T @ world_to_cam[:3, 3]
        image = render(city, intrinsics(PRESET), world_to_cam, PRESET.width, PRESET.height, 1, True)
        cv2.imwrite(str(folder / name), np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        if gps_noise_m is not None:
            lla = enu_to_wgs84((centres[name] + rng.normal(0, gps_noise_m, 3))[None], ORIGIN)[0]
            piexif.insert(gps_exif(*(lla if i not in no_fix else (0.0, 0.0, 0.0)), focal_35mm(PRESET.hfov_deg)),
                          str(folder / name))
    return centres


def write_control(path: Path, poses: list[np.ndarray], spots, prefix: str, mark_px: float, seed: int = 0,
                  height: bool = True) -> dict[str, np.ndarray]:
    """A ``gcp_list.txt`` (EPSG:4326) of ground points at ``spots`` (x, y metres, on z = 0) marked on every view
    whose frame holds them, ``mark_px`` pixels off; name → true city point. ``height`` False writes 0 for every
    height (as a file without heights does)."""
    K, rng, rows, truth = intrinsics(PRESET), np.random.default_rng([seed, 11]), [], {}
    for k, (x, y) in enumerate(spots):
        name, point = f"{prefix}{k}", np.array([x, y, 0.0])
        truth[name] = point
        lla = enu_to_wgs84(point[None], ORIGIN)[0]
        for i, world_to_cam in enumerate(poses):
            cam = world_to_cam[:3, :3] @ point + world_to_cam[:3, 3]
            pixel = (K @ cam)[:2] / cam[2] + rng.normal(0, mark_px, 2)
            if cam[2] > 0 and 0 <= pixel[0] < PRESET.width and 0 <= pixel[1] < PRESET.height:
                rows.append((np.array([lla[1], lla[0], lla[2] if height else 0.0]), pixel, f"view{i:02d}.jpg", name))
    write_gcp_list(path, "EPSG:4326", rows)
    return truth
