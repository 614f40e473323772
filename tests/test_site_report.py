"""``SITE/report.html``: the check points' errors and accuracy, the GCPs' residuals said to be no check, and each
point drawn on the orthophoto at its surveyed place (UTM per point) with its error as an arrow."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np

from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data.sfm.control import accuracy
from momentum_gs.data.utm import wgs84_to_utm
from momentum_gs.maps.files import SPREAD_PREVIEW, SUPPORT_PREVIEW, spread_picture
from momentum_gs.maps.ortho import NODATA
from momentum_gs.site.folder import Site
from momentum_gs.site.report import ARROW_SHARE, write_report

ORIGIN = np.array([47.3769, 8.5417, 420.0])  # zone 32N


def site_with(tmp_path, check: bool = True) -> tuple[Site, dict, dict]:
    """A site whose scene was placed on GCPs and measured on check points, with a 400 x 300 px map of 0.25 m."""
    site = Site(tmp_path / "site")
    site.scene.mkdir(parents=True)
    site.maps.mkdir(parents=True)
    rng = np.random.default_rng(0)
    spots = {f"check{k}": np.array([x, y, 0.0]) for k, (x, y) in enumerate([(-20, -10), (15, 5), (0, 20)])}
    lla = {n: enu_to_wgs84(p[None], ORIGIN)[0].tolist() for n, p in spots.items()}
    errors = {n: rng.normal(0, 0.05, 3).round(4).tolist() for n in spots}
    figures = {"points": errors, "skipped": {}, "survey_lla": lla, **accuracy(np.array(list(errors.values())))}
    gcp_lla = {"gcp0": enu_to_wgs84(np.array([[10.0, -15.0, 0.0]]), ORIGIN)[0].tolist()}
    adjustment = {"gcp_residuals_m": {"gcp0": [0.01, -0.02, None]}, "survey_lla": gcp_lla, "camera_moved_rms_m": 0.4,
                  "tie_rms_px_before": 0.8, "tie_rms_px_after": 0.7, "gps_std_m": 12.0}
    geo = {"adjustment": adjustment, **({"check_points": figures} if check else {}), "photos_taken_out": {}}
    sfm = {"images_registered": 15, "images_total": 16, "georeferenced": True, "fit": "gcp", "georeference": geo}
    (site.scene / "sfm.json").write_text(json.dumps(sfm))
    centre = wgs84_to_utm(ORIGIN[None], 32, False)[0]
    maps = {"epsg": 32632, "top_left": [centre[0] - 50.0, centre[1] + 37.5], "gsd": 0.25, "width": 400,
            "height": 300, "covered": 0.9, "crs": "EPSG:32632"}
    (site.maps / "maps.json").write_text(json.dumps(maps))
    cv2.imwrite(str(site.maps / "orthophoto.png"), np.zeros((300, 400, 4), np.uint8))
    return site, figures, maps


def test_the_report_gives_each_check_point_and_draws_it_where_it_was_surveyed(tmp_path):
    site, figures, maps = site_with(tmp_path)
    page = write_report(site).read_text()
    assert "no fit used" in page and "not an independent check" in page
    assert f"CE90 {figures['ce90_m']:.3f} m" in page and f"LE90 {figures['le90_m']:.3f} m" in page
    for name, error in figures["points"].items():
        assert f"<td>{name}</td><td>{error[0]:+.3f}</td><td>{error[1]:+.3f}</td><td>{error[2]:+.3f}</td>" in page
    lines = re.findall(r'<line x1="([-\d.]+)" y1="([-\d.]+)" x2="([-\d.]+)" y2="([-\d.]+)" stroke="([^"]+)"', page)
    assert len(lines) == 4  # three check points and one GCP
    longest = max(np.hypot(*e[:2]) for e in figures["points"].values())
    for (name, lla), (x1, y1, x2, y2, colour) in zip(figures["survey_lla"].items(), lines):
        e, n = wgs84_to_utm(np.array([lla[:2] + [0.0]]), 32, False)[0, :2]
        assert np.allclose([float(x1), float(y1)], [(e - maps["top_left"][0]) / 0.25, (maps["top_left"][1] - n) / 0.25],
                           atol=0.1)
        error = figures["points"][name]
        scale = ARROW_SHARE * 400 / longest  # grid pixels a metre
        assert np.allclose([float(x2) - float(x1), float(y1) - float(y2)], np.array(error[:2]) * scale, atol=0.1)
        assert colour == "#ff2d55"


def test_a_site_without_check_points_says_how_to_give_them(tmp_path):
    site, _, _ = site_with(tmp_path, check=False)
    page = write_report(site).read_text()
    assert "No check points: give them with <code>--check FILE</code>" in page
    assert page.count("<line ") == 1  # the GCP's residual alone


def test_the_report_shows_the_surface_models_spread_measured_against_the_photos(tmp_path):
    site, _, maps = site_with(tmp_path)
    assert "how far it may be off" not in write_report(site).read_text()  # maps made without the spread
    maps.update(spread_median=0.42, spread_within_pixel=0.31, spread_measured=0.53)
    (site.maps / "maps.json").write_text(json.dumps(maps))
    spread = np.full((300, 400), NODATA, np.float32)
    spread[:, 200:] = np.linspace(0, 10 * maps["gsd"], 200, dtype=np.float32)
    cv2.imwrite(str(site.maps / SPREAD_PREVIEW), spread_picture(spread, maps["gsd"])[..., [2, 1, 0, 3]])
    page = write_report(site).read_text()
    assert "0.42 m from it" in page and "31 % of them within a pixel" in page and "53 %" in page
    assert "not the ground" in page and f'<img src="maps/{SPREAD_PREVIEW}">' in page
    picture = cv2.imread(str(site.maps / SPREAD_PREVIEW), cv2.IMREAD_UNCHANGED)
    assert (picture[:, :200, 3] == 0).all() and (picture[:, 200:, 3] == 255).all()  # no spread: see-through
    assert picture[0, 200, 0] > picture[0, 200, 2] and picture[0, -1, 2] > picture[0, -1, 0]  # blue, then red
    assert "within 5 pixels" not in page and "the heights to measure on" not in page  # maps made before them
    maps.update(spread_within_vouched=0.87)
    (site.maps / "maps.json").write_text(json.dumps(maps))
    assert "87 % within 5 pixels;" in write_report(site).read_text()
    maps.update(support_vouched=0.964, support_needed=4)
    (site.maps / "maps.json").write_text(json.dumps(maps))
    page = write_report(site).read_text()
    assert "96 % of its heights are seen there by at least 4 photos" in page and SUPPORT_PREVIEW not in page
    cv2.imwrite(str(site.maps / SUPPORT_PREVIEW), np.zeros((4, 4, 4), np.uint8))
    page = write_report(site).read_text()
    assert f'<img src="maps/{SUPPORT_PREVIEW}">' in page and "red: fewer than 4 photos see them there" in page
    assert page.index(SPREAD_PREVIEW) < page.index("where to measure on it") < page.index(SUPPORT_PREVIEW)
    maps.update(support_needed="<b>4</b>")  # not a number: nothing of the file's text
    (site.maps / "maps.json").write_text(json.dumps(maps))
    assert "<b>4</b>" not in write_report(site).read_text()
    assert "took it (mgs ortho --despike)" not in page  # maps made before the despike
    maps.update(despike_window=13, dsm_despiked=0.0649)
    (site.maps / "maps.json").write_text(json.dumps(maps))
    page = write_report(site).read_text()
    assert "6.5 % of its heights stood more than 3 pixels off the median of the 13 × 13" in page
    maps.update(despike_window="<i>9</i>")  # not a number: the despike's own window, and nothing of the file's text
    (site.maps / "maps.json").write_text(json.dumps(maps))
    page = write_report(site).read_text()
    assert "median of the 13 × 13 pixels around them and took it" in page and "<i>9</i>" not in page
    maps.update(despike_window=13)
    assert "--no-guide" not in page  # maps made before the guided median
    maps.update(dsm_guided=0.399)
    (site.maps / "maps.json").write_text(json.dumps(maps))
    assert "39.9 % then took the median of the 7 × 7 pixels" in write_report(site).read_text()
    maps.update(guide_window=9)  # the window maps.json records
    (site.maps / "maps.json").write_text(json.dumps(maps))
    assert "of the 9 × 9 pixels around them, weighted" in write_report(site).read_text()
    maps.update(guide_window="<b>9</b>")  # not a number: the guide's own window, and nothing of the file's text
    (site.maps / "maps.json").write_text(json.dumps(maps))
    page = write_report(site).read_text()
    assert "of the 7 × 7 pixels around them, weighted" in page and "<b>9</b>" not in page
