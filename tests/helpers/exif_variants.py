"""Copies of real photos with their EXIF GPS changed: the altitude drifts or is noisy, a position is far off,
a reference or a value is malformed. For the tests of `mgs sfm`'s georeference and GPS reading."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np

Edit = Callable[[int, int, dict], None]  # (index in capture order, photo count, the EXIF's GPS dict) in place


def rational(value: float, den: int = 1000) -> tuple[int, int]:
    return int(round(abs(value) * den)), den


def dms(value: float) -> tuple:
    value = abs(value)
    d, m = int(value), int(value * 60) % 60
    return (d, 1), (m, 1), rational(value * 3600 - d * 3600 - m * 60, 1_000_000)


def read_lla(gps: dict) -> np.ndarray:
    import piexif

    def deg(parts, ref, negative):
        value = sum(n / d / 60 ** i for i, (n, d) in enumerate(parts))
        return -value if ref.strip(b"\x00 ") == negative else value

    t = piexif.GPSIFD
    alt = gps[t.GPSAltitude][0] / gps[t.GPSAltitude][1]
    return np.array([deg(gps[t.GPSLatitude], gps[t.GPSLatitudeRef], b"S"),
                     deg(gps[t.GPSLongitude], gps[t.GPSLongitudeRef], b"W"), alt])


def write_lla(gps: dict, lla: np.ndarray) -> None:
    import piexif

    t = piexif.GPSIFD
    gps[t.GPSLatitude], gps[t.GPSLatitudeRef] = dms(lla[0]), b"N" if lla[0] >= 0 else b"S"
    gps[t.GPSLongitude], gps[t.GPSLongitudeRef] = dms(lla[1]), b"E" if lla[1] >= 0 else b"W"
    gps[t.GPSAltitude], gps[t.GPSAltitudeRef] = rational(lla[2]), 0 if lla[2] >= 0 else 1


def altitude_ramp(metres: float) -> Edit:
    """The altitude climbs by ``metres`` from the first photo to the last (a barometer's drift)."""
    def edit(i: int, n: int, gps: dict) -> None:
        lla = read_lla(gps)
        write_lla(gps, lla + [0, 0, metres * i / max(n - 1, 1)])
    return edit


def altitude_noise(metres: float, seed: int = 0) -> Edit:
    """Uniform noise of ±``metres`` on every altitude (the same draws for a given seed)."""
    draws = np.random.default_rng(seed).uniform(-metres, metres, 10_000)

    def edit(i: int, n: int, gps: dict) -> None:
        write_lla(gps, read_lla(gps) + [0, 0, draws[i]])
    return edit


def moved(index: int, east_m: float) -> Edit:
    """Photo ``index`` placed ``east_m`` metres east of where it was taken."""
    def edit(i: int, n: int, gps: dict) -> None:
        if i == index:
            lla = read_lla(gps)
            write_lla(gps, lla + [0, np.degrees(east_m / (6378137.0 * np.cos(np.radians(lla[0])))), 0])
    return edit


def chain(*edits: Edit) -> Edit:
    def edit(i: int, n: int, gps: dict) -> None:
        for e in edits:
            e(i, n, gps)
    return edit


def copy_with_gps(src: Path, dst: Path, edit: Edit) -> list[Path]:
    """Copy the photos of ``src`` (sorted by name: capture order) into ``dst`` with ``edit`` applied to each
    one's EXIF GPS; returns the copies."""
    import piexif

    dst.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    out = []
    for i, photo in enumerate(photos):
        target = dst / photo.name
        shutil.copyfile(photo, target)
        exif = piexif.load(str(target))
        edit(i, len(photos), exif["GPS"])
        exif.pop("thumbnail", None)
        exif["1st"] = {}
        piexif.insert(piexif.dump(exif), str(target))
        out.append(target)
    return out
