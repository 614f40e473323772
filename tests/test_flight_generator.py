"""The synthetic drone flights for testing the georeference: their patterns, headings, gimbal and mount,
what each camera sees, the GPS drift, and the move into an SfM model frame."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.synthetic.survey import PATTERNS, Flight, _seen, flight_poses, make_flight, to_model_frame


def off_nadir_deg(rotations: np.ndarray) -> np.ndarray:
    """[N] degrees between each camera's optical axis (world_to_cam row 2) and straight down."""
    return np.degrees(np.arccos(np.clip(rotations[:, 2] @ np.array([0.0, 0.0, -1.0]), -1, 1)))


def horizontal_deg(v: np.ndarray) -> np.ndarray:
    """[N] direction of the horizontal part of ``v`` [N, 3], degrees counter-clockwise from +x."""
    return np.degrees(np.arctan2(v[:, 1], v[:, 0]))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("pitch", [0.0, 20.0, -35.0, 45.0])
def test_every_pattern_has_n_cameras_at_the_requested_pitch(pattern, pitch):
    for fixed_wing in (True, False):
        rotations, centres = flight_poses(pattern, 40, pitch_deg=pitch, fixed_wing=fixed_wing, seed=3)
        assert rotations.shape == (40, 3, 3) and centres.shape == (40, 3)
        assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-9)
        assert np.allclose(np.linalg.det(rotations), 1.0)
        assert np.abs(off_nadir_deg(rotations) - abs(pitch)).max() < 1.01
        assert np.abs(centres[:, 2] - 80.0).max() <= 2.0
    if pitch:  # the tilt goes forward along the heading (image up at nadir) for positive pitch
        rotations, _ = flight_poses(pattern, 40, pitch_deg=pitch, seed=3)
        forward = -flight_poses(pattern, 40, seed=3)[0][:, 1]
        assert np.all(np.sign(np.sum(rotations[:, 2, :2] * forward[:, :2], axis=1)) == np.sign(pitch))


def test_patterns_shapes():
    _, strip = flight_poses("strip", 30)
    xy = strip[:, :2] - strip[:, :2].mean(axis=0)
    singular = np.linalg.svd(xy, compute_uv=False)
    assert singular[1] < 1e-6 * singular[0] and np.ptp(xy, axis=0).max() > 300  # one long straight line
    assert np.all(np.diff(xy @ np.linalg.svd(xy)[2][0]) > 0) or np.all(np.diff(xy @ np.linalg.svd(xy)[2][0]) < 0)
    _, orbit = flight_poses("orbit", 50, seed=1)
    radius = np.linalg.norm(orbit[:, :2] - orbit[:, :2].mean(axis=0), axis=1)
    assert np.ptp(radius) < 1e-6 * radius.mean() and 80 <= radius.mean() <= 120
    _, corridor = flight_poses("corridor", 60)
    extent = np.sort(np.ptp(corridor[:, :2], axis=0))
    assert extent[1] > 3 * extent[0] and len(np.unique(corridor[:, 1].round(3))) in (2, 3)
    _, lawn = flight_poses("lawnmower", 60)
    assert 150 < np.ptp(lawn[:, :2], axis=0).min() and np.ptp(lawn[:, :2], axis=0).max() < 500
    _, cross = flight_poses("crosshatch", 60)
    first, second = cross[:30, :2], cross[30:, :2]
    assert np.allclose(np.ptp(first, axis=0), np.ptp(second, axis=0), rtol=0.05)
    assert np.ptp(np.diff(first[:, 0])[:5]) < 1e-9 and np.all(np.diff(second[:, 0])[:3] == 0)  # along x, then y
    with pytest.raises(ValueError, match="lawnmower.*crosshatch.*orbit.*corridor.*strip"):
        flight_poses("spiral")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fixed_wing_heads_along_its_track(pattern):
    rotations, centres = flight_poses(pattern, 60, fixed_wing=True, seed=2)
    legs = np.diff(centres[:, :2], axis=0)
    legs /= np.linalg.norm(legs, axis=1, keepdims=True)
    straight = np.sum(legs[1:] * legs[:-1], axis=1) > np.cos(np.radians(8))  # not across a turn
    assert straight.sum() > 35
    travel = (legs[1:] + legs[:-1])[straight]  # central differences: an orbit's tangent
    travel /= np.linalg.norm(travel, axis=1, keepdims=True)
    image_x = rotations[1:-1][straight, 0, :2]
    assert np.abs(np.sum(image_x * travel, axis=1)).max() < np.sin(np.radians(5))  # perpendicular
    forward = -rotations[1:-1][straight, 1, :2]  # image up, at nadir
    assert np.all(np.sum(forward * travel, axis=1) > np.cos(np.radians(5)))  # and facing the way it flies


def test_multirotor_heading_is_free_of_the_track():
    rotations, centres = flight_poses("lawnmower", 60, fixed_wing=False, seed=4)
    heading = horizontal_deg(rotations[:, 0])
    spread = np.degrees(np.angle(np.exp(1j * np.radians(heading - heading[0]))))
    assert np.abs(spread).max() < 9  # ±3° noise and the 1° gimbal, nothing more
    firsts = [flight_poses("strip", 5, fixed_wing=False, seed=s)[0][0, 0] for s in range(6)]
    headings = {round(h) for h in horizontal_deg(np.stack(firsts))}
    assert len(headings) == 6  # one seeded heading per flight
    rotations, centres = flight_poses("orbit", 40, fixed_wing=False, pitch_deg=45, seed=4)
    inward = -(centres[:, :2] - centres[:, :2].mean(axis=0))
    inward /= np.linalg.norm(inward, axis=1, keepdims=True)
    assert np.all(np.sum(rotations[:, 2, :2] / np.linalg.norm(rotations[:, 2, :2], axis=1, keepdims=True)
                         * inward, axis=1) > np.cos(np.radians(6)))


