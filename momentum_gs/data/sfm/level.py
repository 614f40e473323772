"""Which way is up, and the fit of a reconstruction to its photos' GPS that keeps the scene level.

GPS horizontal and vertical are different measurements: a consumer drone's horizontal position is good to a
few metres, its (barometric) altitude may drift by a hundred metres over a flight. A 7-parameter similarity
fitted to the raw positions turns such a drift into a tilt of the whole scene. So:

- **up from the photos** (:func:`photo_up`): the mean viewing direction of a nadir survey, the normal of the
  cameras' level image rows, the ground plane of the sparse points, or the cameras' image-up vectors;
- **the level fit** (:func:`level_fit`): the model rotated so that this up is +z, then a robust 2-D
  similarity (scale, heading, east/north shift; RANSAC then least squares on the inliers) to the photos' east
  and north, and the height offset from the median altitude difference;
- **the GPS fit** (:func:`gps_fit`): the robust 3-D similarity to the positions with their altitudes, whose
  up is compared with the photos' (the tilt);
- :func:`choose` takes the GPS fit only where its altitude agrees (``auto``: tilt within ``TILT_AGREE_DEG``),
  and refuses a frame that cannot be levelled.

All arrays are float64; points and centres are [N, 3], rotations [N, 3, 3] world-to-camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momentum_gs.errors import UserError

TILT_AGREE_DEG = 2.0  # auto uses the GPS altitudes when their fit's up is within this of the photos' up
TILT_REFUSE_DEG = 10.0  # --gps-altitude use refuses a scene tilted more than this from the photos' up
NADIR = 0.9  # mean optical axis at least this long: the cameras look nearly straight down (within ~25°)
SPREAD = 0.05  # image rows point several ways: second eigenvalue of their scatter at least this of the first
ROLL_MAX_DEG = 5.0  # RMS angle of the image rows out of the level plane for them to count as level
COHERENT = 0.7  # length of the mean of unit vectors above which the cameras "agree" on a direction
PLANE_CONE_DEG = 45.0  # the ground plane's normal lies within this of the cameras' mean viewing direction
PLANE_MIN_INLIERS = 0.2  # fraction of the sparse points on the ground plane
PLANE_TOLERANCE = 0.01  # inlier distance, fraction of the points' extent (5th to 95th percentile)


@dataclass
class Fit:
    """A similarity ``enu = scale * rotation @ x + translation`` and how well it fits."""

    name: str  # "level" or "gps"
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    inliers: np.ndarray  # [N] bool: photos whose horizontal residual is within the threshold
    residuals: np.ndarray = field(repr=False)  # [N, 3] enu - fit(centre)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.scale * x @ self.rotation.T + self.translation

    def matrix(self) -> np.ndarray:
        """[3, 4] ``[s R | t]``."""
        return np.c_[self.scale * self.rotation, self.translation]

    def up(self) -> np.ndarray:
        """The model-frame direction this fit sends to +z."""
        return self.rotation[2].copy()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(_unit(a) @ _unit(b), -1.0, 1.0))))


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """The smallest [3, 3] rotation taking the unit vector ``up`` onto +z."""
    up = _unit(np.asarray(up, np.float64))
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(up, z), float(up @ z)
    if c < -1 + 1e-12:  # upside down: half a turn about x
        return np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def dominant_plane(points: np.ndarray, around: np.ndarray, centres: np.ndarray,
                   rng: np.random.Generator, trials: int = 400) -> np.ndarray | None:
    """Unit normal (towards the cameras) of the plane holding the most sparse points among planes within
    ``PLANE_CONE_DEG`` of ``around``, or None when no plane holds ``PLANE_MIN_INLIERS`` of them with the
    cameras above it."""
    if len(points) < 30:
        return None
    pts = points[rng.choice(len(points), min(len(points), 20000), replace=False)]
    lo, hi = np.percentile(pts, [5, 95], axis=0)
    tolerance = PLANE_TOLERANCE * max(float(np.linalg.norm(hi - lo)), 1e-12)
    a, b, c = (pts[rng.integers(0, len(pts), trials)] for _ in range(3))
    normals = np.cross(b - a, c - a)
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-12
    normals = normals[ok] / length[ok, None]
    anchors = a[ok]
    normals *= np.sign(normals @ around)[:, None] + (normals @ around == 0)[:, None]
    within = normals @ _unit(around) >= np.cos(np.radians(PLANE_CONE_DEG))
    normals, anchors = normals[within], anchors[within]
    if not len(normals):
        return None
    counts = (np.abs((pts[None] - anchors[:, None]) @ normals[..., None])[..., 0] < tolerance).sum(1)
    best = int(np.argmax(counts))
    inliers = np.abs((pts - anchors[best]) @ normals[best]) < tolerance
    if inliers.mean() < PLANE_MIN_INLIERS:
        return None
    on = pts[inliers]
    normal = np.linalg.svd(on - on.mean(0), full_matrices=False)[2][2]
    heights = (centres - on.mean(0)) @ normal
    if np.median(heights) < 0:
        normal, heights = -normal, -heights
    if (heights > 0).mean() < 0.9 or angle_deg(normal, around) > PLANE_CONE_DEG:
        return None
    return normal


def photo_up(rotations: np.ndarray, centres: np.ndarray, points: np.ndarray,
             seed: int = 0) -> tuple[np.ndarray | None, str]:
    """(unit up in the model's frame or None, what it was taken from) from the cameras and sparse points.

    In order: the direction square to every camera's image rows when those are level (``ROLL_MAX_DEG``) and
    point several ways (a survey flown in several headings, eye-level captures); the mean viewing direction of
    cameras that look nearly straight down in one heading (a gimbal holds them to gravity within a degree or
    two); the ground plane for cameras that look down at an angle; the cameras' image-up vectors.
    """
    look = rotations[:, 2, :].mean(0)  # mean optical axis
    image_up = -rotations[:, 1, :].mean(0)  # OpenCV's y points down the image
    rows = rotations[:, 0, :]
    evals, evecs = np.linalg.eigh(rows.T @ rows / len(rows))
    roll = float(np.degrees(np.arcsin(np.sqrt(max(evals[0], 0.0)))))
    if evals[1] >= SPREAD * evals[2] and roll <= ROLL_MAX_DEG:
        up = evecs[:, 0]
        hint = image_up if np.linalg.norm(image_up) > 0.1 else -look
        return up * (1.0 if up @ hint >= 0 else -1.0), "the cameras' level image rows"
    if np.linalg.norm(look) >= NADIR:
        return -_unit(look), "the cameras' mean viewing direction (a nadir survey)"
    if np.linalg.norm(look) >= COHERENT:
        normal = dominant_plane(points, -_unit(look), centres, np.random.default_rng(seed))
        if normal is not None:
            return normal, "the ground plane of the sparse points"
    if np.linalg.norm(image_up) >= COHERENT:
        return _unit(image_up), "the cameras' image-up vectors"
    return None, "the photos do not show which way is up (their views and image rows point every way)"


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising |s R src + t - dst|² over [N, D] point sets, R a proper rotation (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(src.shape[1])
    d[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    R = u @ np.diag(d) @ vt
    var = (a ** 2).sum(1).mean()
    s = float((sig * d).sum() / var) if var > 0 else 0.0
    return s, R, mu_d - s * R @ mu_s


def robust_similarity(src: np.ndarray, dst: np.ndarray, threshold: float, rng: np.random.Generator,
                      trials: int = 300) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
    """RANSAC over minimal sets (2 points in 2-D, 3 in 3-D), then least squares on the inliers (twice);
    (s, R, t, [N] inliers) or None when fewer than the minimal set agree."""
    n, dim = src.shape
    k = 2 if dim == 2 else 3
    if n < k:
        return None
    best = np.zeros(n, bool)
    for _ in range(trials):
        pick = rng.choice(n, k, replace=False)
        s, R, t = similarity(src[pick], dst[pick])
        if not np.isfinite(s) or s <= 0:
            continue
        inliers = np.linalg.norm(s * src @ R.T + t - dst, axis=1) < threshold
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < k:
        return None
    for _ in range(2):
        s, R, t = similarity(src[best], dst[best])
        inliers = np.linalg.norm(s * src @ R.T + t - dst, axis=1) < threshold
        if inliers.sum() < k:
            break
        best = inliers
    s, R, t = similarity(src[best], dst[best])
    if not np.isfinite(s) or s <= 0:
        return None
    return s, R, t, best


def level_fit(centres: np.ndarray, enu: np.ndarray, up: np.ndarray, threshold: float,
              seed: int = 0) -> Fit | None:
    """The model turned so that ``up`` is +z, fitted horizontally to the photos' east and north; the height
    offset is the median of the altitude differences (photos without altitude, NaN, are left out of it)."""
    R0 = rotation_to_z(up)
    level = centres @ R0.T
    found = robust_similarity(level[:, :2], enu[:, :2], threshold, np.random.default_rng(seed))
    if found is None:
        return None
    s, R2, t2, inliers = found
    rotation = np.eye(3)
    rotation[:2, :2] = R2
    rotation = rotation @ R0
    heights = enu[:, 2] - s * level[:, 2]
    usable = inliers & np.isfinite(heights)
    tz = float(np.median(heights[usable])) if usable.any() else -s * float(np.median(level[:, 2]))
    translation = np.array([t2[0], t2[1], tz])
    fit = Fit("level", s, rotation, translation, inliers, np.zeros_like(enu))
    fit.residuals = enu - fit.apply(centres)
    return fit


def gps_fit(centres: np.ndarray, enu: np.ndarray, threshold: float, seed: int = 0) -> Fit | None:
    """The robust 3-D similarity to the GPS positions with their altitudes (photos without one left out)."""
    has_alt = np.isfinite(enu[:, 2])
    if has_alt.sum() < 3:
        return None
    found = robust_similarity(centres[has_alt], enu[has_alt], threshold, np.random.default_rng(seed))
    if found is None:
        return None
    s, R, t, _ = found
    fit = Fit("gps", s, R, t, np.zeros(len(centres), bool), np.zeros_like(enu))
    fit.residuals = enu - fit.apply(centres)
    fit.inliers = np.linalg.norm(fit.residuals[:, :2], axis=1) < threshold
    return fit


def altitude_drift(residuals: np.ndarray, order: np.ndarray) -> float | None:
    """Metres the altitude's error changes over the flight: the linear trend of the vertical residuals
    against the capture order (photo names' order) from the first photo to the last; None without two."""
    ok = np.isfinite(residuals)
    if ok.sum() < 2 or np.ptp(order[ok]) == 0:
        return None
    slope = np.polyfit(order[ok].astype(np.float64), residuals[ok], 1)[0]
    return float(slope * np.ptp(order[ok]))


def choose(mode: str, level: Fit | None, gps: Fit | None, up: np.ndarray | None, up_source: str) -> tuple[Fit, str]:
    """(the fit to write, how its up was found) for ``--gps-altitude mode``; a UserError for a frame that
    cannot be levelled."""
    tilt = angle_deg(gps.up(), up) if gps is not None and up is not None else None
    if mode == "use":
        if gps is None:
            raise UserError("--gps-altitude use: fewer than 3 registered photos have a GPS altitude that fits; "
                            "use --gps-altitude auto")
        if tilt is not None and tilt > TILT_REFUSE_DEG:
            raise UserError(f"cannot level the scene with the GPS altitudes: they tilt it {tilt:.0f}° from the up "
                            f"that {up_source} shows (the altitude drifts or is biased); use --gps-altitude auto "
                            "(the default) or ignore")
        return gps, "the GPS altitudes" + (f" (within {tilt:.1f}° of {up_source})" if tilt is not None
                                           else " only (not checked: the photos do not show which way is up)")
    if up is None:
        if mode == "auto" and gps is not None:
            return gps, "the GPS altitudes only (not checked: the photos do not show which way is up)"
        why = "the photos have no usable GPS altitude" if mode == "auto" else "--gps-altitude ignore"
        raise UserError(f"cannot level the scene: {up_source}, and {why}; photograph the ground from above "
                        "(a survey) or keep the GPS altitudes (--gps-altitude auto)")
    if level is None:
        raise UserError("the model could not be fitted to the photos' GPS horizontally (no similarity agrees with "
                        "2 or more of them); the reconstruction is likely mismatched, or the GPS tags are wrong")
    if mode == "auto" and tilt is not None and tilt <= TILT_AGREE_DEG:
        return gps, f"the GPS altitudes, which agree with {up_source} ({tilt:.1f}°)"
    return level, up_source
