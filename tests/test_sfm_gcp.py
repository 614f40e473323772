"""Ground control points (`mgs sfm --gcp`): the GCP list read and refused line by line, UTM to WGS84 against
published values, pycolmap and (where installed) pyproj, triangulation of marked points and the similarity
fitted to them, on generated cameras with known answers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from momentum_gs.data.georef import enu_to_wgs84, wgs84_to_enu
from momentum_gs.data.sfm import gcp as G
from momentum_gs.data.utm import utm_to_wgs84, wgs84_to_utm
from momentum_gs.errors import UserError
from tests.helpers.rotations import random_rotation

FOCAL, WIDTH, HEIGHT = 1000.0, 4000, 3000  # pixels


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[3, 4] world_to_cam of a camera at ``centre`` looking at ``target`` (image y roughly down the world z)."""
    z = (target - centre) / np.linalg.norm(target - centre)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0.0, 0.0])
    R = np.stack([x, np.cross(z, x), z])
    return np.c_[R, -R @ centre]


def pixel(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    """[2] pixel of ``X`` (corner origin, principal point at the centre)."""
    c = P[:, :3] @ X + P[:, 3]
    return FOCAL * c[:2] / c[2] + [WIDTH / 2, HEIGHT / 2]


def normalized(px: np.ndarray) -> np.ndarray:
    return (px - [WIDTH / 2, HEIGHT / 2]) / FOCAL


# --- the file -------------------------------------------------------------------------------------------------


def test_write_then_read(tmp_path):
    rows = [(np.array([500100.25, 5200300.5, 412.125]), np.array([10.5, 20.25]), "a.jpg", "gcp1"),
            (np.array([500100.25, 5200300.5, 412.125]), np.array([30.0, 40.0]), "b.jpg", "gcp1"),
            (np.array([500200.0, 5200400.0, np.nan]), np.array([1.0, 2.0]), "a.jpg", None),
            (np.array([500200.0, 5200400.0, np.nan]), np.array([3.0, 4.0]), "c.jpg", None),
            (np.array([500300.0, 5200500.0, 400.0]), np.array([5.0, 6.0]), "c.jpg", None)]
    path = tmp_path / "gcp_list.txt"
    G.write_gcp_list(path, "WGS84 UTM 32N", rows)
    projection, gcps = G.read_gcp_list(path)
    assert projection == "WGS84 UTM 32N"
    assert [g.name for g in gcps] == ["gcp1", "line 4", "line 6"]  # unnamed: grouped by position, named by line
    np.testing.assert_array_equal(gcps[0].geo, rows[0][0])
    assert [(m[0], m[1].tolist()) for m in gcps[0].marks] == [("a.jpg", [10.5, 20.25]), ("b.jpg", [30.0, 40.0])]
    assert np.isnan(gcps[1].geo[2]) and [m[0] for m in gcps[1].marks] == ["a.jpg", "c.jpg"]
    assert all(g.geo.dtype == np.float64 for g in gcps)


def test_read_tolerates_comments_tabs_crlf_bom_and_extras(tmp_path):
    path = tmp_path / "gcp_list.txt"
    path.write_bytes("\ufeff# made by hand\r\n\r\nEPSG:4326\r\n# lon lat h\r\n"
                     "9.1 45.2 120 100 200 IMG_1.JPG  gcpA extra stuff\r\n"
                     "9.1\t45.2\t120\t150\t250\tIMG_2.JPG\tgcpA\r\n"
                     "9.1 45.2 120 100 200 IMG_1.JPG gcpA\r\n".encode())  # an exact repeat is kept once
    projection, gcps = G.read_gcp_list(path)
    assert projection == "EPSG:4326" and len(gcps) == 1 and gcps[0].line == 5
    assert [m[0] for m in gcps[0].marks] == ["IMG_1.JPG", "IMG_2.JPG"]


HEAD = "WGS84 UTM 32N\n"
GOOD = "500100 5200300 400 10 20 a.jpg g1\n"


@pytest.mark.parametrize("text, line, words", [
    ("not a projection\n" + GOOD, 1, "is not a projection"),
    ("# comment\n\nWGS84 UTM 61N\n" + GOOD, 3, "is not a projection"),
    (GOOD + GOOD, 1, "is not a projection"),  # the projection line forgotten
    (HEAD + GOOD + "500100 5200300 400 10 20\n", 3, "5 fields"),
    (HEAD + "\n# c\n500100 5200300 400 10 a.jpg g1\n", 4, "im_y 'a.jpg' is not a number"),  # a field left out
    (HEAD + "500100 5200,300 400 10 20 a.jpg g1\n", 2, "geo_y '5200,300' is not a number"),
    (HEAD + "NaN 5200300 400 10 20 a.jpg g1\n", 2, "geo_x is NaN"),
    (HEAD + "500100 5200300 inf 10 20 a.jpg g1\n", 2, "geo_z is inf"),
    (HEAD + "500100 5200300 400 nan 20 a.jpg g1\n", 2, "im_x is nan"),
    (HEAD + "500100 5200300 400 10 -20 a.jpg g1\n", 2, "im_y -20 is negative"),
    (HEAD + GOOD + "500100 5200301 400 30 40 b.jpg g1\n", 3, "on line 2"),
    (HEAD + GOOD + "500100 5200300 400 11 20 a.jpg g1\n", 3, "marked twice"),
    (HEAD + "5200300 -500100 400 10 20 a.jpg g1\n", 2, "not in a UTM zone"),
    ("EPSG:4326\n45.2 9.1 120 1 2 a.jpg\n9.1 95.2 120 1 2 a.jpg\n", 3, "longitude first"),
    ("EPSG:4326\n9.1 45.2 1e6 1 2 a.jpg\n", 2, "height"),
])
def test_malformed_refused_in_one_line(tmp_path, text, line, words):
    path = tmp_path / "gcp_list.txt"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        G.read_gcp_list(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"line {line}:" in message, message
    assert words in message, message


@pytest.mark.parametrize("text, words", [(None, "does not exist"), ("", "is empty"), ("\n# only\n \n", "is empty"),
                                         ("EPSG:4326\n\n", "no GCP lines")])
def test_missing_or_empty_refused(tmp_path, text, words):
    path = tmp_path / "gcp_list.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=words) as info:
        G.read_gcp_list(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("line, kind", [
    ("EPSG:4326", ("wgs84", 0, False)), ("epsg:4326", ("wgs84", 0, False)),
    ("WGS84 UTM 32N", ("utm", 32, False)), ("WGS84 UTM 7s", ("utm", 7, True)),
    ("EPSG:32632", ("utm", 32, False)), ("EPSG:32760", ("utm", 60, True)),
    ("+proj=utm +zone=10 +datum=WGS84 +units=m +no_defs", ("utm", 10, False)),
    ("+proj=utm +zone=33 +south +ellps=WGS84", ("utm", 33, True)),
    ("+proj=utm +zone=10 +datum=NAD83 +units=m", ("pyproj", 0, False)),
    ("EPSG:2056", ("pyproj", 0, False)), ("EPSG:32661", ("pyproj", 0, False)),
    ("WGS84 UTM 0N", None), ("hello", None), ("1 2 3 4 5 a.jpg", None)])
def test_projection_kinds(line, kind):
    assert G.projection_kind(line) == kind


# --- UTM ------------------------------------------------------------------------------------------------------


def meridian_arc(lat_deg: float) -> float:
    """Metres along the WGS84 meridian from the equator, by Gauss-Legendre quadrature (independent of Krüger)."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    x, w = np.polynomial.legendre.leggauss(64)
    phi = np.radians(lat_deg) * (x + 1) / 2
    return float(np.radians(lat_deg) / 2 * (w * a * (1 - e2) / (1 - e2 * np.sin(phi) ** 2) ** 1.5).sum())


def test_utm_published_values():
    # on the central meridian the northing is 0.9996 times the meridian arc: 4,984,944.378 m to 45°
    np.testing.assert_allclose(wgs84_to_utm([[45.0, 9.0, 0.0]], 32, False)[0], [500000, 4982950.400, 0],
                               atol=1e-3)
    np.testing.assert_allclose(wgs84_to_utm([[-45.0, 15.0, 7.0]], 33, True)[0],
                               [500000, 10_000_000 - 4982950.400, 7], atol=1e-3)
    np.testing.assert_allclose(wgs84_to_utm([[0.0, 3.0, 0.0]], 31, False)[0], [500000, 0, 0], atol=1e-9)
    # the CN Tower, 43°38'33.24"N 79°23'13.7"W: zone 17, 630084 E 4833438 N (the lon's 0.1" is 2 m)
    lla = [[43 + 38 / 60 + 33.24 / 3600, -(79 + 23 / 60 + 13.7 / 3600), 0.0]]
    np.testing.assert_allclose(wgs84_to_utm(lla, 17, False)[0, :2], [630084, 4833438], atol=1.0)
    for lat in (10.0, 37.5, 60.0, 84.0):
        assert wgs84_to_utm([[lat, 9.0, 0.0]], 32, False)[0, 1] == pytest.approx(0.9996 * meridian_arc(lat),
                                                                                   abs=1e-4)


def zone_samples(seed: int = 0, n: int = 3000) -> np.ndarray:
    """[n, 3] latitude°, longitude° (zone 32, 1° past its edges), height m."""
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-80, 84, n), 9 + rng.uniform(-4, 4, n), rng.uniform(-50, 3000, n)]


def test_utm_round_trip_and_pycolmap():
    import pycolmap

    lla = zone_samples()
    gps = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84)
    for south in (False, True):
        part = lla[(lla[:, 0] < 0) == south]
        utm = wgs84_to_utm(part, 32, south)
        back = utm_to_wgs84(utm, 32, south)
        assert np.abs(back[:, :2] - part[:, :2]).max() * 111e3 < 1e-6  # metres: nanometres
        np.testing.assert_array_equal(back[:, 2], part[:, 2])
        theirs, zone = gps.ellipsoid_to_utm(part[np.abs(part[:, 1] - 9) < 3])
        assert zone == 32
        np.testing.assert_allclose(theirs, wgs84_to_utm(part[np.abs(part[:, 1] - 9) < 3], 32, south), atol=1e-5)
        # pycolmap's inverse series is shorter: a few tenths of a millimetre
        assert np.abs(gps.utm_to_ellipsoid(utm, 32, not south) - back).max() * 111e3 < 1e-3


def test_utm_against_pyproj():
    pyproj = pytest.importorskip("pyproj")
    lla = zone_samples(1)
    for south, code in ((False, "EPSG:32632"), (True, "EPSG:32732")):
        part = lla[(lla[:, 0] < 0) == south]
        east, north = pyproj.Transformer.from_crs("EPSG:4326", code, always_xy=True).transform(part[:, 1], part[:, 0])
        np.testing.assert_allclose(wgs84_to_utm(part, 32, south)[:, :2], np.c_[east, north], atol=1e-6)
        back = G._pyproj(code, wgs84_to_utm(part, 32, south))  # pyproj's path of to_wgs84
        np.testing.assert_allclose(back, part, atol=1e-9)
    swiss = G.to_wgs84("EPSG:2056", [[2600000.0, 1200000.0, 500.0]])[0]  # LV95's origin: Bern
    np.testing.assert_allclose(swiss[:2], [46.9510827861, 7.4386324175], atol=1e-6)


def test_to_wgs84_forms_agree():
    lla = np.array([[-33.9, 18.4, 10.0], [-34.1, 18.9, np.nan]])
    utm = wgs84_to_utm(lla, 34, True)
    for projection in ("WGS84 UTM 34S", "EPSG:32734", "+proj=utm +zone=34 +south +datum=WGS84 +units=m +no_defs"):
        out = G.to_wgs84(projection, utm)
        np.testing.assert_allclose(out, lla, atol=1e-10)
        assert out.dtype == np.float64
    np.testing.assert_array_equal(G.to_wgs84("EPSG:4326", lla[:, [1, 0, 2]]), lla)


def test_to_wgs84_without_pyproj_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyproj", None)  # import pyproj raises ImportError
    with pytest.raises(UserError, match=r"pip install 'momentum_gs\[maps\]'.*EPSG:4326") as info:
        G.to_wgs84("EPSG:2056", [[2600000.0, 1200000.0, 500.0]])
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="not a projection"):
        G.to_wgs84("hello", [[0.0, 0.0, 0.0]])
    with pytest.raises(UserError, match="longitude first"):
        G.to_wgs84("EPSG:4326", [[45.0, 120.0, 0.0]])


# --- triangulation and the fit --------------------------------------------------------------------------------


def ring(target: np.ndarray, n: int, distance: float, rng) -> list[np.ndarray]:
    """``n`` cameras ``distance`` from ``target``, above it, spread round it (45-70° elevation)."""
    cams = []
    for k in range(n):
        azimuth = 2 * np.pi * k / n + rng.uniform(-0.3, 0.3)
        elevation = np.radians(rng.uniform(45, 70))
        offset = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                      np.sin(elevation)])
        cams.append(look_at(target + offset, target + rng.normal(0, 3, 3)))  # the point off the image centre
    return cams


def observe(cams, X, rng, noise_px: float = 0.5):
    return [(P, normalized(pixel(P, X) + rng.normal(0, noise_px, 2))) for P in cams]


def bound(cams, X, noise_px: float = 0.5) -> float:
    """The Cramér-Rao bound on the RMS 3-D error (m) of a point seen by ``cams`` with ``noise_px`` pixel noise."""
    info = np.zeros((3, 3))
    for P in cams:
        c = P[:, :3] @ X + P[:, 3]
        J = np.array([[1, 0, -c[0] / c[2]], [0, 1, -c[1] / c[2]]]) / c[2] @ P[:, :3]
        info += J.T @ J
    return float(np.sqrt(np.trace(np.linalg.inv(info)))) * noise_px / FOCAL


@pytest.mark.parametrize("n", [3, 4, 5])
def test_triangulate_within_centimetres(n):
    """0.5 px at 1000 px focal is 4 cm across each ray at 80 m: the point within a few cm, as close as the
    geometry allows (the Cramér-Rao bound)."""
    rng = np.random.default_rng(n)
    errors, bounds = [], []
    for _ in range(60):
        X = rng.uniform(-50, 50, 3)
        cams = ring(X, n, 80.0, rng)
        errors.append(np.linalg.norm(G.triangulate(observe(cams, X, rng)) - X))
        bounds.append(bound(cams, X))
    rms, best = float(np.sqrt(np.mean(np.square(errors)))), float(np.sqrt(np.mean(np.square(bounds))))
    assert rms < 0.06 and abs(rms / best - 1) < 0.2, (rms, best)
    exact = G.triangulate(observe(cams, X, rng, 0.0))
    np.testing.assert_allclose(exact, X, atol=1e-7)


def test_triangulate_refuses():
    rng = np.random.default_rng(0)
    X = np.array([1.0, 2.0, 0.0])
    cams = ring(X, 3, 80.0, rng)
    assert G.triangulate(observe(cams[:1], X, rng)) is None
    assert "1 registered photo," in G.triangulate_with_reason(observe(cams[:1], X, rng))[1]
    near = [look_at(np.array([0.0, 0.0, 80.0]), X), look_at(np.array([0.5, 0.0, 80.0]), X)]  # 0.4° apart
    point, why = G.triangulate_with_reason(observe(near, X, rng, 0.0))
    assert point is None and "nearly parallel" in why
    # marks that put the point behind one camera: it looks away and its mark is the point's mirror image
    away = look_at(np.array([0.0, 0.0, 80.0]), np.array([0.0, 0.0, 200.0]))
    rays = observe(cams, X, rng, 0.0) + [(away, -(away[:2, :3] @ X + away[:2, 3]) / (away[2, :3] @ X + away[2, 3]))]
    point, why = G.triangulate_with_reason(rays)
    assert point is None and "behind" in why


def scene(rng, n_gcps: int = 5):
    """True ENU GCPs [K, 3] and cameras (world_to_cam in ENU), and a model frame: enu = s R x + t."""
    gcps = np.c_[rng.uniform(-150, 150, (n_gcps, 2)), rng.uniform(-5, 15, n_gcps)]
    cams = [look_at(np.array([x, y, 80.0]), np.array([x + 1, y + 40, 0.0]))
            for x in np.linspace(-200, 200, 9) for y in np.linspace(-200, 160, 7)]
    s, R, t = 0.0371, random_rotation(rng), rng.normal(0, 30, 3)
    return gcps, cams, (s, R, t)


def to_model(P: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """world_to_cam in ENU → world_to_cam in the model frame (x = R^T (enu - t) / s)."""
    Rc, tc = P[:, :3], P[:, 3]
    return np.c_[Rc @ R, (Rc @ t + tc) / s]


def visible(P, X) -> bool:
    c = P[:, :3] @ X + P[:, 3]
    u = pixel(P, X)
    return c[2] > 0 and 0 <= u[0] < WIDTH and 0 <= u[1] < HEIGHT


def test_gcp_list_to_fit(tmp_path):
    """UTM GCP list written from a generated survey, read, projected to ENU, triangulated in the model frame
    and fitted: the cameras land within 5 cm of where they are."""
    rng = np.random.default_rng(7)
    enu_true, cams, (s, R, t) = scene(rng)
    origin = np.array([47.37, 8.54, 420.0])
    lla = enu_to_wgs84(enu_true, origin)
    utm = wgs84_to_utm(lla, 32, False)
    rows = [(utm[k], pixel(P, enu_true[k]) + rng.normal(0, 0.5, 2), f"img{i:03d}.jpg", f"gcp{k}")
            for k in range(len(utm)) for i, P in enumerate(cams) if visible(P, enu_true[k])]
    path = tmp_path / "gcp_list.txt"
    G.write_gcp_list(path, "EPSG:32632", rows)
    projection, gcps = G.read_gcp_list(path)
    enu = dict(zip([g.name for g in gcps], wgs84_to_enu(G.to_wgs84(projection, np.stack([g.geo for g in gcps])),
                                                         origin)))
    model_cams = {f"img{i:03d}.jpg": to_model(P, s, R, t) for i, P in enumerate(cams)}
    model = {g.name: G.triangulate([(model_cams[im], normalized(px)) for im, px in g.marks]) for g in gcps}
    fit = G.fit_gcps(model, enu)
    assert fit.used == [f"gcp{k}" for k in range(5)] and not fit.skipped
    centres_true = np.stack([-P[:, :3].T @ P[:, 3] for P in cams])
    centres_model = np.stack([-P[:, :3].T @ P[:, 3] for P in model_cams.values()])
    assert np.linalg.norm(fit.apply(centres_model) - centres_true, axis=1).max() < 0.05
    assert set(fit.residuals) == set(fit.used) and fit.rms() < 0.05


def test_fit_recovers_similarity_and_reports():
    rng = np.random.default_rng(3)
    enu_true, cams, (s, R, t) = scene(rng, 7)
    model_cams = [to_model(P, s, R, t) for P in cams]
    model, enu = {}, {}
    for k, X in enumerate(enu_true):
        seen = [(Pm, normalized(pixel(P, X) + rng.normal(0, 0.5, 2)))
                for P, Pm in zip(cams, model_cams) if visible(P, X)]
        model[f"g{k}"] = G.triangulate(seen)
        enu[f"g{k}"] = X
    enu["g5"] = np.r_[enu["g5"][:2], np.nan]  # no height
    del model["g6"]  # not triangulated
    fit = G.fit_gcps(model, enu, {"g6": "seen in 1 registered photo, 2 or more needed"})
    assert fit.used == ["g0", "g1", "g2", "g3", "g4"]
    assert fit.skipped == {"g5": "no height (NaN) in the GCP list",
                           "g6": "seen in 1 registered photo, 2 or more needed"}
    assert fit.scale == pytest.approx(s, rel=1e-3)
    np.testing.assert_allclose(fit.rotation, R, atol=1e-3)
    centres = np.stack([-P[:, :3].T @ P[:, 3] for P in cams])
    centres_model = np.stack([-P[:, :3].T @ P[:, 3] for P in model_cams])
    assert np.linalg.norm(fit.apply(centres_model) - centres, axis=1).max() < 0.05
    for name in fit.used:
        np.testing.assert_allclose(fit.residuals[name], enu[name] - fit.apply(model[name][None])[0], atol=1e-12)
        assert np.linalg.norm(fit.residuals[name]) < 0.05
    np.testing.assert_allclose(fit.matrix(), np.c_[fit.scale * fit.rotation, fit.translation])


def test_fit_refuses_too_few_or_collinear():
    rng = np.random.default_rng(4)
    R = random_rotation(rng)
    enu = {f"g{k}": np.array([10.0 * k, 5.0 * k, 1.0 * k]) for k in range(4)}  # on a line
    model = {n: R @ p / 3 for n, p in enu.items()}
    with pytest.raises(UserError, match="lie on a line") as info:
        G.fit_gcps(model, enu)
    assert "\n" not in str(info.value)
    enu["g3"] = np.array([0.0, 50.0, np.nan])
    enu["g4"] = np.array([20.0, -30.0, 2.0])
    too_few = r"2 of 5 ground control points .*\(g2: not triangulated; g3: no height"
    with pytest.raises(UserError, match=too_few) as info:
        G.fit_gcps({n: model[n] for n in ("g0", "g1", "g3")}, enu, {"g4": "its rays are nearly parallel"})
    assert "\n" not in str(info.value) and "g4: its rays are nearly parallel" in str(info.value)


def test_marks_on_photos_not_in_the_folder_are_refused_before_any_feature(tmp_path, monkeypatch):
    pytest.importorskip("pycolmap")
    import cv2

    from momentum_gs.data.sfm import run as sfm_run
    from momentum_gs.data.sfm.options import SfmOptions

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.JPG", "c.jpg"):
        cv2.imwrite(str(photos / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    rows = [(np.array([500100.0, 5200300.0, 412.0]), np.array([10.0, 20.0]), image, "gcp1")
            for image in ("a.jpg", "b.jpg", "IMG_9.JPG")]
    G.write_gcp_list(tmp_path / "gcp_list.txt", "WGS84 UTM 32N", rows)

    def no_features(*args, **kwargs):
        raise AssertionError("features were extracted before the GCP list was checked")

    monkeypatch.setattr(sfm_run, "_extract_features", no_features)
    with pytest.raises(UserError) as error:
        sfm_run.run_sfm(photos, tmp_path / "scene", SfmOptions(gcp=str(tmp_path / "gcp_list.txt")))
    said = str(error.value)
    assert "2 of the photos its marks name are not among the 3 photos" in said and "\n" not in said
    assert "IMG_9.JPG" in said and "b.jpg (the folder has b.JPG)" in said


def test_too_few_photos_registered_is_said_before_any_placement_check():
    from momentum_gs.data.sfm.report import problem, registration_problem

    report = {"images_total": 16, "images_registered": 3, "models": [3], "matcher": "exhaustive",
              "images_left_out": [f"p{i:02d}.jpg" for i in range(13)], "gps_fit_failed": True,
              "gps_residual_horizontal_rms_m": 1.9e-14}
    said = registration_problem(report)
    assert said.startswith("only 3 of 16 photos registered") and "GPS" not in said
    assert problem(report, 100.0) == said
    assert registration_problem({**report, "images_registered": 15, "images_left_out": ["p00.jpg"],
                                 "models": [15]}) is None
