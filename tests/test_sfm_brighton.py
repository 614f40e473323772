"""`mgs sfm` on brighton_beach's 18 drone photos against the shipped COLMAP model and the photos' GPS."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from momentum_gs.cli import main
from momentum_gs.config import DataConfig
from momentum_gs.data.colmap.folder import read_model
from momentum_gs.data.colmap.model import qvec_to_rotmat
from momentum_gs.data.scene import load_scene
from momentum_gs.data.up import estimate_up
from momentum_gs.data.georef import wgs84_to_enu
from scripts.sfm_placement import exif_gps
from tests.helpers.brighton import DATA, camera_centres

pytest.importorskip("pycolmap")
pytestmark = [pytest.mark.slow, pytest.mark.heavy,
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


def test_sfm_on_brighton_photos(brighton_sfm):
    out, printed = brighton_sfm
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


def nadir_and_level(scene) -> tuple[float, float]:
    """(degrees of the mean optical axis from straight down, degrees of the camera centres' plane from level):
    brighton_beach is a nadir flight at a constant altitude."""
    model = read_model(scene / "sparse" / "0")
    rot = [qvec_to_rotmat(im.qvec) for im in model.images.values()]
    looking = np.mean([r[2] for r in rot], 0)
    centres = np.stack(list(camera_centres(model).values()))
    normal = np.linalg.svd(centres - centres.mean(0))[2][2]
    return (float(np.degrees(np.arccos(-looking[2] / np.linalg.norm(looking)))),
            float(np.degrees(np.arccos(abs(normal[2])))))


@pytest.fixture(scope="module")
def drifting(tmp_path_factory, brighton_sfm):
    """brighton_beach's photos with their EXIF altitude climbing by 100 m over the flight, run through mgs sfm
    from the features and matches of the session's run (the EXIF does not change them; the GPS priors are written
    afresh each run); (the scene, its report, a folder holding the feature cache for the variants)."""
    from tests.helpers.exif_variants import altitude_ramp, copy_with_gps

    root = tmp_path_factory.mktemp("drift")
    copy_with_gps(DATA / "input", root / "photos", altitude_ramp(100.0))
    _copy_features(brighton_sfm[0], root / "scene")
    assert main(["sfm", str(root / "photos"), "--out", str(root / "scene"), "--threads", "2"]) == 0
    return root / "scene", json.loads((root / "scene" / "sfm.json").read_text()), root


def _copy_features(scene, out) -> None:
    """``scene``'s cached features and matches into the scene folder ``out``, for `mgs sfm --out out` to reuse."""
    (out / "sfm").mkdir(parents=True)
    for cached in ("database.db", "features.json"):
        shutil.copy(scene / "sfm" / cached, out / "sfm" / cached)


def rerun(root, name: str, edit, *options) -> tuple:
    """The same photos with another EXIF edit, reusing the first run's features and matches."""
    from tests.helpers.exif_variants import copy_with_gps

    copy_with_gps(DATA / "input", root / f"photos_{name}", edit)
    _copy_features(root / "scene", root / name)
    code = main(["sfm", str(root / f"photos_{name}"), "--out", str(root / name), "--threads", "2", *options])
    return code, root / name


def test_a_drifting_altitude_leaves_the_scene_level(drifting, capsys):
    scene, report, _ = drifting
    assert report["ok"] and report["fit"] == "level" and "nadir" in report["up_from"]
    assert report["gps_altitude_drift_m"] == pytest.approx(100, abs=10)  # the drift it found, reported
    assert report["gps_tilt_vs_photos_deg"] > 10  # what fitting the raw altitude would have done
    assert report["gps_residual_horizontal_rms_m"] < 1.0
    nadir, plane = nadir_and_level(scene)
    assert nadir < 2.0 and plane < 2.0
    geo = json.loads((scene / "georef.json").read_text())
    assert geo["fit"] == "level" and geo["altitude_drift_m"] == report["gps_altitude_drift_m"]


