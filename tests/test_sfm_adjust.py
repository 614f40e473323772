"""The control adjustment of `mgs sfm` (GCPs and GPS weighted in one least squares) and the check points'
accuracy figures, on pycolmap's synthetic reconstructions and generated errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.adjust import Anchor, adjust, rodrigues
from momentum_gs.data.sfm.colmap_steps import transform
from momentum_gs.data.sfm.control import (CE90_PER_RMSE_R, LE90_PER_RMSE_Z, accuracy, adjust_on_gps, gps_std,
                                          without_flat_heights)
from momentum_gs.data.sfm.gcp import Control, Gcp
from momentum_gs.data.sfm.georeference import take_out_far_from_gps
from momentum_gs.data.sfm.placement import far_from_gps
from momentum_gs.data.sfm.report import CHECK_MAGENTA, SIZE, draw_cameras
from momentum_gs.draw import map_window
from tests.helpers.colmap_model import SITE_SCALE, anchors_of, reconstruction

pycolmap = pytest.importorskip("pycolmap")


def warp(model, bend: float) -> None:
    """Bend the model's cameras and points out of shape (a scale drift along x, a bow in z)."""
    def moved(x: np.ndarray) -> np.ndarray:
        return x + bend * np.array([x[0] ** 2, x[0] * x[1], x[1] ** 2])

    for i in model.reg_image_ids():
        image = model.image(i)
        rotation = image.cam_from_world().rotation.matrix()
        centre = moved(image.projection_center())
        model.frame(image.frame_id).set_cam_from_world(
            image.camera_id, pycolmap.Rigid3d(pycolmap.Rotation3d(rotation), -rotation @ centre))
    for point in model.points3D.values():
        point.xyz = moved(point.xyz)


def centre_errors(model, truth: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([np.linalg.norm(model.image(i).projection_center() - truth[model.image(i).name])
                     for i in model.reg_image_ids()])


def test_rodrigues_is_a_rotation_and_matches_pycolmap():
    w = np.random.default_rng(0).normal(0, 1, (20, 3))
    w[0] = 0
    R = rodrigues(w)
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-12) and np.allclose(np.linalg.det(R), 1)
    for vector, matrix in zip(w, R):
        assert np.allclose(pycolmap.Rotation3d(vector).matrix(), matrix, atol=1e-12)


def test_gcps_bend_a_warped_model_back():
    model, truth = reconstruction()
    anchors = anchors_of(model)  # surveyed where the points truly are
    warp(model, 0.05)
    assert centre_errors(model, truth).max() > 0.3  # of a scene about 8 units across
    done = adjust(pycolmap, model, anchors)
    assert centre_errors(model, truth).max() < 1e-3
    assert done.tie_rms_px[0] > 10 and done.tie_rms_px[1] < 0.05 and done.marks_rms_px < 0.05
    assert max(np.linalg.norm(r) for r in done.gcp_residuals.values()) < 1e-3
    points = np.array([p.xyz for p in model.points3D.values()])  # every point refined, not only the sampled ones
    assert np.isfinite(points).all() and model.compute_mean_reprojection_error() < 0.05


def test_gcps_outweigh_a_15_m_gps_and_a_wrong_fix_is_bounded():
    model, truth = reconstruction(1)
    rng = np.random.default_rng(1)
    gps = {n: c + rng.normal(0, 15 * SITE_SCALE, 3) for n, c in truth.items()}  # a 15 m GPS
    gps[sorted(gps)[0]] = gps[sorted(gps)[0]] + 250 * SITE_SCALE  # one fix far off: the loss bounds its pull
    anchors = anchors_of(model)
    warp(model, 0.03)
    std = np.full(3, 15 * SITE_SCALE)
    adjust(pycolmap, model, anchors, gps, std)
    assert centre_errors(model, truth).max() < 0.05 * SITE_SCALE  # 5 cm
    model2, _ = reconstruction(1)
    warp(model2, 0.03)
    adjust(pycolmap, model2, [], gps, std)  # the GPS alone leaves the cameras where it says
    assert centre_errors(model2, truth).max() > 1.0 * SITE_SCALE


