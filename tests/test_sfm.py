"""`mgs sfm`: bad input is one error line with nothing left as if complete; georeferencing arithmetic; camera
grouping; the matcher rule. The runs on real and synthetic photos are in test_sfm_brighton.py and
test_sfm_synthetic.py."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from momentum_gs.cli import main
from momentum_gs.data.sfm.colmap_steps import EXHAUSTIVE_MAX, choose_matcher
from momentum_gs.data.georef import enu_to_wgs84, ply_comment, sidecar, usable_gps, wgs84_to_enu


def texture(seed: int, size=(160, 120)) -> np.ndarray:
    """A blurred noise picture (BGR uint8): texture SIFT finds features on."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 1.5)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)


def write_photos(folder, count: int, size=(160, 120), start: int = 0) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"p{start + i:02d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        cv2.imwrite(str(path), texture(start + i, size))
    return paths


def sfm_error(capsys, *argv) -> str:
    assert main(["sfm", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]  # after the progress bars
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture(autouse=True)
def _pycolmap():
    pytest.importorskip("pycolmap")


def test_folders_without_usable_photos(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    assert "it is empty" in sfm_error(capsys, tmp_path / "empty", "--out", out)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not a photo")
    assert "none of them JPEG" in sfm_error(capsys, tmp_path / "docs", "--out", out)
    write_photos(tmp_path / "one", 1)
    assert "only one photo" in sfm_error(capsys, tmp_path / "one", "--out", out)
    assert "is not a folder" in sfm_error(capsys, tmp_path / "missing", "--out", out)
    assert not out.exists()  # the photos are checked before anything is made: no empty output folder


def test_duplicate_names_in_subfolders(tmp_path, capsys):
    write_photos(tmp_path / "photos" / "flight1", 2)
    write_photos(tmp_path / "photos" / "flight2", 1)
    err = sfm_error(capsys, tmp_path / "photos", "--out", tmp_path / "out")
    assert "two photos are named p00.jpg" in err and "flight1" in err and "flight2" in err


def damage(path, how: str) -> None:
    """Damage a JPEG as a bad card or copy does: cut short, cut short with its end marker kept, or garbled in
    the middle of its compressed data."""
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    if how == "truncated":
        data = data[:half]
    elif how == "truncated, end marker kept":
        data = data[:half] + b"\xff\xd9"
    else:
        for i in range(half, half + 40):
            data[i] = 0xFF if i % 7 == 0 else data[i] ^ 0x5A
    path.write_bytes(bytes(data))


def huge_png(path, side: int) -> None:
    """A PNG whose header declares side × side pixels (with a few bytes of data)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("how", ["truncated", "truncated, end marker kept", "corrupt data"])
def test_a_damaged_photo_is_named_and_left_out(tmp_path, how):
    from momentum_gs.data.sfm.photos import Unreadable, check_photo, gather_photos

    photos = write_photos(tmp_path / "photos", 3, size=(320, 240))
    damage(photos[1], how)
    with pytest.raises(Unreadable, match="truncated|damaged"):
        check_photo(photos[1])
    sizes, skipped = gather_photos(photos, tmp_path / "images")
    assert sorted(sizes) == ["p00.jpg", "p02.jpg"] and list(skipped) == ["p01.jpg"]
    assert not (tmp_path / "images" / "p01.jpg").exists()


@pytest.mark.parametrize("side", [40000, 65500])
def test_a_photo_declaring_too_many_pixels_is_left_out(tmp_path, side):
    from momentum_gs.data.sfm.photos import Unreadable, check_photo

    huge_png(tmp_path / "huge.png", side)
    with pytest.raises(Unreadable, match="declares more pixels than OpenCV decodes"):
        check_photo(tmp_path / "huge.png")


@pytest.mark.slow
def test_damaged_and_garbage_photos_are_listed_and_the_run_goes_on(tmp_path, capsys):
    photos = write_photos(tmp_path / "photos", 4)
    damage(photos[1], "corrupt data")
    photos[2].write_bytes(b"\x00garbage" * 100)
    huge_png(tmp_path / "photos" / "p04.png", 40000)
    err = sfm_error(capsys, tmp_path / "photos", "--out", tmp_path / "out", "--threads", "1")
    assert "no model could be built: no two of the 2 photos" in err  # only the two clean photos went on
    report = json.loads((tmp_path / "out" / "sfm" / "sfm.json").read_text())
    assert sorted(report["photos_not_decoded"]) == ["p01.jpg", "p02.jpg", "p04.png"]
    assert "damaged data" in report["photos_not_decoded"]["p01.jpg"]
    assert "not an image" in report["photos_not_decoded"]["p02.jpg"]


def test_a_photo_that_cannot_be_read_or_copied_is_one_line(tmp_path, capsys, monkeypatch):
    from momentum_gs.data.sfm import photos as P

    paths = write_photos(tmp_path / "photos", 2)
    real_fromfile = np.fromfile

    def unreadable(path, *args, **kwargs):
        if str(path) == str(paths[1]):
            raise PermissionError(13, "Permission denied")
        return real_fromfile(path, *args, **kwargs)

    monkeypatch.setattr(P.np, "fromfile", unreadable)
    err = sfm_error(capsys, tmp_path / "photos", "--out", tmp_path / "out")
    assert err == f"error: photo {paths[1]} cannot be read (Permission denied); fix its permissions or copy it again"
    monkeypatch.setattr(P.np, "fromfile", real_fromfile)

    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(P.os, "link", no_link)
    monkeypatch.setattr(P.shutil, "copy2", full_disk)
    err = sfm_error(capsys, tmp_path / "photos", "--out", tmp_path / "out2")
    assert err.startswith("error: cannot write ") and "p00.jpg (No space left on device)" in err


def test_unwritable_output(tmp_path, capsys):
    write_photos(tmp_path / "photos", 2)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder's parent should be")
    assert "cannot write to" in sfm_error(capsys, tmp_path / "photos", "--out", blocker / "out")
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        (tmp_path / "ro").mkdir(mode=0o555)
        assert "cannot write to" in sfm_error(capsys, tmp_path / "photos", "--out", tmp_path / "ro")


@pytest.mark.slow
def test_photos_with_no_overlap_fail_with_a_report(tmp_path, capsys):
    write_photos(tmp_path / "photos", 4)  # unrelated noise: nothing matches geometrically
    out = tmp_path / "out"
    err = sfm_error(capsys, tmp_path / "photos", "--out", out, "--threads", "1")
    assert "no model could be built" in err and "overlap" in err
    report = json.loads((out / "sfm" / "sfm.json").read_text())  # a failed run's report stays in the work folder
    assert report["ok"] is False and report["problem"] in err and report["images_total"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["sfm"]  # nothing else in OUT: no model, no images
    assert sorted(p.name for p in (out / "sfm" / "images").iterdir()) == ["p00.jpg", "p01.jpg", "p02.jpg", "p03.jpg"]


def scene_files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_an_existing_scene_is_refused_and_survives_a_failed_overwrite(tmp_path, capsys):
    out = tmp_path / "site"
    write_photos(out / "images", 2, start=10)
    (out / "sparse" / "0").mkdir(parents=True)
    (out / "sparse" / "0" / "cameras.bin").write_bytes(b"the previous model")
    (out / "georef.json").write_text('{"origin": {"lat": 1, "lon": 2, "alt": 3}}')
    before = scene_files(out)
    write_photos(tmp_path / "photos", 3)  # noise: this run will fail
    err = sfm_error(capsys, tmp_path / "photos", "--out", out, "--threads", "1")
    assert "already holds a scene (images, sparse, georef.json)" in err and "--overwrite" in err
    assert scene_files(out) == before and not (out / "sfm").exists()
    err = sfm_error(capsys, tmp_path / "photos", "--out", out, "--threads", "1", "--overwrite")
    assert "no model could be built" in err
    after = {k: v for k, v in scene_files(out).items() if not k.startswith("sfm/")}
    assert after == before  # the failed run replaced nothing


def test_frames_of_a_video_do_not_replace_photos_already_in_out(tmp_path, capsys):
    out = tmp_path / "site"
    (out / "images").mkdir(parents=True)
    keep = out / "images" / "flight_00000.jpg"
    keep.write_bytes(b"a user's photo, same name as the first frame")
    video = tmp_path / "flight.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for i in range(10):
        writer.write(texture(i))
    writer.release()
    err = sfm_error(capsys, "--video", video, "--out", out)
    assert "already holds a scene (images)" in err
    assert keep.read_bytes() == b"a user's photo, same name as the first frame"


@pytest.mark.slow
def test_features_are_kept_for_a_rerun_until_their_options_change(tmp_path, capsys):
    import sqlite3

    write_photos(tmp_path / "photos", 3)
    out = tmp_path / "out"
    database = out / "sfm" / "database.db"

    def marked() -> bool:
        with sqlite3.connect(database) as db:
            return bool(db.execute("SELECT name FROM sqlite_master WHERE name = 'test_marker'").fetchall())

    sfm_error(capsys, tmp_path / "photos", "--out", out, "--threads", "1")
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE test_marker (x INTEGER)")
    sfm_error(capsys, tmp_path / "photos", "--out", out, "--threads", "1", "--matcher", "sequential")
    assert marked()  # another matcher: the same database, its features and matches kept
    sfm_error(capsys, tmp_path / "photos", "--out", out, "--threads", "1", "--camera-model", "SIMPLE_RADIAL")
    assert not marked()  # features of another camera model: started afresh


@pytest.mark.slow
def test_one_camera_per_camera_and_size(tmp_path):
    import pycolmap

    from momentum_gs.data.sfm.colmap_steps import extract
    from momentum_gs.data.sfm.photos import camera_groups

    images = tmp_path / "images"
    write_photos(images, 3, (160, 120))
    write_photos(images, 2, (120, 160), start=3)  # the same (EXIF-less) camera held upright: another size
    database = tmp_path / "database.db"
    names = sorted(p.name for p in images.iterdir())
    sizes = {n: cv2.imread(str(images / n)).shape[1::-1] for n in names}
    extract(pycolmap, database, images, camera_groups(images, sizes), "OPENCV", "auto", 3200, 1)
    db = pycolmap.Database.open(database)
    cameras = {c.camera_id: (c.width, c.height) for c in db.read_all_cameras()}
    by_image = {im.name: cameras[im.camera_id] for im in db.read_all_images()}
    assert db.num_keypoints() > 0
    db.close()
    assert sorted(cameras.values()) == [(120, 160), (160, 120)]
    assert by_image["p00.jpg"] == (160, 120) and by_image["p04.jpg"] == (120, 160)


def test_enu_conversions_agree_with_pycolmap():
    import pycolmap

    origin = np.array([46.8426, -91.9940, 198.5])
    rng = np.random.default_rng(0)
    lla = origin + np.c_[rng.normal(0, 0.01, (20, 2)), rng.normal(0, 50, 20)]
    ours = wgs84_to_enu(lla, origin)
    np.testing.assert_allclose(ours, pycolmap.GPSTransform().ellipsoid_to_enu(lla, *origin), atol=1e-6)
    back = enu_to_wgs84(ours, origin)
    np.testing.assert_allclose(back[:, :2], lla[:, :2], atol=1e-10)
    np.testing.assert_allclose(back[:, 2], lla[:, 2], atol=1e-4)
    assert np.abs(ours[:, 1]).max() > 500  # 0.01° of latitude is about 1.1 km north


def test_gps_of_zero_zero_is_no_fix():
    good, bad = usable_gps({"a.jpg": np.array([0.0, 0.0, 0.0]), "b.jpg": np.array([46.8, -91.9, 200.0]),
                            "c.jpg": np.array([np.nan, 1.0, 0.0])})
    assert list(good) == ["b.jpg"] and bad == ["a.jpg", "c.jpg"]


def test_sidecar_places_points():
    georef = {"origin": {"lat": 46.8426, "lon": -91.994, "alt": 198.5}, "residual_rms_m": 0.5}
    east_100 = np.array([[100.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    info = sidecar(georef, east_100)
    assert info["centre_wgs84"]["lon"] > -91.994 and abs(info["centre_wgs84"]["lat"] - 46.8426) < 1e-5
    # 100 m east at this latitude is 100 / (6378137 cos 46.84°) radians of longitude
    expected = -91.994 + np.degrees(100 / (6388838.3 * np.cos(np.radians(46.8426))))
    assert abs(info["centre_wgs84"]["lon"] - expected) < 1e-5
    assert "46.842600000" in ply_comment(georef)


def test_matcher_rule():
    assert choose_matcher("auto", 18, True) == "exhaustive"
    assert choose_matcher("auto", 60, True) == "exhaustive" and choose_matcher("auto", 61, True) == "spatial"
    assert choose_matcher("auto", 100, True) == "spatial"  # 2.4x faster at 100 photos, the same result
    assert choose_matcher("auto", 100, False) == "exhaustive"  # without GPS: sequential needs capture order
    assert choose_matcher("auto", EXHAUSTIVE_MAX + 1, False) == "sequential"
    assert choose_matcher("sequential", 5, True) == "sequential"


def test_video_is_sampled_into_frames(tmp_path, capsys):
    from momentum_gs.data.sfm.photos import sample_video

    video = tmp_path / "flight.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    scene = texture(0, (400, 120))
    for i in range(30):  # 3 s at 10 fps, panning across the texture
        writer.write(np.ascontiguousarray(scene[:, i * 8:i * 8 + 160]))
    writer.release()
    frames = sample_video(video, 2.0, tmp_path / "images")
    assert [f.name for f in frames] == [f"flight_{i:05d}.jpg" for i in range(6)]  # every 5th frame
    assert cv2.imread(str(frames[1])).shape == (120, 160, 3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert "cannot open video" in sfm_error(capsys, "--video", tmp_path / "bad.mp4", "--out", tmp_path / "out")
    assert "either a folder of photos" in sfm_error(capsys, tmp_path, "--video", video, "--out", tmp_path / "out")


def test_the_checks_that_fail_a_run():
    from momentum_gs.data.sfm.report import problem

    ok = {"images_total": 18, "images_registered": 18, "images_left_out": [], "models": [18],
          "matcher": "exhaustive", "gps_fit_failed": False, "gps_residual_horizontal_rms_m": 0.6}
    assert problem(ok, 120.0) is None
    assert "2 disconnected models (12, 6 photos" in problem({**ok, "models": [12, 6]}, 120.0)
    assert "--keep-largest" in problem({**ok, "models": [12, 6]}, 120.0)
    assert problem({**ok, "models": [8, 10], "images_registered": 8}, 120.0, keep_largest=True) is None
    assert problem({**ok, "models": [18, 2]}, 120.0) is None  # two strays are left out, not a second part
    few = problem({**ok, "images_registered": 8, "images_left_out": [f"p{i}" for i in range(10)],
                   "matcher": "sequential"}, 120.0)
    assert "only 8 of 18" in few and "p0, p1, p2, p3, p4, ..." in few and "--matcher exhaustive" in few
    assert "residual 30.0 m RMS horizontally over a 120 m capture" in problem(
        {**ok, "gps_residual_horizontal_rms_m": 30.0}, 120.0)
    assert problem({**ok, "gps_residual_horizontal_rms_m": 0.9}, 2.0) is None  # a tiny capture: 1 m is allowed
    # a large site keeps no more than a GPS can be wrong by: 16 m (a consumer GPS) passes, 45 m does not
    assert problem({**ok, "gps_residual_horizontal_rms_m": 16.0}, 1500.0) is None
    assert "45.0 m RMS horizontally over a 1500 m capture (at most 30 m)" in problem(
        {**ok, "gps_residual_horizontal_rms_m": 45.0}, 1500.0)
    assert "could not be fitted" in problem({**ok, "gps_fit_failed": True, "gps_residual_horizontal_rms_m": None},
                                            None)


def test_models_count_only_photos_no_earlier_model_has():
    """COLMAP may rebuild part of a capture again as a smaller model: those photos are not another part."""
    from types import SimpleNamespace

    from momentum_gs.data.sfm.report import summary

    def model(*names):
        return SimpleNamespace(reg_image_ids=lambda: range(len(names)), image=lambda i: SimpleNamespace(name=names[i]),
                               num_points3D=lambda: 0, compute_mean_reprojection_error=lambda: 0.0, cameras={})

    names = [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)]
    parts = [model(*names[:10]), model(*names[10:]), model(*names[10:13]), model("a1", "a2", "b4")]
    report = summary(parts, names, None, "exhaustive")
    assert report["models"] == [10, 5]
    assert report["images_left_out"] == names[10:]


@pytest.mark.slow
def test_photos_already_in_the_output_folder(tmp_path, capsys):
    out = tmp_path / "site"
    write_photos(out / "images", 3)
    err = sfm_error(capsys, out / "images", "--out", out, "--threads", "1")
    assert "no model could be built: no two of the 3 photos" in err and "try more photos" in err


def exif_photo(path, gps: dict) -> None:
    """A small JPEG with the GPS tags ``gps`` (piexif GPSIFD keys) in its EXIF."""
    piexif = pytest.importorskip("piexif")
    cv2.imwrite(str(path), texture(0, (64, 48)))
    piexif.insert(piexif.dump({"GPS": gps}), str(path))


def test_gps_tags_are_read_and_checked(tmp_path):
    piexif = pytest.importorskip("piexif")
    from momentum_gs.data.sfm.gps import read_gps

    G = piexif.GPSIFD
    lat, lon = ((46, 1), (50, 1), (3333, 100)), ((92, 1), (0, 1), (0, 1))
    base = {G.GPSLatitudeRef: b"N", G.GPSLatitude: lat, G.GPSLongitudeRef: b"W", G.GPSLongitude: lon,
            G.GPSAltitudeRef: 0, G.GPSAltitude: (2000, 10)}
    cases = {
        "west.jpg": {},
        "lower.jpg": {G.GPSLongitudeRef: b"w"},  # lower case: still west
        "unknown_ref.jpg": {G.GPSLongitudeRef: b"X"},
        "far_lon.jpg": {G.GPSLongitude: ((451, 1), (0, 1), (0, 1)), G.GPSLongitudeRef: b"E"},
        "zero_den.jpg": {G.GPSLatitude: ((46, 0), (50, 1), (0, 1))},
        "no_alt.jpg": {G.GPSAltitude: (200, 0)},  # an altitude that cannot be parsed: horizontal kept
        "below.jpg": {G.GPSAltitudeRef: 1},
    }
    paths = {}
    for name, change in cases.items():
        exif_photo(tmp_path / name, {**base, **change})
        paths[name] = tmp_path / name
    cv2.imwrite(str(tmp_path / "none.jpg"), texture(1, (64, 48)))
    paths["none.jpg"] = tmp_path / "none.jpg"
    found, lines, problems = read_gps(paths)
    assert sum(map(len, problems.values())) == len(cases) + 1 - len(found) - 1  # the photo without GPS is none
    assert sorted(found) == ["below.jpg", "lower.jpg", "no_alt.jpg", "west.jpg"]
    expected_lat = 46 + 50 / 60 + 33.33 / 3600
    np.testing.assert_allclose(found["west.jpg"], [expected_lat, -92.0, 200.0])
    np.testing.assert_allclose(found["lower.jpg"], found["west.jpg"])
    assert np.isnan(found["no_alt.jpg"][2]) and found["no_alt.jpg"][1] == -92.0
    assert found["below.jpg"][2] == -200.0
    text = "\n".join(lines)
    assert "longitude reference 'X' is not E or W (unknown_ref.jpg)" in text
    assert "longitude 451° is outside ±180° (far_lon.jpg)" in text
    assert "latitude is a fraction with a zero denominator (46/0) (zero_den.jpg)" in text
    assert len(lines) == 3


def test_a_vocabulary_tree_pycolmap_cannot_read_is_one_line(tmp_path, capsys):
    write_photos(tmp_path / "photos", 2)
    (tmp_path / "tree.bin").write_bytes(b"not a vocabulary tree" * 100)
    err = sfm_error(capsys, tmp_path / "photos", "--out", tmp_path / "out", "--matcher", "vocab",
                    "--vocab-tree", tmp_path / "tree.bin")
    assert "is not a vocabulary tree pycolmap" in err and "--matcher sequential" in err
    assert not (tmp_path / "out").exists()


def test_colmap_log_lines_are_followed_and_the_rest_passes_through(tmp_path, capfd):
    """Matching's bar reads COLMAP's log from standard error as it is written (glog buffers its files)."""
    from types import SimpleNamespace

    from momentum_gs.data.sfm.colmap_log import blocks_done, follow

    fake = SimpleNamespace(logging=SimpleNamespace(minloglevel=3, logtostderr=False))
    seen, levels = [], []
    with follow(fake, seen.append, tmp_path / "colmap.log") as stderr:
        levels.append((fake.logging.minloglevel, fake.logging.logtostderr))
        os.write(2, b"I20261124 02:47:10.134572 1405 pairing.cc:938] Processing block [3/8]\n")
        os.write(2, b"a library's own warning\n")
        print("bar", file=stderr, flush=True)
    assert levels == [(0, True)] and (fake.logging.minloglevel, fake.logging.logtostderr) == (3, False)
    assert [blocks_done(line) for line in seen] == [(2, 8)]
    assert "Processing block [3/8]" in (tmp_path / "colmap.log").read_text()
    err = capfd.readouterr().err
    assert "a library's own warning" in err and "bar" in err and "Processing block" not in err
    assert blocks_done("I20261124 feature_matching.cc:218] in 3.6s") is None


def test_matching_blocks_are_sized_for_a_moving_bar():
    from momentum_gs.data.sfm.colmap_steps import match_block_size

    assert match_block_size(153) == 8  # 20 blocks for brighton_beach's exhaustive pairs
    assert match_block_size(5200) == 130  # about 40 blocks for 300 photos' distinct spatial pairs
    assert match_block_size(10**6) == 1225  # never more than COLMAP's own default


def test_the_next_run_folder_is_named_after_the_scene_and_new(tmp_path):
    from momentum_gs.data.sfm.run import run_folder_for

    runs = tmp_path / "runs"
    assert run_folder_for(tmp_path / "harbour", runs) == runs / "harbour"
    assert run_folder_for(tmp_path / "harbour" / "data", runs) == runs / "harbour"  # not runs/data for every site
    (runs / "harbour").mkdir(parents=True)
    (runs / "harbour-2").mkdir()
    assert run_folder_for(tmp_path / "harbour", runs) == runs / "harbour-3"  # never an existing run


def test_a_pair_listed_from_both_sides_is_matched_once():
    """Spatial pairing lists each photo's neighbours, so a pair comes from both of its photos."""
    from types import SimpleNamespace

    from momentum_gs.data.sfm.colmap_steps import image_pairs

    images = [SimpleNamespace(image_id=i, name=f"p{i}.jpg") for i in (1, 2, 3)]
    db = SimpleNamespace(read_all_images=lambda: images, close=lambda: None)
    generator = SimpleNamespace(all_pairs=lambda: [(1, 2), (2, 1), (1, 3), (3, 2), (2, 3)])
    fake = SimpleNamespace(Database=SimpleNamespace(open=lambda path: db), SpatialPairingOptions=SimpleNamespace,
                           SpatialPairGenerator=lambda pairing, database: generator)
    assert image_pairs(fake, "db", "spatial", 3, None) == [("p1.jpg", "p2.jpg"), ("p1.jpg", "p3.jpg"),
                                                           ("p2.jpg", "p3.jpg")]


def test_the_counts_of_photos_add_up_with_the_damaged_ones():
    from momentum_gs.data.sfm.report import summary_lines

    report = {"images_registered": 8, "images_total": 9, "images_left_out": ["far.jpg"], "points": 100,
              "mean_reprojection_error_px": 0.5, "models": [8], "georeferenced": False,
              "photos_not_decoded": {"bad.jpg": "truncated"}}
    assert summary_lines(report)[0] == "registered 8 of 10 photos (2 left out: far.jpg, not registered, bad.jpg, damaged)"
    clean = {**report, "images_registered": 9, "images_left_out": [], "photos_not_decoded": {}}
    assert summary_lines(clean)[0] == "registered 9 of 9 photos"


def test_photos_whose_gps_is_all_unusable_are_not_called_photos_without_gps(capsys):
    from momentum_gs.data.sfm.run import _georeference

    assert _georeference(None, object(), {}, {}, None, "auto", [], {"longitude 451 is outside ±180°": 10}) == \
        (None, None, None)
    said = capsys.readouterr().out
    assert "10 photo(s) carry GPS, none usable (longitude 451 is outside ±180°: 10)" in said
    assert "no GPS in the photos' EXIF" not in said
    _georeference(None, object(), {}, {}, None, "auto", [], {})
    assert "no GPS in the photos' EXIF" in capsys.readouterr().out


def test_the_gps_adjustment_is_on_unless_turned_off(tmp_path, monkeypatch):
    """The adjustment on the GPS is in the run's options by default; `--no-adjust-gps` turns it off."""
    import momentum_gs.commands.sfm as command
    from momentum_gs.errors import UserError

    seen = []

    def fake_run(photos, out, opts, video=None, fps=2.0):
        seen.append(opts.adjust_gps)
        raise UserError("stopped before any work")

    monkeypatch.setattr(command, "run_sfm", fake_run)
    for extra in ([], ["--no-adjust-gps"], ["--adjust-gps"]):
        assert main(["sfm", str(tmp_path), "--out", str(tmp_path / "out"), *extra]) != 0
    assert seen == [True, False, True]
