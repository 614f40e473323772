"""Photos of a drone survey over the synthetic city, as a camera writes them: JPEGs with GPS EXIF, for
testing and measuring `mgs sfm` on captures of any size.

``survey_poses(n)`` flies a lawnmower pattern sized for ``n`` photos (75 % forward and 60 % side overlap at
the given altitude, a few degrees off nadir, headings alternating row by row); ``write_survey`` renders them
over a city large enough to fill every view and writes ``photoNNNN.jpg`` with the position in EXIF. World
frame: metres, x east, y north, z up, the city's centre at ``ORIGIN``.

``make_flight(pattern)`` is the geometry alone, without images, for testing the georeference: a drone flight
in one of ``PATTERNS`` (fixed-wing or multirotor headings, nadir or oblique gimbal, the camera mounted at any
roll) with the sparse points SfM would find and the GPS the photos would carry; ``to_model_frame`` moves it
into an arbitrary SfM frame.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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


PATTERNS = ("lawnmower", "crosshatch", "orbit", "corridor", "strip")
HFOV_DEG, ASPECT = 70.0, 4 / 3  # the flights' camera: horizontal field of view, width / height


@dataclass
class Flight:
    """A generated flight with what SfM would see of it, in one frame."""
    rotations: np.ndarray  # [N, 3, 3] world_to_cam
    centres: np.ndarray    # [N, 3] camera centres
    points: np.ndarray     # [P, 3] sparse points (ground and roofs)
    seen: np.ndarray       # [N, 3] per camera the median of the points it sees (NaN row when it sees none)
    gps: np.ndarray        # [N, 3] measured ENU (east, north, altitude; altitude NaN when not in EXIF); always
    #                        in the true ENU frame


def _rows(n: int, length: float, width: float, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(xy [n, 2], unit track direction [n, 2]) of ``n`` photos on ``rows`` serpentine rows along x,
    ``length`` m long and spread over ``width`` m along y, centred on the origin; the last row may be short."""
    cols = int(np.ceil(n / rows))
    ys = np.linspace(-width / 2, width / 2, rows) if rows > 1 else np.zeros(1)
    xs = np.linspace(-length / 2, length / 2, cols)
    xy = np.concatenate([np.column_stack([xs[:: 1 - 2 * (r % 2)], np.full(cols, y)]) for r, y in enumerate(ys)])
    track = np.repeat([[1.0 - 2 * (r % 2), 0.0] for r in range(rows)], cols, axis=0)
    return xy[:n], track[:n]


def _track(pattern: str, n: int, altitude: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(xy [n, 2] metres, unit track direction [n, 2]) of the photos of a ``pattern`` flight centred on the
    origin: photos at 75 % forward overlap along a line, lines at 60 % side overlap (an orbit: 1-1.5 x
    ``altitude`` in radius, either way round)."""
    across, along = footprint(altitude, HFOV_DEG, ASPECT)
    step, gap = along * (1 - 0.75), across * (1 - 0.6)
    if pattern in ("lawnmower", "crosshatch"):
        half = n if pattern == "lawnmower" else (n + 1) // 2
        rows = max(1, round(np.sqrt(half * step / gap)))
        length, width = (np.ceil(half / rows) - 1) * step, (rows - 1) * gap
        xy, track = _rows(half, length, width, rows)
        if pattern == "crosshatch":  # the same rectangle again, rows along y
            xy2, track2 = _rows(n - half, width, length, max(1, round(length / gap) + 1))
            xy, track = np.concatenate([xy, xy2[:, ::-1]]), np.concatenate([track, track2[:, ::-1]])
        return xy, track
    if pattern == "corridor":
        lines = int(rng.integers(2, 4))
        return _rows(n, (np.ceil(n / lines) - 1) * step, (lines - 1) * gap, lines)
    if pattern == "strip":
        return _rows(n, (n - 1) * step, 0.0, 1)
    radius, sense = altitude * rng.uniform(1.0, 1.5), rng.choice([-1.0, 1.0])
    angle = rng.uniform(0, 2 * np.pi) + sense * 2 * np.pi * np.arange(n) / n
    radial = np.column_stack([np.cos(angle), np.sin(angle)])
    return radius * radial, sense * np.column_stack([-radial[:, 1], radial[:, 0]])


def _axis_angle(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotations by ``angles`` [N] rad about unit ``axes`` [N, 3] (Rodrigues)."""
    k = np.zeros((len(axes), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    k -= k.transpose(0, 2, 1)
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * k @ k


def _gimbal(yaw: np.ndarray, pitch: float, roll: float) -> np.ndarray:
    """[N, 3, 3] world_to_cam of cameras heading ``yaw`` [N] rad (from +x, counter-clockwise), tilted ``pitch``
    rad off straight down towards the heading (image up = forward at nadir) and mounted rolled by ``roll`` rad
    about the optical axis (image x turned from the heading's right towards the heading)."""
    heading = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], axis=1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], axis=1)
    optical = np.cos(pitch) * np.array([0.0, 0.0, -1.0]) + np.sin(pitch) * heading
    down = np.cross(optical, right)
    x, y = np.cos(roll) * right - np.sin(roll) * down, np.sin(roll) * right + np.cos(roll) * down
    return np.stack([x, y, optical], axis=1)