def test_gps_std_is_measured_with_its_bias():
    class Image:
        def __init__(self, name, centre):
            self.name, self.centre = name, centre

        def projection_center(self):
            return self.centre

    class Model:
        images = {i: Image(f"p{i}", np.zeros(3)) for i in range(400)}

        def reg_image_ids(self):
            return list(self.images)

        def image(self, i):
            return self.images[i]

    rng = np.random.default_rng(0)
    gps = {f"p{i}": np.r_[rng.normal(0, 3.0, 2), 0.0] for i in range(400)}
    assert gps_std(Model(), gps)[0] == pytest.approx(3.0, rel=0.1)
    assert gps_std(Model(), {n: p + [4.0, 0, 0] for n, p in gps.items()})[0] > 4.0  # a bias weighs the GPS less
    assert gps_std(Model(), {n: p * 0 for n, p in gps.items()})[0] == 0.5  # never better than the floor
    assert gps_std(Model(), dict(list(gps.items())[:2])) is None


def test_ce90_and_le90_hold_90_percent_of_normal_errors():
    rng = np.random.default_rng(0)
    errors = rng.normal(0, [0.05, 0.05, 0.08], (20000, 3))
    figures = accuracy(errors)
    within_h = np.mean(np.hypot(errors[:, 0], errors[:, 1]) <= figures["ce90_m"])
    within_v = np.mean(np.abs(errors[:, 2]) <= figures["le90_m"])
    assert within_h == pytest.approx(0.9, abs=0.01) and within_v == pytest.approx(0.9, abs=0.01)
    assert figures["ce90_m"] == pytest.approx(CE90_PER_RMSE_R * figures["rmse_horizontal_m"])
    assert figures["le90_m"] == pytest.approx(LE90_PER_RMSE_Z * figures["rmse_vertical_m"])
    flat = accuracy(np.c_[errors[:10, :2], np.full(10, np.nan)])  # no heights: no vertical figure
    assert flat["vertical_count"] == 0 and "le90_m" not in flat and flat["count"] == 10


def test_a_photo_far_from_its_gps_is_taken_out_of_a_model_placed_on_gcps():
    """Placed on ground control, a model whose GPS agrees to 3 m (with a 5 m common bias) but for two photos
    registered 150 m away: those two leave the model, named; a consumer GPS wandering 15 m takes out none."""
    model, truth = reconstruction(2)
    transform(pycolmap, model, np.c_[np.eye(3) / SITE_SCALE, np.zeros(3)])  # metres
    rng = np.random.default_rng(2)
    gps = {n: c / SITE_SCALE + rng.normal(0, 3.0, 3) + [5.0, -4.0, 0.0] for n, c in truth.items()}
    names = sorted(gps)
    for name in names[3:5]:
        image = model.find_image_with_name(name)
        rotation = image.cam_from_world().rotation.matrix()
        centre = image.projection_center() + [150.0, 0.0, 0.0]
        model.frame(image.frame_id).set_cam_from_world(
            image.camera_id, pycolmap.Rigid3d(pycolmap.Rotation3d(rotation), -rotation @ centre))
    taken_out, lines = take_out_far_from_gps(model, gps)
    assert sorted(taken_out) == names[3:5] and all(145 < d < 155 for d in taken_out.values())
    assert len(lines) == 1 and names[3] in lines[0] and "took 2 photo(s) out" in lines[0]
    assert {model.image(i).name for i in model.reg_image_ids()} == set(names) - set(names[3:5])
    centres = np.array([c / SITE_SCALE for c in truth.values()])
    wander = 15.0 * np.c_[np.sin(np.linspace(0, 3, len(centres))), np.cos(np.linspace(0, 2, len(centres)))]
    assert far_from_gps(centres, centres + np.c_[wander, np.zeros(len(centres))])[0] == {}
    one_far = np.array([[200.0, 0, 0]] + [[0, 0, 0]] * 4)
    assert far_from_gps(centres[:5], centres[:5] + one_far)[0] == {}  # too few photos to tell


def control(heights) -> Control:
    lla = np.array([[47.0 + i * 1e-4, 8.0, h] for i, h in enumerate(heights)], np.float64)
    return Control("EPSG:4326", [Gcp(f"g{i}", row[[1, 0, 2]]) for i, row in enumerate(lla)], lla)


