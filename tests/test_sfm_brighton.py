"""`mgs sfm` on brighton_beach's 18 drone photos against the shipped COLMAP model and the photos' GPS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from momentum_gs.cli import main
from momentum_gs.config import DataConfig
from momentum_gs.data.colmap import qvec_to_rotmat, read_model
from momentum_gs.data.scene import load_scene
from momentum_gs.partition.frame import estimate_up
from momentum_gs.data.georef import wgs84_to_enu
from scripts.sfm_placement import exif_gps
from tests.test_brighton import DATA, camera_centres

pytest.importorskip("pycolmap")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(DATA is None, reason="brighton_beach dataset not found (set MGS_SHARED)")]


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising |s R src + t - dst| (Umeyama), for [N, 3] point sets."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    R = u @ d @ vt
    s = np.trace(np.diag(sig) @ d) / (a ** 2).sum(1).mean()
    return s, R, mu_d - s * R @ mu_s


def test_sfm_on_brighton_photos(tmp_path, capsys):
    out = tmp_path / "scene"
    assert main(["sfm", str(DATA / "input"), "--out", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "registered 18 of 18 photos" in printed and "georeferenced" in printed
    report = json.loads((out / "sfm.json").read_text())
    assert report["ok"] and report["images_registered"] == 18 and report["images_left_out"] == []
    assert report["mean_reprojection_error_px"] < 1.0 and report["points"] > 5000
    assert report["gps_residual_rms_m"] < 1.0  # the shipped model fits the GPS at 0.43 m horizontally
    assert (out / "cameras.png").stat().st_size > 10_000

    ours, shipped = read_model(out / "sparse" / "0"), read_model(DATA / "distorted" / "sparse" / "0")
    assert [c.model for c in ours.cameras.values()] == ["OPENCV"]  # distorted: the image cache undistorts it
    mine, theirs = camera_centres(ours), camera_centres(shipped)
    names = sorted(theirs)
    a, b = np.stack([theirs[n] for n in names]), np.stack([mine[n] for n in names])
    s, R, t = similarity(a, b)
    extent = np.linalg.norm(np.ptp(b, 0))
    assert np.abs((s * a @ R.T + t) - b).max() < 0.01 * extent
    rot = {im.name: qvec_to_rotmat(im.qvec) for im in ours.images.values()}
    for im in shipped.images.values():  # world_to_cam: ours = shipped @ R^T after the alignment
        delta = rot[im.name] @ R @ qvec_to_rotmat(im.qvec).T
        assert np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))) < 0.5

    # Georeferenced: metres (the GPS positions' spread), z up for this nadir flight at constant altitude.
    geo = json.loads((out / "georef.json").read_text())
    origin = [geo["origin"][k] for k in ("lat", "lon", "alt")]
    for name in ("DJI_0018.JPG", "DJI_0035.JPG"):  # each photo's centre lies at its own GPS position
        np.testing.assert_allclose(mine[name], wgs84_to_enu(exif_gps(DATA / "input" / name), origin)[0], atol=1.5)
    normal = np.linalg.svd(b - b.mean(0))[2][2]
    assert np.degrees(np.arccos(abs(normal[2]))) < 2.0
    looking = np.mean([rot[n][2] for n in names], 0)  # each camera's optical axis in the world
    assert np.degrees(np.arccos(-looking[2] / np.linalg.norm(looking))) < 2.0

    scene = load_scene(DataConfig(path=str(out), test_every=8), images=False)  # what `mgs train` reads
    assert len(scene.train) + len(scene.test) == 18 and len(scene.points) == report["points"]
    up = estimate_up(scene.train)  # what `mgs partition` and the configs' automatic up axis find
    assert np.degrees(np.arccos(up[2])) < 2.0