def test_noisy_and_wrong_gps_leaves_the_scene_level(drifting, capsys):
    """Altitudes drifting by 100 m with ±20 m of noise on each, and one photo's fix 500 m east: one mapping for both
    (each is a minute of COLMAP on 2 cores)."""
    from tests.helpers.exif_variants import altitude_noise, altitude_ramp, chain, moved

    _, _, root = drifting
    edit = chain(altitude_ramp(100.0), altitude_noise(20.0), moved(5, 500.0))
    code, scene = rerun(root, "noisy_and_far", edit)
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((scene / "sfm.json").read_text())
    assert report["fit"] == "level" and report["gps_residual_horizontal_rms_m"] < 1.0
    nadir, plane = nadir_and_level(scene)
    assert nadir < 2.0 and plane < 2.0
    # the photo 500 m from its GPS, where the others agree to a metre, is taken out, named
    assert report["georeference"]["photos_taken_out"] == {"DJI_0023.JPG": pytest.approx(500, abs=5)}
    assert report["georeference"]["gps_outliers"] == {}
    assert "took 1 photo(s) out of the model" in printed and "DJI_0023.JPG (50" in printed
    assert "DJI_0023.JPG" in report["images_left_out"] and "DJI_0023.JPG, misregistered" in printed
    assert "DJI_0023.JPG" not in {im.name for im in read_model(scene / "sparse" / "0").images.values()}


def test_trusting_a_drifting_altitude_is_refused(drifting, capsys):
    _, _, root = drifting
    from tests.helpers.exif_variants import altitude_ramp

    code, scene = rerun(root, "use", altitude_ramp(100.0), "--gps-altitude", "use")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: cannot level the scene with the GPS altitudes: they tilt it")
    assert "--gps-altitude auto" in err and not (scene / "sparse").exists()


