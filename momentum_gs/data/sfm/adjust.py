"""The control adjustment of `mgs sfm`: a placed model (East-North-Up metres) adjusted once more, so that the photos,
the ground control points (their marks and surveyed positions) and the photos' GPS agree, each weighted by its
standard deviation.

COLMAP's bundle adjustment weights every observation alike, so a handful of GCP marks among a hundred thousand tie
points could not bend a model. Here the cameras, the GCPs and a sample of the tie points (those with the longest
tracks) are solved together as a sparse least squares problem (scipy's trust-region solver; every residual is in
standard deviations). A Huber loss beyond ``HUBER`` of them, so that a wrong fix or mark pulls with a bounded force,
is applied by reweighting (a few solves, each weighted by the last one's residuals): scipy's own robust loss
converged far more slowly from the same start. Then pycolmap refines every tie point with the cameras held.
Intrinsics stay as mapping refined them.

Arrays are float64: rotations [N, 3, 3] world-to-camera, centres [N, 3], normalized image coordinates [M, 2].
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import coo_matrix

from momentum_gs.data.sfm.level import CHI_MEDIAN

TIE_STD_PX = 1.0  # a tie point's reprojection, as COLMAP weighs it
MARK_STD_PX = 1.0  # a GCP marked by hand on a photo
GCP_STD_M = (0.02, 0.02, 0.03)  # a surveyed GCP (RTK): east, north, up
GPS_FLOOR_M = 0.5  # no photo's GPS is taken to be better than this
FREE_STD_M = 100.0  # each camera's pull to where it starts: defines what no control fixes (a horizontal control's up)
HUBER = 3.0  # standard deviations: beyond this a residual counts linearly
REWEIGHTS = 3  # solves, each weighted by the residuals of the one before
# Each unknown scaled by its column of the Jacobian (radians of turn and metres of move differ by orders), and a
# solve ended at a cost change of 1e-6 (Ceres' default) or a step of 1e-5 of the unknowns: unscaled, at scipy's
# defaults, the solver crept on through every evaluation allowed on a generated 60-photo flight, to the same
# cameras. Used by :func:`adjust_views`; `mgs sfm`'s adjustment keeps scipy's defaults until measured with them.
SCALED = {"x_scale": "jac", "ftol": 1e-6, "xtol": 1e-5}
MAX_TIE_POINTS = 20_000  # the tie points solved with the control (the longest tracks); the rest are refined after


@dataclass
class Anchor:
    """A ground control point in the adjustment."""

    name: str
    enu: np.ndarray  # [3] surveyed, metres; up NaN for a horizontal point
    marks: list[tuple[str, np.ndarray]]  # (image name, [2] pixel)
    std: np.ndarray = field(default_factory=lambda: np.array(GCP_STD_M))  # [3] metres


@dataclass
class Adjusted:
    """What the adjustment did, for the report."""

    gcp_residuals: dict[str, np.ndarray]  # GCP name → [3] surveyed - adjusted position, metres (up NaN: horizontal)
    marks_rms_px: float | None  # the GCP marks' reprojection after the adjustment
    tie_rms_px: tuple[float, float]  # the sampled tie points' reprojection, before and after
    camera_moved_m: tuple[float, float]  # the cameras' move: RMS and largest
    gps_std_m: float | None  # the GPS's weight (horizontal standard deviation), None without GPS
    gps_used: int  # the registered photos whose GPS is in the adjustment
    seconds: float

    def figures(self) -> dict:
        """The JSON figures of ``sfm.json``."""
        return {"gcp_residuals_m": {n: [None if not np.isfinite(v) else round(float(v), 4) for v in r]
                                    for n, r in self.gcp_residuals.items()},
                "marks_rms_px": None if self.marks_rms_px is None else round(self.marks_rms_px, 3),
                "tie_rms_px_before": round(self.tie_rms_px[0], 3), "tie_rms_px_after": round(self.tie_rms_px[1], 3),
                "camera_moved_rms_m": round(self.camera_moved_m[0], 3),
                "camera_moved_max_m": round(self.camera_moved_m[1], 3),
                "gps_std_m": None if self.gps_std_m is None else round(self.gps_std_m, 2),
                "seconds": round(self.seconds, 1)}


def rodrigues(w: np.ndarray) -> np.ndarray:
    """[N, 3] axis-angle vectors → [N, 3, 3] rotation matrices."""
    theta = np.linalg.norm(w, axis=1)[:, None, None]
    k = np.zeros((len(w), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    k = k - k.transpose(0, 2, 1)
    small = theta < 1e-12
    safe = np.where(small, 1.0, theta)
    a, b = np.where(small, 1.0, np.sin(safe) / safe), np.where(small, 0.5, (1 - np.cos(safe)) / safe ** 2)
    return np.eye(3)[None] + a * k + b * (k @ k)


@dataclass
class _Problem:
    """The adjustment's unknowns and observations, indexed: cameras, sampled tie points, GCPs."""

    image_ids: list[int]
    rotations: np.ndarray  # [N, 3, 3] at the start
    centres: np.ndarray  # [N, 3] at the start
    scale: np.ndarray  # [N] pixels per normalized unit (the camera's mean focal length)
    point_ids: list[int]
    points: np.ndarray  # [P, 3] at the start
    tie: tuple[np.ndarray, np.ndarray, np.ndarray]  # camera index [M], point index [M], normalized xy [M, 2]
    gcps: list[Anchor]
    gcp_start: np.ndarray  # [G, 3]
    mark: tuple[np.ndarray, np.ndarray, np.ndarray]  # camera index [K], GCP index [K], normalized xy [K, 2]
    gps: tuple[np.ndarray, np.ndarray, np.ndarray]  # camera index [L], [L, 3] ENU (up NaN: not used), [3] std
    weights: np.ndarray | None = None  # each residual's square-root Huber weight, from the last solve

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rotations [N, 3, 3], centres [N, 3], points [P, 3], GCPs [G, 3]) of the unknowns ``x``."""
        n, p = len(self.image_ids), len(self.point_ids)
        cams = x[:6 * n].reshape(n, 6)
        return (rodrigues(cams[:, :3]) @ self.rotations, cams[:, 3:], x[6 * n:6 * n + 3 * p].reshape(p, 3),
                x[6 * n + 3 * p:].reshape(-1, 3))

    def start(self) -> np.ndarray:
        return np.concatenate([np.c_[np.zeros((len(self.image_ids), 3)), self.centres].ravel(), self.points.ravel(),
                               self.gcp_start.ravel()])

    def reprojection(self, rotations, centres, cam, xyz, xy) -> np.ndarray:
        """[M, 2] reprojection errors in pixels of points ``xyz`` [M, 3] seen by cameras ``cam`` at ``xy``."""
        local = np.einsum("mij,mj->mi", rotations[cam], xyz - centres[cam])
        depth = np.where(np.abs(local[:, 2:3]) < 1e-9, 1e-9, local[:, 2:3])
        return (local[:, :2] / depth - xy) * self.scale[cam, None]

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """Every residual in standard deviations: tie points, marks, GCP positions, GPS, the cameras' free pull."""
        rotations, centres, points, gcps = self.split(x)
        (tc, tp, txy), (mc, mg, mxy), (gc, genu, gstd) = self.tie, self.mark, self.gps
        parts = [self.reprojection(rotations, centres, tc, points[tp], txy).ravel() / TIE_STD_PX,
                 self.reprojection(rotations, centres, mc, gcps[mg], mxy).ravel() / MARK_STD_PX]
        for g, anchor in enumerate(self.gcps):
            known = np.isfinite(anchor.enu)
            parts.append((gcps[g] - anchor.enu)[known] / anchor.std[known])
        if len(gc):
            known = np.isfinite(genu)
            parts.append(((centres[gc] - np.nan_to_num(genu)) / gstd)[known])
        parts.append((centres - self.centres).ravel() / FREE_STD_M)
        out = np.concatenate(parts)
        return out if self.weights is None else out * self.weights

    def reweight(self, x: np.ndarray) -> None:
        """Huber's weights from the residuals at ``x``: 1 within ``HUBER`` standard deviations, ``HUBER / |r|``
        beyond (as square roots, applied to the residuals)."""
        self.weights = None
        r = np.abs(self.residuals(x))
        self.weights = np.sqrt(np.minimum(1.0, HUBER / np.maximum(r, 1e-12)))

    def sparsity(self) -> coo_matrix:
        """Which unknowns each residual depends on, in :meth:`residuals`' order."""
        n, p = len(self.image_ids), len(self.point_ids)
        rows, cols, row = [], [], 0

        def add(count: int, width: int, columns: np.ndarray) -> None:  # ``count`` blocks of ``width`` rows
            nonlocal row
            r = row + np.arange(count * width).reshape(count, width)
            rows.append(np.repeat(r, columns.shape[1], axis=1).ravel())
            cols.append(np.tile(columns, (1, width)).ravel())
            row += count * width

        (tc, tp, _), (mc, mg, _), (gc, genu, _) = self.tie, self.mark, self.gps
        cam_cols = 6 * np.arange(n)[:, None] + np.arange(6)[None]  # [N, 6]
        gcp_base = 6 * n + 3 * p
        add(len(tc), 2, np.c_[cam_cols[tc], 6 * n + 3 * tp[:, None] + np.arange(3)[None]])
        add(len(mc), 2, np.c_[cam_cols[mc], gcp_base + 3 * mg[:, None] + np.arange(3)[None]])
        singles = [gcp_base + 3 * g + np.flatnonzero(np.isfinite(a.enu)) for g, a in enumerate(self.gcps)]
        if len(gc):
            singles += [6 * i + 3 + np.flatnonzero(axes) for i, axes in zip(gc, np.isfinite(genu))]
        singles.append((6 * np.arange(n)[:, None] + 3 + np.arange(3)[None]).ravel())
        single = np.concatenate(singles).astype(int)
        add(len(single), 1, single[:, None])
        return coo_matrix((np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(row, gcp_base + 3 * len(self.gcps)))


def _tie_sample(model, image_index: dict[int, int], limit: int) -> tuple[list[int], np.ndarray, tuple]:
    """(point ids, [P, 3] positions, (camera index [M], point index [M], normalized xy [M, 2])) of the ``limit``
    tie points with the longest tracks."""
    tracks = {pid: p.track.length() for pid, p in model.points3D.items()}
    ids = sorted(tracks, key=lambda pid: (-tracks[pid], pid))[:limit]
    cam, pt, pixels = [], [], []
    for k, pid in enumerate(ids):
        for element in model.points3D[pid].track.elements:
            image = model.image(element.image_id)
            cam.append(image_index[element.image_id])
            pt.append(k)
            pixels.append(image.points2D[element.point2D_idx].xy)
    cam, pt = np.array(cam, int), np.array(pt, int)
    return ids, np.array([model.points3D[pid].xyz for pid in ids]).reshape(-1, 3), \
        (cam, pt, _normalized(model, [*image_index], cam, np.array(pixels).reshape(-1, 2)))


def _normalized(model, image_ids: list[int], cam: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """[M, 2] pixels seen by cameras ``cam`` (indices into ``image_ids``) → normalized undistorted coordinates."""
    out = np.zeros_like(pixels, dtype=np.float64)
    for c in np.unique(cam):
        rows = cam == c
        out[rows] = model.image(image_ids[c]).camera.cam_from_img(np.ascontiguousarray(pixels[rows], np.float64))
    return out


def _problem(model, anchors: list[Anchor], gps: dict[str, np.ndarray], gps_std: np.ndarray | None,
             max_points: int) -> _Problem:
    """The adjustment of ``model`` (already placed in ENU metres) as unknowns and observations."""
    ids = sorted(model.reg_image_ids())
    index = {i: k for k, i in enumerate(ids)}
    by_name = {model.image(i).name: index[i] for i in ids}
    images = [model.image(i) for i in ids]
    point_ids, points, tie = _tie_sample(model, index, max_points)
    marks = [(by_name[name], g, pixel) for g, a in enumerate(anchors) for name, pixel in a.marks if name in by_name]
    mc = np.array([m[0] for m in marks], int)
    mark = (mc, np.array([m[1] for m in marks], int),
            _normalized(model, ids, mc, np.array([m[2] for m in marks], np.float64).reshape(-1, 2)))
    gc = np.array([by_name[n] for n in sorted(gps) if n in by_name], int) if gps_std is not None else np.zeros(0, int)
    genu = np.array([gps[images[c].name] for c in gc], np.float64).reshape(-1, 3)
    start = np.array([np.where(np.isfinite(a.enu), a.enu, np.median(points[:, 2]) if len(points) else 0.0)
                      for a in anchors], np.float64).reshape(-1, 3)
    return _Problem(ids, np.stack([im.cam_from_world().rotation.matrix() for im in images]),
                    np.stack([im.projection_center() for im in images]),
                    np.array([im.camera.mean_focal_length() for im in images]), point_ids, points, tie, anchors,
                    start, mark, (gc, genu, gps_std if gps_std is not None else np.ones(3)))


def adjust(pycolmap, model, anchors: list[Anchor], gps: dict[str, np.ndarray] | None = None,
           gps_std: np.ndarray | None = None, max_points: int = MAX_TIE_POINTS) -> Adjusted:
    """Adjust ``model`` (placed in ENU metres) in place to its photos, ``anchors`` and the photos' ``gps`` (name →
    [3] ENU, up NaN where it is not used) weighted by ``gps_std`` ([3] metres; None: GPS not used)."""
    started = time.perf_counter()
    problem = _problem(model, anchors, gps or {}, gps_std, max_points)
    x0 = problem.start()
    before = _rms(problem.reprojection(*problem.split(x0)[:2], problem.tie[0], problem.points[problem.tie[1]],
                                       problem.tie[2]))
    rotations, centres, points, gcps = problem.split(_solve(problem, x0, {}))
    _write_back(pycolmap, model, problem, rotations, centres, points)
    moved = np.linalg.norm(centres - problem.centres, axis=1)
    mc, mg, mxy = problem.mark
    return Adjusted({a.name: a.enu - g for a, g in zip(anchors, gcps)},
                    _rms(problem.reprojection(rotations, centres, mc, gcps[mg], mxy)) if len(mc) else None,
                    (before, _rms(problem.reprojection(rotations, centres, problem.tie[0], points[problem.tie[1]],
                                                       problem.tie[2]))),
                    (float(np.sqrt((moved ** 2).mean())), float(moved.max())),
                    None if gps_std is None or not len(problem.gps[0]) else float(gps_std[0]), len(problem.gps[0]),
                    time.perf_counter() - started)


def _solve(problem: _Problem, x: np.ndarray, options: dict) -> np.ndarray:
    """The unknowns that fit ``problem`` from ``x``: ``REWEIGHTS`` solves, each Huber-weighted by the last, with
    scipy's ``options`` (:data:`SCALED`, or its defaults)."""
    sparsity = problem.sparsity()
    for _ in range(REWEIGHTS):
        x = least_squares(problem.residuals, x, jac_sparsity=sparsity, method="trf", tr_solver="lsmr",
                          max_nfev=50, **options).x
        problem.reweight(x)
    return x


def adjust_views(rotations: np.ndarray, centres: np.ndarray, points: np.ndarray,
                 tie: tuple[np.ndarray, np.ndarray, np.ndarray], focal_px: float, gps: np.ndarray,
                 gps_std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adjustment of cameras and points given as arrays, placed in ENU metres, with no GCPs: ``tie`` (camera
    index [M], point index [M], normalized xy [M, 2]) seen by cameras of ``focal_px``, and ``gps`` [N, 3] (NaN where
    an axis or a photo is not used) weighted by ``gps_std`` [3]: (rotations, centres, points) adjusted."""
    n = len(centres)
    known = np.isfinite(gps).any(1)
    gc = np.flatnonzero(known)
    problem = _Problem(list(range(n)), rotations, centres, np.full(n, float(focal_px)), list(range(len(points))),
                       points, tie, [], np.zeros((0, 3)), (np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2))),
                       (gc, gps[gc], np.asarray(gps_std, np.float64)))
    r, c, p, _ = problem.split(_solve(problem, problem.start(), SCALED))
    return r, c, p


def gps_std_from(distance: np.ndarray) -> np.ndarray:
    """[3] the standard deviation (east, north; up NaN) of a GPS whose fixes lie ``distance`` [N] metres from their
    cameras horizontally: their median over a 2-D normal's median length (bias included), at least ``GPS_FLOOR_M``."""
    sigma = max(GPS_FLOOR_M, float(np.median(distance)) / CHI_MEDIAN[2])
    return np.array([sigma, sigma, np.nan])


def _rms(residuals: np.ndarray) -> float:
    """RMS length of [M, 2] residuals (0 for none)."""
    return float(np.sqrt((residuals ** 2).sum(1).mean())) if len(residuals) else 0.0


def _write_back(pycolmap, model, problem: _Problem, rotations, centres, points) -> None:
    """The adjusted cameras and sampled points into ``model``, then every tie point refined with the cameras held."""
    for image_id, rotation, centre in zip(problem.image_ids, rotations, centres):
        image = model.image(image_id)
        model.frame(image.frame_id).set_cam_from_world(
            image.camera_id, pycolmap.Rigid3d(pycolmap.Rotation3d(rotation), -rotation @ centre))
    for pid, xyz in zip(problem.point_ids, points):
        model.point3D(pid).xyz = xyz
    options = pycolmap.BundleAdjustmentOptions(refine_focal_length=False, refine_principal_point=False,
                                               refine_extra_params=False, refine_rig_from_world=False)
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in problem.image_ids:
        image = model.image(image_id)
        config.add_image(image_id)
        config.set_constant_cam_intrinsics(image.camera_id)
        config.set_constant_rig_from_world_pose(image.frame_id)
    options.print_summary = False
    pycolmap.create_default_bundle_adjuster(options, config, model).solve()
