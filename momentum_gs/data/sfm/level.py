"""The fit of a reconstruction to its photos' GPS that keeps the scene level.

GPS horizontal and vertical are different measurements: a consumer drone's horizontal position is good to a
few metres, its (barometric) altitude may drift by a hundred metres over a flight. A 7-parameter similarity
fitted to the raw positions turns such a drift into a tilt of the whole scene. So:

- **up** comes from the photos (:mod:`momentum_gs.data.sfm.up`);
- **the level fit** (:func:`level_fit`): the model rotated so that this up is +z, then a robust 2-D
  similarity (scale, heading, east/north shift; RANSAC then least squares on the inliers) to the photos' east
  and north, and the height offset from the median altitude difference;
- **the GPS fit** (:func:`gps_fit`): the robust 3-D similarity to the positions with their altitudes, whose
  up is compared with the photos' (the tilt);
- both take as inliers the photos within a threshold derived from the GPS noise the residuals show
  (:func:`noise_threshold`), so a 15 m GPS keeps its fixes;
- :func:`choose` takes the GPS fit only where its altitude agrees (``auto``: tilt within ``TILT_AGREE_DEG``),
  and refuses a frame that cannot be levelled;
- :func:`plan_fits` measures whether the plan fits the GPS better mirrored (an upside-down scene).

All arrays are float64; points and centres are [N, 3], rotations [N, 3, 3] world-to-camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momentum_gs.errors import UserError

TILT_AGREE_DEG = 2.0  # auto uses the GPS altitudes when their fit's up is within this of the photos' up
TILT_REFUSE_DEG = 10.0  # --gps-altitude use refuses a scene tilted more than this from the photos' up
NOISE_QUANTILE = 3.5  # inliers lie within this many times the GPS noise estimated from the residuals
THRESHOLD_MIN_M = 5.0  # the inlier threshold, once the noise is measured, never below this
MIRROR_RATIO = 0.5  # a plan fitted with a reflection "clearly" better: its median residual below this of the proper one's
CHI_MEDIAN = {2: 1.1774, 3: 1.5382}  # median length of a 2-D / 3-D vector of unit normal components


@dataclass
class Fit:
    """A similarity ``enu = scale * rotation @ x + translation`` and how well it fits."""

    name: str  # "level" or "gps"
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    inliers: np.ndarray  # [N] bool: photos whose horizontal residual is within the threshold
    residuals: np.ndarray = field(repr=False)  # [N, 3] enu - fit(centre)
    threshold: float = 0.0  # metres: the inlier threshold used (the given floor, or more for a noisy GPS)
    noise: float = 0.0  # metres: the GPS noise per axis the residuals show

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


def noise_threshold(residuals: np.ndarray, floor: float) -> tuple[float, float]:
    """(the inlier threshold, the GPS noise per axis) from [N, D] residuals of a robust fit: the noise is the
    median residual over the median length of a D-dimensional unit normal vector (half the photos may be far
    off), the threshold ``NOISE_QUANTILE`` times it, never below ``floor``."""
    norms = np.linalg.norm(residuals[np.isfinite(residuals).all(1)], axis=1)
    noise = float(np.median(norms)) / CHI_MEDIAN[residuals.shape[1]] if len(norms) else 0.0
    return max(floor, NOISE_QUANTILE * noise), noise


def _robust_to_noise(src: np.ndarray, dst: np.ndarray, floor: float, seed: int
                     ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, float, float] | None:
    """:func:`robust_similarity` at ``floor`` (which may scale with the capture's extent: nothing is known of the
    noise yet), then again at the threshold its residuals' noise gives, never below ``THRESHOLD_MIN_M`` but not
    held up by the extent: (s, R, t, inliers, threshold, noise) or None. A 50 m disagreement on a 1 km site whose
    GPS agrees to a metre elsewhere is then an outlier, not agreement."""
    found = robust_similarity(src, dst, floor, np.random.default_rng(seed))
    if found is None:
        return None
    s, R, t, _ = found
    threshold, noise = noise_threshold(s * src @ R.T + t - dst, THRESHOLD_MIN_M)
    if threshold != floor:
        found = robust_similarity(src, dst, threshold, np.random.default_rng(seed)) or found
    return (*found, threshold, noise)


def level_fit(centres: np.ndarray, enu: np.ndarray, up: np.ndarray, threshold: float,
              seed: int = 0) -> Fit | None:
    """The model turned so that ``up`` is +z, fitted horizontally to the photos' east and north (inliers
    within ``threshold`` metres, or more for a noisy GPS); the height offset is the median of the altitude
    differences (photos without altitude, NaN, are left out of it)."""
    R0 = rotation_to_z(up)
    level = centres @ R0.T
    found = _robust_to_noise(level[:, :2], enu[:, :2], threshold, seed)
    if found is None:
        return None
    s, R2, t2, inliers, used_threshold, noise = found
    rotation = np.eye(3)
    rotation[:2, :2] = R2
    rotation = rotation @ R0
    heights = enu[:, 2] - s * level[:, 2]
    usable = inliers & np.isfinite(heights)
    tz = float(np.median(heights[usable])) if usable.any() else -s * float(np.median(level[:, 2]))
    translation = np.array([t2[0], t2[1], tz])
    fit = Fit("level", s, rotation, translation, inliers, np.zeros_like(enu), used_threshold, noise)
    fit.residuals = enu - fit.apply(centres)
    return fit


def along_a_line(points: np.ndarray, ratio: float = 0.1) -> bool:
    """Whether [N, D] points lie along one line (their second singular value below ``ratio`` of the first): a
    3-D fit to them can turn freely about that line."""
    spread = np.linalg.svd(points - points.mean(0), compute_uv=False)
    return len(spread) < 2 or spread[1] < ratio * spread[0]


def gps_fit(centres: np.ndarray, enu: np.ndarray, threshold: float, seed: int = 0) -> Fit | None:
    """The robust 3-D similarity to the GPS positions with their altitudes (photos without one left out)."""
    has_alt = np.isfinite(enu[:, 2])
    if has_alt.sum() < 3 or along_a_line(centres[has_alt]):
        return None
    found = _robust_to_noise(centres[has_alt], enu[has_alt], threshold, seed)
    if found is None:
        return None
    s, R, t, _, used_threshold, noise = found
    fit = Fit("gps", s, R, t, np.zeros(len(centres), bool), np.zeros_like(enu), used_threshold, noise)
    fit.residuals = enu - fit.apply(centres)
    fit.inliers = np.linalg.norm(fit.residuals[:, :2], axis=1) < used_threshold
    return fit


def plan_fits(fit: Fit, centres: np.ndarray, enu: np.ndarray, seed: int = 0, robust: bool = True
              ) -> tuple[float, float] | None:
    """(horizontal residual of the best proper 2-D similarity, of the best one with a reflection), in metres, from
    the fitted plan of ``centres`` to their east and north; None with fewer than 3 points. A reflection fitting
    clearly better means the scene is upside down (a proper rotation cannot fix it).

    ``robust`` (GPS fixes, some of them wrong): RANSAC fits, compared by their median residual. Otherwise
    (surveyed ground control, every point trusted): least squares on every point, compared by the RMS, since a
    median of a few points is fitted exactly by a reflection through three of them (a rectangle's diagonal and its
    centre, as GCPs are often laid out)."""
    plan, target = fit.apply(centres)[:, :2], enu[:, :2]
    if len(plan) < 3:
        return None
    residuals = []
    for flip in (np.array([1.0, 1.0]), np.array([1.0, -1.0])):
        if robust:
            found = robust_similarity(plan * flip, target, fit.threshold, np.random.default_rng(seed))
        else:
            found = similarity(plan * flip, target)
        if found is None:
            residuals.append(float("inf"))
            continue
        s, R, t = found[:3]
        lengths = np.linalg.norm(s * (plan * flip) @ R.T + t - target, axis=1)
        residuals.append(float(np.median(lengths) if robust else np.sqrt(np.mean(lengths ** 2))))
    return residuals[0], residuals[1]


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
        why = ("the GPS altitudes cannot settle it (none usable, or the photos lie along one line)" if mode == "auto"
               else "--gps-altitude ignore")
        raise UserError(f"cannot level the scene: {up_source}, and {why}; photograph the ground straight down or "
                        "in several headings, keep the GPS altitudes (--gps-altitude auto), or give ground control "
                        "points (--gcp)")
    if level is None:
        raise UserError("the model could not be fitted to the photos' GPS horizontally (no similarity agrees with "
                        "2 or more of them); the reconstruction is likely mismatched, or the GPS tags are wrong")
    if mode == "auto" and tilt is not None and tilt <= TILT_AGREE_DEG:
        return gps, f"the GPS altitudes, which agree with {up_source} ({tilt:.1f}°)"
    return level, up_source
