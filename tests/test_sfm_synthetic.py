"""`mgs sfm` with known answers: views of the synthetic city rendered at known poses, GPS EXIF written
from the known camera centres, and the recovered poses and metric scale checked against them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from momentum_gs.cli import main
from momentum_gs.data.colmap.folder import read_model
from momentum_gs.data.colmap.model import qvec_to_rotmat
from momentum_gs.data.georef import wgs84_to_enu
from momentum_gs.data.synthetic import intrinsics
from tests.helpers.control_survey import ORIGIN, PRESET, flight, write_photos

pytestmark = pytest.mark.heavy  # COLMAP on photos: make test-heavy

pycolmap = pytest.importorskip("pycolmap")
piexif = pytest.importorskip("piexif")

@pytest.mark.slow
def test_sfm_recovers_known_poses_and_scale(tmp_path, capsys):
    poses = flight()
    truth = write_photos(tmp_path / "photos", poses, gps_noise_m=0.0, no_fix=(5,))  # exact GPS, one photo without
    out = tmp_path / "scene"
    # one thread: COLMAP is then deterministic (with two, centre errors varied from 0.7 to 1.2 m run to run)
    assert main(["sfm", str(tmp_path / "photos"), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "GPS of (0, 0) or invalid (no fix) in 1 photo(s), not used: view05.jpg" in printed
    report = json.loads((out / "sfm.json").read_text())
    assert report["images_registered"] >= 15 and report["georeferenced"] and len(report["cameras"]) == 1
    geo = json.loads((out / "georef.json").read_text())
    assert geo["images_used"] >= 14 and geo["residual_rms_m"] < 0.5

    # The truth in our ENU frame: the city's frame moved to the capture's centre, axes unchanged.
    origin = np.array([geo["origin"][k] for k in ("lat", "lon", "alt")])
    shift = wgs84_to_enu(ORIGIN[None], origin)[0]
    model = read_model(out / "sparse" / "0")
    for im in model.images.values():
        centre = -qvec_to_rotmat(im.qvec).T @ im.tvec
        assert np.linalg.norm(centre - (truth[im.name] + shift)) < 1.0  # metres, over a 45 m x 45 m survey
        world_to_cam = poses[int(im.name[4:6])][:3, :3]
        delta = qvec_to_rotmat(im.qvec) @ world_to_cam.T
        assert np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))) < 1.0
    # Metric scale: distances between recovered centres are the true ones in metres.
    names = sorted(truth)
    ours = {im.name: -qvec_to_rotmat(im.qvec).T @ im.tvec for im in model.images.values()}
    d_ours = np.linalg.norm(ours[names[0]] - ours[names[-1]])
    assert d_ours == pytest.approx(np.linalg.norm(truth[names[0]] - truth[names[-1]]), rel=0.02)
    (camera,) = model.cameras.values()  # the focal length, from a 35 mm EXIF prior refined by COLMAP
    assert camera.params[0] == pytest.approx(intrinsics(PRESET)[0, 0], rel=0.02)


@pytest.mark.slow
def test_an_orbit_photographed_upside_down_comes_out_right_side_up(tmp_path, capsys):
    """An orbit of 24 obliques (35° off straight down, facing the centre) by a camera mounted upside down
    (every photo turned half a turn), with 3 m of GPS noise and an altitude drifting 60 m: level, looking down,
    above the city and not mirrored."""
    from momentum_gs.data.georef import enu_to_wgs84
    from momentum_gs.data.synthetic.survey import city_for, flight_poses, write_photo

    rotations, centres = flight_poses("orbit", n=24, altitude=80.0, mount_roll_deg=180, pitch_deg=35,
                                      fixed_wing=False, seed=1)
    poses = [np.r_[np.c_[R, -R @ c], [[0, 0, 0, 1]]] for R, c in zip(rotations, centres)]
    city = city_for(poses, 80.0, PRESET.hfov_deg)
    rng = np.random.default_rng(2)
    measured = centres + np.c_[rng.normal(0, 3.0, (24, 2)), np.linspace(0, 60, 24)]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (pose, lla) in enumerate(zip(poses, enu_to_wgs84(measured, ORIGIN))):
        write_photo(folder / f"view{i:02d}.jpg", city, PRESET, pose, lla)
    out = tmp_path / "scene"
    assert main(["sfm", str(folder), "--out", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "z up: cameras" in printed and "above the ground they see" in printed
    geo = json.loads((out / "georef.json").read_text())
    origin = np.array([geo["origin"][k] for k in ("lat", "lon", "alt")])
    shift = wgs84_to_enu(ORIGIN[None], origin)[0]
    model = read_model(out / "sparse" / "0")
    found = np.stack([-qvec_to_rotmat(im.qvec).T @ im.tvec for im in model.images.values()])
    normal = np.linalg.svd(found - found.mean(0))[2][2]  # the orbit was flown at one height: level
    assert np.degrees(np.arccos(abs(normal[2]))) < 2.0 and np.median(found[:, 2]) > np.median(model.points[:, 2]) + 50
    errors = []
    for im in model.images.values():  # each camera where it was and looking where it looked: not mirrored
        truth = rotations[int(im.name[4:6])]
        delta = qvec_to_rotmat(im.qvec) @ truth.T
        errors.append(np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))))
        assert (qvec_to_rotmat(im.qvec).T @ [0, -1, 0])[2] < 0  # image-up points down: the mount kept upside down
        centre = -qvec_to_rotmat(im.qvec).T @ im.tvec
        assert np.linalg.norm(centre[:2] - (centres[int(im.name[4:6])] + shift)[:2]) < 6.0
    # COLMAP's own error on these obliques is a pitch of 4-6° (its focal length), from run to run; a wrong
    # sign, turn or flip of the frame would be tens of degrees
    assert np.median(errors) < 6.0 and max(errors) < 12.0, errors