def flight_poses(pattern: str, n: int = 60, altitude: float = 80.0, mount_roll_deg: float = 0.0,
                 pitch_deg: float = 0.0, fixed_wing: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rotations [N, 3, 3] world_to_cam, centres [N, 3] metres) of ``n`` photos flown in ``pattern`` at
    ``altitude`` m (±2 m). A fixed wing heads along its track (an orbit's tangent); a multirotor keeps one
    heading, or faces the centre of an orbit. Headings vary by ±3°, the gimbal by up to 1° in any direction;
    ``pitch_deg`` tilts the view off straight down, forward along the heading (negative: backward), and
    ``mount_roll_deg`` turns the camera about its optical axis (90: image x along the heading)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown flight pattern {pattern!r}: one of {', '.join(PATTERNS)}")
    rng = np.random.default_rng([seed, PATTERNS.index(pattern), n, 0])
    xy, track = _track(pattern, n, altitude, rng)
    if fixed_wing:
        yaw = np.arctan2(track[:, 1], track[:, 0])
    elif pattern == "orbit":
        yaw = np.arctan2(-xy[:, 1], -xy[:, 0])
    else:
        yaw = np.full(n, rng.uniform(0, 2 * np.pi))
    yaw = yaw + np.radians(rng.uniform(-3, 3, n))
    rotations = _gimbal(yaw, np.radians(pitch_deg), np.radians(mount_roll_deg))
    axes = rng.normal(size=(n, 3))
    error = _axis_angle(axes / np.linalg.norm(axes, axis=1, keepdims=True), np.radians(rng.uniform(0, 1, n)))
    rotations = rotations @ error.transpose(0, 2, 1)  # the camera's axes turned by the error, in the world
    centres = np.column_stack([xy, altitude + rng.uniform(-2, 2, n)])
    return rotations, centres


def _frame_rays(rotations: np.ndarray) -> np.ndarray:
    """[N, 4, 3] unit world directions of each camera's four image corners."""
    tx = np.tan(np.radians(HFOV_DEG) / 2)
    corners = np.array([[sx * tx, sy * tx / ASPECT, 1.0] for sx in (-1, 1) for sy in (-1, 1)])
    rays = np.einsum("nji,kj->nki", rotations, corners)
    return rays / np.linalg.norm(rays, axis=2, keepdims=True)


def _scene(rotations: np.ndarray, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[P, 3] sparse points, metres: a flat ground (z ± 0.2 m) and the roofs of box buildings 5-30 m tall,
    a few thousand over a rectangle holding every view's ground footprint (corner rays at most 78° off
    straight down) and a margin."""
    rays = _frame_rays(rotations)
    reach = centres[:, None, 2] / np.maximum(-rays[..., 2], 0.2)  # [N, 4] metres along each ray to z = 0
    ground = centres[:, None, :2] + reach[..., None] * rays[..., :2]
    margin = 0.25 * centres[:, 2].mean()
    lo = np.minimum(ground.reshape(-1, 2).min(axis=0), centres[:, :2].min(axis=0)) - margin
    hi = np.maximum(ground.reshape(-1, 2).max(axis=0), centres[:, :2].max(axis=0)) + margin
    area = np.prod(hi - lo)
    xy = rng.uniform(lo, hi, (int(np.clip(area / 40.0, 2000, 8000)), 2))
    buildings = max(1, int(0.15 * area / 400.0))  # ~15 % of the ground under 20 m x 20 m roofs
    middle, half = rng.uniform(lo, hi, (buildings, 2)), rng.uniform(5, 15, (buildings, 2))
    inside = (np.abs(xy[:, None] - middle[None]) < half[None]).all(axis=2)  # [P, B]
    height = (inside * rng.uniform(5, 30, buildings)).max(axis=1)
    return np.column_stack([xy, height + rng.normal(0, 0.2, len(xy))])


def in_frame(rotation: np.ndarray, centre: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``points`` [P, 3] in the frame of the camera at ``rotation`` (world to camera) and ``centre``, [P] whether
    each is in front of it and inside its photo: a pinhole of ``HFOV_DEG``, ``ASPECT``)."""
    tx = np.tan(np.radians(HFOV_DEG) / 2)
    cam = (points - centre) @ rotation.T
    z = np.where(cam[:, 2] > 0, cam[:, 2], np.inf)
    return cam, (cam[:, 2] > 0) & (np.abs(cam[:, 0] / z) < tx) & (np.abs(cam[:, 1] / z) < tx / ASPECT)


def _seen(rotations: np.ndarray, centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[N, 3] per camera the component-wise median of the ``points`` [P, 3] inside its frame and in front of it
    (:func:`in_frame`); a NaN row where there are none."""
    seen = np.full((len(centres), 3), np.nan)
    for i, (R, c) in enumerate(zip(rotations, centres)):
        _, inside = in_frame(R, c, points)
        if inside.any():
            seen[i] = np.median(points[inside], axis=0)
    return seen


def make_flight(pattern: str, n: int = 60, altitude: float = 80.0, mount_roll_deg: float = 0.0,
                pitch_deg: float = 0.0, fixed_wing: bool = True, drift_m: float = 0.0,
                gps_noise_m: float = 1.0, altitude_in_exif: bool = True, seed: int = 0,
                gps_wander_m: float = 0.0) -> Flight:
    """A ``flight_poses`` flight over a ground with buildings, in the true ENU frame (metres). Its GPS is the
    true centre plus N(0, ``gps_noise_m``) per axis, the altitude also drifting linearly from 0 at the first
    photo to ``drift_m`` at the last (NaN altitudes when ``altitude_in_exif`` is False), and east and north
    wandering slowly by ``gps_wander_m`` RMS (:func:`wander`), as a consumer receiver's do."""
    rotations, centres = flight_poses(pattern, n, altitude, mount_roll_deg, pitch_deg, fixed_wing, seed)
    points = _scene(rotations, centres, np.random.default_rng([seed, PATTERNS.index(pattern), n, 1]))
    rng = np.random.default_rng([seed, PATTERNS.index(pattern), n, 2])
    gps = centres + rng.normal(0, gps_noise_m, centres.shape)
    gps[:, 2] += np.linspace(0.0, drift_m, n)
    gps[:, :2] += wander(n, gps_wander_m, np.random.default_rng([seed, PATTERNS.index(pattern), n, 4]))
    if not altitude_in_exif:
        gps[:, 2] = np.nan
    return Flight(rotations, centres, points, _seen(rotations, centres, points), gps)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """[3, 3] a proper rotation drawn uniformly (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def to_model_frame(flight: Flight, seed: int = 0) -> tuple[Flight, np.ndarray]:
    """The flight as SfM writes it: rotations, centres, points and seen under a random similarity
    x_model = s R x + t (s in [0.02, 5] log-uniform, R any proper rotation, t ~ N(0, 10)); gps unchanged.
    Returns (the flight in the model frame, the true up [3] in the model frame = R @ [0,0,1])."""
    rng = np.random.default_rng([seed, 3])
    s, R, t = np.exp(rng.uniform(np.log(0.02), np.log(5.0))), _random_rotation(rng), rng.normal(0, 10, 3)

    def move(x: np.ndarray) -> np.ndarray:
        return s * x @ R.T + t

    model = Flight(flight.rotations @ R.T, move(flight.centres), move(flight.points), move(flight.seen),
                   flight.gps.copy())
    return model, R @ np.array([0.0, 0.0, 1.0])


WANDER_PERIODS = (0.6, 1.3, 2.9)  # the slow GPS error's periods, in flights: it changes over minutes, not photos


def wander(n: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """[n, 2] a slowly wandering horizontal GPS error over ``n`` photos in capture order, ``rms`` metres RMS: a
    sum of sinusoids of ``WANDER_PERIODS`` flights with random phases and directions."""
    if rms == 0 or n == 0:
        return np.zeros((n, 2))
    t = np.arange(n) / n
    out = sum(np.sin(2 * np.pi * t[:, None] / period + rng.uniform(0, 2 * np.pi, 2)) * rng.normal(1.0, 0.3, 2)
              for period in WANDER_PERIODS)
    out -= out.mean(0)
    return out * rms / np.sqrt((out ** 2).sum(1).mean())


DISTORTIONS = ("shear", "scale_drift", "stretch", "fold")  # how SfM gets a survey out of shape
SHEAR, SCALE_DRIFT, FOLD_DEG = 0.3, 0.3, 30.0


def distort(flight: Flight, kind: str) -> Flight:
    """The flight as a distorted reconstruction would have it (its GPS unchanged): ``shear`` moves east by
    ``SHEAR`` of the distance north; ``scale_drift`` scales the model from 1 - ``SCALE_DRIFT`` at one end of the
    flight's long axis to 1 + ``SCALE_DRIFT`` at the other, every offset together as SfM's scale drifts (along the
    axis, across it and the heights above the ground, so each camera sees what it saw at the same angles);
    ``stretch`` is that drift along the axis alone, heights and widths kept (the angles the cameras see their
    ground at change by degrees, more than a bundle adjustment keeps); ``fold`` turns the half beyond the middle of
    the long axis ``FOLD_DEG`` about a level hinge there (cameras, points and what they see together)."""
    centre = flight.centres.mean(0)
    _, _, vt = np.linalg.svd(flight.centres[:, :2] - centre[:2])
    axis = np.r_[vt[0], 0.0]  # the long axis, horizontal
    half = np.abs((flight.centres - centre) @ axis).max() or 1.0
    ground = float(np.median(flight.points[:, 2]))
    rotate = np.eye(3)
    if kind == "fold":
        hinge = np.cross([0.0, 0.0, 1.0], axis)
        k = np.array([[0, -hinge[2], hinge[1]], [hinge[2], 0, -hinge[0]], [-hinge[1], hinge[0], 0]])
        a = np.radians(FOLD_DEG)
        rotate = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k

    def move(x: np.ndarray) -> np.ndarray:
        along = (x - centre) @ axis
        if kind == "shear":
            return x + np.outer((x[:, 1] - centre[1]) * SHEAR, [1.0, 0.0, 0.0])
        if kind == "stretch":
            return x + np.outer(along * SCALE_DRIFT * along / (2 * half), axis)
        if kind == "scale_drift":
            across = x - centre - np.outer(along, axis)
            across[:, 2] = x[:, 2] - ground  # heights scale about the ground
            scale = 1 + SCALE_DRIFT * np.nan_to_num(along) / half
            return np.r_[centre[:2], ground] + np.outer(along + SCALE_DRIFT * along ** 2 / (2 * half), axis) \
                + scale[:, None] * across
        if kind == "fold":
            beyond = np.isfinite(along) & (along > 0)
            hinge_point = centre * [1, 1, 0]
            out = x.copy()
            out[beyond] = (x[beyond] - hinge_point) @ rotate.T + hinge_point
            return out
        raise ValueError(f"unknown distortion {kind!r}: one of {', '.join(DISTORTIONS)}")

    folded = ((flight.centres - centre) @ axis > 0) if kind == "fold" else np.zeros(len(flight.centres), bool)
    rotations = np.where(folded[:, None, None], flight.rotations @ rotate.T, flight.rotations)
    return Flight(rotations, move(flight.centres), move(flight.points), move(flight.seen), flight.gps.copy())