def test_mount_roll_turns_the_image_about_the_optical_axis():
    base, centres = flight_poses("lawnmower", 30, pitch_deg=20, seed=5)
    flipped, centres2 = flight_poses("lawnmower", 30, pitch_deg=20, mount_roll_deg=180, seed=5)
    assert np.allclose(centres, centres2)
    assert np.allclose(flipped[:, 2], base[:, 2]) and np.allclose(flipped[:, :2], -base[:, :2])
    turned, _ = flight_poses("lawnmower", 30, pitch_deg=20, mount_roll_deg=90, seed=5)
    assert np.allclose(turned[:, 2], base[:, 2])
    assert np.allclose(turned[:, 0], -base[:, 1]) and np.allclose(turned[:, 1], base[:, 0])  # rows and columns swap


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_camera_sees_points_below_and_in_front(pattern):
    for pitch, fixed_wing in ((0.0, True), (40.0, False)):
        flight = make_flight(pattern, 40, pitch_deg=pitch, fixed_wing=fixed_wing, seed=6)
        assert isinstance(flight, Flight) and len(flight.seen) == 40
        assert 1000 <= len(flight.points) <= 10000
        assert not np.isnan(flight.seen).any()
        assert np.all(flight.seen[:, 2] < flight.centres[:, 2] - 40)
        assert np.all(np.einsum("ni,ni->n", flight.seen - flight.centres, flight.rotations[:, 2]) > 0)
        off_axis = np.degrees(np.arccos(np.einsum("ni,ni->n", flight.seen - flight.centres, flight.rotations[:, 2])
                                        / np.linalg.norm(flight.seen - flight.centres, axis=1)))
        assert off_axis.max() < 20  # the middle of the view, not its edge
    z = flight.points[:, 2]
    ground, roofs = z[np.abs(z) < 1.5], z[z >= 1.5]
    assert np.std(ground) < 0.3 and len(roofs) > 0.03 * len(z) and roofs.min() > 4 and roofs.max() < 31


def test_seen_is_nan_where_a_camera_sees_nothing():
    flight = make_flight("strip", 10, pitch_deg=0, seed=7)
    upward = flight.rotations.copy()
    upward[0] = np.diag([1.0, -1.0, -1.0]) @ upward[0]  # turned to look at the sky
    seen = _seen(upward, flight.centres, flight.points)
    assert np.isnan(seen[0]).all() and not np.isnan(seen[1:]).any()


def test_gps_noise_drift_and_missing_altitude():
    flight = make_flight("lawnmower", 80, drift_m=25.0, gps_noise_m=1.0, seed=8)
    error = flight.gps - flight.centres
    assert 0.7 < error[:, :2].std() < 1.3
    slope, _ = np.polyfit(np.arange(80), error[:, 2], 1)
    assert abs(slope * 79 - 25.0) < 1.5
    flat = make_flight("lawnmower", 80, drift_m=0.0, seed=8)
    assert abs(np.polyfit(np.arange(80), flat.gps[:, 2] - flat.centres[:, 2], 1)[0] * 79) < 1.5
    blind = make_flight("lawnmower", 80, altitude_in_exif=False, seed=8)
    assert np.isnan(blind.gps[:, 2]).all() and np.allclose(blind.gps[:, :2], flight.gps[:, :2])
    assert np.allclose(blind.centres, flight.centres)  # the same flight, seeded


@pytest.mark.parametrize("seed", range(4))
def test_model_frame_is_a_similarity_with_the_true_up(seed):
    world = make_flight("corridor", 30, pitch_deg=30, seed=seed)
    model, up = to_model_frame(world, seed=seed)
    assert np.isclose(np.linalg.norm(up), 1.0)
    assert np.array_equal(model.gps, world.gps)
    d_world = np.linalg.norm(world.points[1:] - world.points[:-1], axis=1)
    d_model = np.linalg.norm(model.points[1:] - model.points[:-1], axis=1)
    s = d_model / d_world
    assert np.ptp(s) < 1e-9 * s.mean() and 0.02 <= s[0] <= 5
    ratio = np.linalg.norm(model.centres - model.seen, axis=1) / np.linalg.norm(world.centres - world.seen, axis=1)
    assert np.allclose(ratio, s[0])
    heights = (model.points - model.points[0]) @ up / s[0]
    assert np.allclose(heights, world.points[:, 2] - world.points[0, 2], atol=1e-6)
    assert np.allclose((model.centres - model.points[0]) @ up / s[0], world.centres[:, 2] - world.points[0, 2])
    assert np.allclose(model.rotations[:, 2] @ up, world.rotations[:, 2, 2])  # optical axes against up
    cam_world = np.einsum("nij,nj->ni", world.rotations, world.points[5] - world.centres)
    cam_model = np.einsum("nij,nj->ni", model.rotations, model.points[5] - model.centres)
    assert np.allclose(cam_model, s[0] * cam_world)  # the same images, in model units
    seeds = [to_model_frame(world, seed=k)[0].centres[0] for k in range(3)]
    assert not np.allclose(seeds[0], seeds[1])