def test_heights_that_say_nothing_are_unknown():
    kept, line = without_flat_heights(control([412.0, 415.5, 409.1]), "GCPs")
    assert line is None and np.isfinite(kept.lla[:, 2]).all()
    flat, line = without_flat_heights(control([0.0, 0.0, 0.0]), "GCPs of x.txt")
    assert np.isnan(flat.lla[:, 2]).all() and "every height 0 m" in line and "horizontally only" in line
    none, line = without_flat_heights(control([np.nan] * 3), "GCPs")
    assert np.isnan(none.lla[:, 2]).all() and "no heights" in line
    mixed, line = without_flat_heights(control([410.0, np.nan, 411.0]), "GCPs")
    assert line is None and np.isfinite(mixed.lla[[0, 2], 2]).all()


def test_a_symmetric_gcp_layout_is_not_taken_for_a_mirror():
    """Corners and centre of a rectangle: a reflection through a diagonal fits three of the five exactly, so the
    median residual called such a layout mirrored; every point's RMS does not."""
    rng = np.random.default_rng(0)
    enu = np.array([[-20, -28, 0], [20, -28, 0], [20, 12, 0], [-20, 12, 0], [0, -8, 0]], np.float64)
    model = enu + rng.normal(0, 0.02, enu.shape)
    fit = L.Fit("gcp", 1.0, np.eye(3), np.zeros(3), np.ones(5, bool), enu - model, threshold=1.0)
    proper, mirrored = L.plan_fits(fit, model, enu, robust=False)
    assert proper < 0.05 and mirrored > 5.0


def test_the_picture_draws_each_check_point_where_it_was_surveyed(tmp_path):
    model, _ = reconstruction()
    origin = np.array([47.0, 8.0, 400.0])
    spot = np.array([[0.5, -0.5, 0.0]])  # ENU metres, inside the cameras' spread
    lla = enu_to_wgs84(spot, origin)[0].tolist()
    geo = {"origin": {"lat": origin[0], "lon": origin[1], "alt": origin[2]},
           "check_points": {"points": {"c0": [0.03, 0.0, 0.01]}, "survey_lla": {"c0": lla}}}
    report = {"images_registered": 12, "images_total": 12, "points": 300, "georeference": geo}
    draw_cameras(tmp_path / "cameras.png", model, report, True)
    image = cv2.imread(str(tmp_path / "cameras.png"))
    cams = np.array([model.image(i).projection_center() for i in model.reg_image_ids()])
    points = np.array([p.xyz for p in model.points3D.values()])
    (u, v), = map_window(cams[:, :2], points[:, :2], SIZE).pixels(spot[:, :2])
    magenta = np.all(image == CHECK_MAGENTA, axis=2)
    ys, xs = np.nonzero(magenta)
    assert len(xs) and np.hypot(xs - u, ys - v).min() < 9  # the ring around the surveyed place
    assert xs.max() > u + 40  # the arrow points east (the error is +0.03 m east, drawn 60 px long)


def test_the_gps_alone_bends_a_warped_model_back_to_its_photos():
    model, truth = reconstruction(2)
    rng = np.random.default_rng(2)
    gps = {n: c + np.r_[rng.normal(0, 0.01, 2), 0.0] for n, c in truth.items()}  # horizontal: altitudes unused
    warp(model, 0.05)
    before = centre_errors(model, truth)
    figures, lines = adjust_on_gps(pycolmap, model, gps)
    after = np.array([np.linalg.norm((model.image(i).projection_center() - truth[model.image(i).name])[:2])
                      for i in model.reg_image_ids()])
    assert before.max() > 0.3 and after.max() < 0.03  # of a scene about 8 units across
    assert figures["tie_rms_px_before"] > 10 and figures["tie_rms_px_after"] < 0.05
    assert figures["gps_residual_median_m_after"] < figures["gps_residual_median_m_before"]
    assert len(lines) == 1 and "adjusted on 12 GPS fixes" in lines[0]
    assert adjust_on_gps(pycolmap, model, dict(list(gps.items())[:2])) == (None, [])  # too few fixes: untouched
