"""`mgs sfm`'s georeference on generated flights with known answers: up from the photos, the robust
horizontal fit, the GPS altitude used only where it agrees, and the refusal of a frame that cannot be
levelled. The same on real photos is in test_sfm_brighton.py."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.sfm import level as L
from momentum_gs.data.sfm.up import Views, find_up
from momentum_gs.errors import UserError
from tests.helpers.rotations import random_rotation


def photo_up(rotations, centres, points):
    """(the photos' best up or None, what it came from), the points standing in for what each camera sees."""
    views = Views(rotations, centres, np.full(centres.shape, np.nan), points)
    ups, found = find_up(views)
    return (ups[0].axis if ups else None), found


def nadir(yaw: float, tilt_deg: float = 0.0, rng=None) -> np.ndarray:
    """world_to_cam rotation of a camera looking straight down (z world up), image x along ``yaw``, tipped by
    up to ``tilt_deg`` in a random direction (a gimbal's error)."""
    x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    R = np.stack([x, np.cross(z, x), z])
    if tilt_deg and rng is not None:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        a = np.radians(rng.uniform(0, tilt_deg))
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = R @ (np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K)
    return R


def survey(rng, rows: int = 6, cols: int = 8, spacing: float = 20.0, height: float = 60.0):
    """A serpentine nadir survey over a gently rolling ground: true centres [N, 3] (ENU metres), world_to_cam
    rotations [N, 3, 3], ground points [P, 3]."""
    centres, rotations = [], []
    for r in range(rows):
        for c in (range(cols) if r % 2 == 0 else reversed(range(cols))):
            centres.append([c * spacing, r * spacing, height + rng.normal(0, 0.5)])
            rotations.append(nadir(0.0 if r % 2 == 0 else np.pi, 2.0, rng))
    xy = rng.uniform([-20, -20], [cols * spacing + 20, rows * spacing + 20], (3000, 2))
    ground = np.c_[xy, 2 * np.sin(xy[:, 0] / 40) + rng.normal(0, 0.2, len(xy))]
    return np.array(centres), np.array(rotations), ground


def to_model(rng, centres, rotations, points):
    """The same flight in an arbitrary similarity frame (COLMAP's): x_model = s R x + t."""
    R, s, t = random_rotation(rng), 0.05, rng.normal(0, 3, 3)
    return (s * centres @ R.T + t, rotations @ R.T, s * points @ R.T + t, (s, R, t))


def levelled(fit: L.Fit, model_to_true: np.ndarray) -> float:
    """Degrees between the fit's up and the true up, for a model whose true up is ``model_to_true``."""
    return L.angle_deg(fit.up(), model_to_true)


@pytest.fixture
def flight():
    rng = np.random.default_rng(7)
    centres, rotations, ground = survey(rng)
    c, rot, pts, (s, R, t) = to_model(rng, centres, rotations, ground)
    true_up = R @ np.array([0.0, 0.0, 1.0])  # the true up direction in the model's frame
    return centres, c, rot, pts, true_up


def test_photo_up_of_a_nadir_survey(flight):
    centres, c, rot, pts, true_up = flight
    up, source = photo_up(rot, c, pts)
    assert "nadir" in source and L.angle_deg(up, true_up) < 1.0


def test_drifting_altitude_is_not_used_and_the_scene_stays_level(flight):
    centres, c, rot, pts, true_up = flight
    gps = centres + np.c_[np.zeros((len(centres), 2)), np.linspace(0, 110, len(centres))]  # +110 m over the flight
    gps[:, :2] += np.random.default_rng(1).normal(0, 1.0, (len(gps), 2))  # consumer GPS, horizontally
    up, source = photo_up(rot, c, pts)
    level = L.level_fit(c, gps, up, threshold=5.0)
    raw = L.gps_fit(c, gps, threshold=50.0)
    assert levelled(raw, true_up) > 10  # the 7-parameter fit to the raw altitudes tilts the scene
    fit, how = L.choose("auto", level, raw, up, source)
    assert fit is level and levelled(fit, true_up) < 1.0
    horizontal = np.sqrt((fit.residuals[:, :2] ** 2).sum(1).mean())
    assert horizontal < 2.0 and fit.scale == pytest.approx(20.0, rel=0.01)  # model units were 1/20 m
    drift = L.altitude_drift(level.residuals[:, 2], np.arange(len(c)))
    assert drift == pytest.approx(110, abs=5)
    with pytest.raises(UserError, match=r"cannot level the scene with the GPS altitudes: they tilt it \d+°"):
        L.choose("use", level, raw, up, source)


def test_agreeing_altitude_is_used(flight):
    centres, c, rot, pts, true_up = flight
    up, source = photo_up(rot, c, pts)
    level, gps = L.level_fit(c, centres, up, 5.0), L.gps_fit(c, centres, 5.0)
    fit, how = L.choose("auto", level, gps, up, source)
    assert fit is gps and "agree" in how and levelled(fit, true_up) < 1.0
    assert L.choose("ignore", level, None, up, source)[0] is level


def test_one_photo_far_off_does_not_drag_the_fit(flight):
    centres, c, rot, pts, true_up = flight
    gps = centres.copy()
    gps[5, 0] += 500.0
    fit = L.level_fit(c, gps, photo_up(rot, c, pts)[0], 5.0)
    assert not fit.inliers[5] and fit.inliers.sum() == len(c) - 1
    assert np.sqrt((fit.residuals[fit.inliers, :2] ** 2).sum(1).mean()) < 0.5
    assert np.linalg.norm(fit.residuals[5, :2]) == pytest.approx(500, abs=2)


def test_a_frame_that_cannot_be_levelled_is_refused():
    rng = np.random.default_rng(3)
    rotations = np.stack([random_rotation(rng) for _ in range(40)])  # views and image rows every way
    centres = rng.normal(0, 10, (40, 3))
    up, source = photo_up(rotations, centres, rng.normal(0, 10, (500, 3)))
    assert up is None and "do not show which way is up" in source
    with pytest.raises(UserError, match="cannot level the scene: the photos do not show which way is up.*ignore"):
        L.choose("ignore", None, None, up, source)
    gps = L.gps_fit(centres, centres * 2, 5.0)
    fit, how = L.choose("auto", None, gps, up, source)  # GPS alone, and said to be unchecked
    assert fit is gps and "not checked" in how


def test_level_image_rows_of_obliques_from_several_headings():
    rng = np.random.default_rng(5)
    rotations = []
    for yaw in np.linspace(0, 2 * np.pi, 12, endpoint=False):  # 40° off nadir, four ways round
        forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        z = np.cos(np.radians(40)) * np.array([0, 0, -1.0]) + np.sin(np.radians(40)) * forward
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        rotations.append(np.stack([x, np.cross(z, x), z]))
    R = random_rotation(rng)
    up, source = photo_up(np.array(rotations) @ R.T, rng.normal(0, 1, (12, 3)), np.zeros((0, 3)))
    assert "image rows" in source and L.angle_deg(up, R @ [0, 0, 1.0]) < 0.1
