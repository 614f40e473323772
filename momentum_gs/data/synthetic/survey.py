"""Photos of a drone survey over the synthetic city, as a camera writes them: JPEGs with GPS EXIF, for
testing and measuring `mgs sfm` on captures of any size.

``survey_poses(n)`` flies a lawnmower pattern sized for ``n`` photos (75 % forward and 60 % side overlap at
the given altitude, a few degrees off nadir, headings alternating row by row); ``write_survey`` renders them
over a city large enough to fill every view and writes ``photoNNNN.jpg`` with the position in EXIF. World
frame: metres, x east, y north, z up, the city's centre at ``ORIGIN``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data.synthetic import SynthPreset, intrinsics, look_at_pose
from momentum_gs.data.synthetic.city import make_city
from momentum_gs.data.synthetic.render import render

ORIGIN = np.array([47.3769, 8.5417, 420.0])  # Zürich: lat°, lon°, m; the city's (0, 0, 0)
PITCH = np.radians(80.0)  # below the horizon: 10° off straight down, along the heading
BLOCK_PITCH = 32.0  # metres: a 24 m city block and an 8 m road


def footprint(altitude: float, hfov_deg: float, aspect: float) -> tuple[float, float]:
    """Ground width (across the heading) and depth (along it), metres, of a nadir view."""
    width = 2 * altitude * np.tan(np.radians(hfov_deg) / 2)
    return width, width / aspect


def survey_poses(n: int, altitude: float = 60.0, hfov_deg: float = 70.0, aspect: float = 4 / 3,
                 forward_overlap: float = 0.75, side_overlap: float = 0.6,
                 seed: int = 0) -> list[np.ndarray]:
    """world_to_cam [4, 4] of ``n`` photos in rows along x, the rows ``side_overlap`` apart along y; heights
    vary by ±2 m and headings by ±3°, as a real flight's do. The pattern is about square."""
    rng = np.random.default_rng([seed, n])
    across, along = footprint(altitude, hfov_deg, aspect)
    step, gap = along * (1 - forward_overlap), across * (1 - side_overlap)
    rows = max(1, round(np.sqrt(n * step / gap)))
    cols = int(np.ceil(n / rows))
    poses = []
    for row in range(rows):
        y = (row - (rows - 1) / 2) * gap
        heading = 0.0 if row % 2 == 0 else np.pi
        for col in range(cols)[:: 1 if row % 2 == 0 else -1]:
            x = (col - (cols - 1) / 2) * step
            yaw = heading + np.radians(rng.uniform(-3, 3))
            poses.append(look_at_pose(np.array([x, y, altitude + rng.uniform(-2, 2)]), yaw, PITCH))
    return poses[:n]


def city_for(poses: list[np.ndarray], altitude: float, hfov_deg: float, seed: int = 0):
    """A city whose blocks cover every view's footprint (plus a margin)."""
    centres = np.stack([-p[:3, :3].T @ p[:3, 3] for p in poses])
    reach = np.abs(centres[:, :2]).max(axis=0) + footprint(altitude, hfov_deg, 1.0)[0]
    blocks = tuple(int(b) for b in np.ceil(2 * reach / BLOCK_PITCH))
    return make_city(np.random.default_rng([seed, 0]), blocks, max_height=30.0)


def gps_exif(lat: float, lon: float, alt: float, focal_35mm: float) -> bytes:
    """EXIF with a GPS position (degrees, minutes, seconds), a camera make and model and the 35 mm focal
    length."""
    import piexif  # optional: the sfm extra

    def dms(value: float) -> tuple:
        value = abs(value)
        d, m = int(value), int(value * 60) % 60
        return (d, 1), (m, 1), (round((value * 3600 - d * 3600 - m * 60) * 1_000_000), 1_000_000)

    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Synthetic", piexif.ImageIFD.Model: b"City Drone"},
        "Exif": {piexif.ExifIFD.FocalLengthIn35mmFilm: round(focal_35mm)},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S", piexif.GPSIFD.GPSLatitude: dms(lat),
                piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W", piexif.GPSIFD.GPSLongitude: dms(lon),
                piexif.GPSIFD.GPSAltitudeRef: 0, piexif.GPSIFD.GPSAltitude: (round(alt * 1000), 1000)},
    })


def focal_35mm(hfov_deg: float) -> float:
    """The 35 mm-equivalent focal length of a horizontal field of view (COLMAP takes the frame as 35 mm wide)."""
    return 17.5 / np.tan(np.radians(hfov_deg) / 2)


def write_photo(path: Path, city, preset: SynthPreset, world_to_cam: np.ndarray, lla: np.ndarray,
                upscale: tuple[int, int] | None = None) -> None:
    """Render one view, optionally resize it to ``upscale`` = (width, height), and write it as a JPEG with
    ``lla`` (lat°, lon°, m) in its EXIF."""
    import piexif  # optional: the sfm extra

    image = render(city, intrinsics(preset), world_to_cam, preset.width, preset.height, 1, True)
    image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    if upscale is not None:
        image = cv2.resize(image, upscale, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    piexif.insert(gps_exif(*lla, focal_35mm(preset.hfov_deg)), str(path))


def write_survey(folder: Path, n: int, width: int = 1600, height: int = 1200, upscale: tuple[int, int] | None = None,
                 gps_noise_m: float = 1.0, altitude: float = 60.0, hfov_deg: float = 70.0, workers: int = 1,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Render ``n`` survey photos into ``folder`` with their GPS (noisy by ``gps_noise_m`` metres, as a
    drone's is); returns photo name → true camera centre (metres, city frame)."""
    poses = survey_poses(n, altitude, hfov_deg, width / height, seed=seed)
    city = city_for(poses, altitude, hfov_deg, seed)
    preset = SynthPreset(width=width, height=height, hfov_deg=hfov_deg)
    rng = np.random.default_rng([seed, n, 1])
    folder.mkdir(parents=True, exist_ok=True)
    centres = {f"photo{i:04d}.jpg": -p[:3, :3].T @ p[:3, 3] for i, p in enumerate(poses)}
    measured = np.stack(list(centres.values())) + rng.normal(0, gps_noise_m, (n, 3))
    lla = enu_to_wgs84(measured, ORIGIN)
    jobs = [(folder / name, city, preset, pose, lla[i], upscale) for i, (name, pose) in enumerate(zip(centres, poses))]
    if workers <= 1:
        for job in jobs:
            write_photo(*job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(write_photo, *zip(*jobs)):
                pass
    return centres