def test_a_capture_in_two_parts_is_refused_or_its_larger_part_kept(tmp_path, capsys):
    """Ten of brighton_beach's photos, and five others mirrored left to right: the mirrored ones match each
    other (a mirrored world) but not the ten, so the capture is in two parts or more."""
    import cv2

    photos = sorted((DATA / "input").iterdir())
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(photos[:10] + photos[12:17]):
        image = cv2.resize(cv2.imread(str(photo)), (800, 450), interpolation=cv2.INTER_AREA)
        mirrored = i >= 10
        cv2.imwrite(str(folder / (f"m_{photo.stem}.jpg" if mirrored else f"{photo.stem}.jpg")),
                    image[:, ::-1] if mirrored else image)
    out = tmp_path / "scene"
    assert main(["sfm", str(folder), "--out", str(out), "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    # the ten form one model; the mirrored five one or more (COLMAP's mapper splits them differently from
    # machine to machine: 5, or 5 and 3 of them again, or 3 and 2)
    assert re.search(r"disconnected models \(10, [0-9, ]+ photos of their own\)", err) and "--keep-largest" in err
    assert not (out / "sparse").exists()
    assert main(["sfm", str(folder), "--out", str(out), "--threads", "2", "--keep-largest"]) == 0
    printed = capsys.readouterr().out
    assert "kept the largest connected part: 10 of 15 photos (67% of the capture)" in printed
    report = json.loads((out / "sfm.json").read_text())
    assert report["images_left_out"] == sorted(f"m_{p.stem}.jpg" for p in photos[12:17])
    assert sorted(im.name for im in read_model(out / "sparse" / "0").images.values()) == \
        sorted(f"{p.stem}.jpg" for p in photos[:10])


def test_photos_turned_half_a_turn_come_out_right_side_up(tmp_path, capsys):
    """brighton_beach as if the camera hung upside down: every photo turned half a turn (960 x 540), its EXIF
    kept. The scene must come out level, looking down, above the ground and at its GPS (not mirrored)."""
    import cv2
    import piexif

    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((DATA / "input").iterdir()):
        image = cv2.rotate(cv2.resize(cv2.imread(str(photo)), (960, 540), interpolation=cv2.INTER_AREA),
                           cv2.ROTATE_180)
        cv2.imwrite(str(folder / photo.name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        exif = piexif.load(str(photo))
        piexif.insert(piexif.dump({"0th": {}, "Exif": {}, "GPS": exif["GPS"]}), str(folder / photo.name))
    out = tmp_path / "scene"
    assert main(["sfm", str(folder), "--out", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"georeferenced: ENU metres; z up: cameras [\d.]+ m above the ground they see, looking \d+° "
                     r"from straight down; 18 of 18 GPS fixes within", printed), printed
    nadir, plane = nadir_and_level(out)
    assert nadir < 2.0 and plane < 2.0
    model = read_model(out / "sparse" / "0")
    image_up = np.mean([-qvec_to_rotmat(im.qvec)[1] for im in model.images.values()], 0)
    geo = json.loads((out / "georef.json").read_text())
    origin = [geo["origin"][k] for k in ("lat", "lon", "alt")]
    mine = camera_centres(model)
    for name in ("DJI_0018.JPG", "DJI_0035.JPG"):  # at their own GPS positions: not mirrored
        np.testing.assert_allclose(mine[name][:2], wgs84_to_enu(exif_gps(DATA / "input" / name), origin)[0][:2],
                                   atol=1.5)
    assert np.median(np.stack(list(mine.values()))[:, 2]) > np.median(model.points[:, 2]) + 20  # above the ground
    assert abs(image_up[2]) < 0.1  # the image-up vectors lie level: they could not have given the sign


def test_ground_control_points_place_the_scene_where_they_say(brighton_sfm, tmp_path, capsys):
    """Five sparse points of the GPS-placed scene, given as GCPs in UTM 3 m further east with their marks in the
    photos: `mgs sfm --gcp` puts every camera 3 m east of where the GPS put it, and reports each point."""
    import pycolmap

    from momentum_gs.data.georef import enu_to_wgs84
    from momentum_gs.data.sfm.gcp import write_gcp_list
    from momentum_gs.data.utm import wgs84_to_utm

    scene, _ = brighton_sfm
    out = tmp_path / "scene"
    shutil.copytree(scene, out)  # the features and matches cached in sfm/ come along
    origin = np.array([json.loads((scene / "georef.json").read_text())["origin"][k] for k in ("lat", "lon", "alt")])
    rec = pycolmap.Reconstruction(str(scene / "sparse" / "0"))
    ids = [i for i, p in rec.points3D.items() if p.track.length() >= 4 and p.error < 1.0]
    xyz = np.stack([rec.points3D[i].xyz for i in ids])
    lo, hi = np.percentile(xyz[:, :2], 10, 0), np.percentile(xyz[:, :2], 90, 0)
    targets = [lo, hi, [lo[0], hi[1]], [hi[0], lo[1]], (lo + hi) / 2]
    chosen = [ids[int(np.argmin(np.linalg.norm(xyz[:, :2] - t, axis=1)))] for t in targets]
    shift = np.array([3.0, 0.0, 0.0])
    lla = enu_to_wgs84(np.stack([rec.points3D[i].xyz for i in chosen]) + shift, origin)
    zone = int((lla[0, 1] + 180) // 6) + 1
    utm = wgs84_to_utm(lla, zone, lla[0, 0] < 0)
    rows = []
    for k, i in enumerate(chosen):  # four marks a point, one a photo (a track may hold two in one photo)
        marks = {rec.images[e.image_id].name: rec.images[e.image_id].points2D[e.point2D_idx].xy
                 for e in rec.points3D[i].track.elements}
        rows += [(utm[k], xy, name, f"gcp{k}") for name, xy in sorted(marks.items())[:4]]
    write_gcp_list(tmp_path / "gcp_list.txt", f"WGS84 UTM {zone}{'S' if lla[0, 0] < 0 else 'N'}", rows)

    assert main(["sfm", str(DATA / "input"), "--out", str(out), "--gcp", str(tmp_path / "gcp_list.txt"),
                 "--overwrite", "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "ground control points within" in printed and printed.count("GCP gcp") == 5, printed
    report = json.loads((out / "sfm.json").read_text())
    assert report["fit"] == "gcp" and report["gps_residual_rms_m"] < 0.3
    assert sorted(report["georeference"]["gcp_residuals_m"]) == [f"gcp{k}" for k in range(5)]
    new_origin = np.array([json.loads((out / "georef.json").read_text())["origin"][k] for k in ("lat", "lon", "alt")])
    before, after = camera_centres(read_model(scene / "sparse" / "0")), camera_centres(read_model(out / "sparse" / "0"))
    names = sorted(before)
    moved = wgs84_to_enu(enu_to_wgs84(np.stack([after[n] for n in names]), new_origin), origin)
    np.testing.assert_allclose(moved - np.stack([before[n] for n in names]), np.tile(shift, (len(names), 1)),
                               atol=0.25)
