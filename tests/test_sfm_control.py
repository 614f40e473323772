"""`mgs sfm --gcp --check` on a generated survey: photos rendered at known poses with a 15 m GPS, ground control
marked to half a pixel, and check points no fit sees, measured against the truth."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from momentum_gs.cli import main
from tests.helpers.control_survey import CHECK_SPOTS, GCP_SPOTS, GSD_M, flight, write_control, write_photos

pytestmark = pytest.mark.heavy  # COLMAP on photos: make test-heavy

pytest.importorskip("pycolmap")
pytest.importorskip("piexif")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """The photos with a 15 m GPS, GCPs with heights, the same GCPs with every height 0, and check points."""
    root = tmp_path_factory.mktemp("control")
    poses = flight()
    write_photos(root / "photos", poses, gps_noise_m=15.0)
    write_control(root / "gcp_list.txt", poses, GCP_SPOTS, "gcp", mark_px=0.5)
    write_control(root / "flat.txt", poses, GCP_SPOTS, "gcp", mark_px=0.5, height=False)
    write_control(root / "check.txt", poses, CHECK_SPOTS, "check", mark_px=0.5, seed=1)
    return root


def sfm(survey, out: str, *options: str) -> dict:
    # one thread: COLMAP is then deterministic
    assert main(["sfm", str(survey / "photos"), "--out", str(survey / out), "--threads", "1",
                 "--check", str(survey / "check.txt"), *options]) == 0
    return json.loads((survey / out / "sfm.json").read_text())["check_points"]


@pytest.mark.slow
def test_gcps_win_over_a_15_m_gps_and_check_points_measure_it(survey, capsys):
    alone = sfm(survey, "gps")
    assert alone["count"] == len(CHECK_SPOTS) and alone["rmse_horizontal_m"] > 2.0  # the GPS alone: metres off
    shutil.copy(survey / "gcp_list.txt", survey / "photos" / "gcp_list.txt")  # beside the photos: used, and said
    try:
        capsys.readouterr()
        check = sfm(survey, "gcp")
    finally:
        (survey / "photos" / "gcp_list.txt").unlink()
    printed = capsys.readouterr().out
    assert "gcp_list.txt beside the photos is used" in printed
    assert "adjusted on 5 GCPs and 15 GPS fixes" in printed and "not an independent check" in printed
    assert f"accuracy on {len(CHECK_SPOTS)} check points: horizontal RMSE" in printed
    errors = np.array(list(check["points"].values()), np.float64)
    assert len(errors) == len(CHECK_SPOTS) and check["vertical_count"] == len(CHECK_SPOTS)
    assert np.hypot(errors[:, 0], errors[:, 1]).max() < 2 * GSD_M and np.abs(errors[:, 2]).max() < 3 * GSD_M
    assert check["ce90_m"] < 2 * GSD_M and check["le90_m"] < 3 * GSD_M


@pytest.mark.slow
def test_gcps_with_every_height_0_place_horizontally_and_say_so(survey, capsys):
    check = sfm(survey, "flat", "--gcp", str(survey / "flat.txt"))
    printed = capsys.readouterr().out
    assert "every height 0 m: taken as unknown, so they are used horizontally only" in printed
    errors = np.array(list(check["points"].values()), np.float64)
    assert np.hypot(errors[:, 0], errors[:, 1]).max() < 2 * GSD_M  # the height is the GPS's: metres off, and said
    assert check["le90_m"] > 1.0 and check["vertical_count"] == len(CHECK_SPOTS)


@pytest.mark.slow
def test_gcps_without_heights_place_a_survey_the_gps_cannot(tmp_path, capsys):
    """Seed 1's 15 m GPS does not fit the model (22.6 m RMS over an 84 m capture: refused alone); GCPs whose
    heights are all 0 place it horizontally, and the check points measure it."""
    poses = flight()
    write_photos(tmp_path / "photos", poses, gps_noise_m=15.0, seed=1)
    write_control(tmp_path / "flat.txt", poses, GCP_SPOTS, "gcp", mark_px=0.5, seed=1, height=False)
    write_control(tmp_path / "check.txt", poses, CHECK_SPOTS, "check", mark_px=0.5, seed=101)
    assert main(["sfm", str(tmp_path / "photos"), "--out", str(tmp_path / "gps"), "--threads", "1"]) == 2
    check = sfm(tmp_path, "flat", "--gcp", str(tmp_path / "flat.txt"))
    printed = capsys.readouterr().out
    assert "placing it on the ground control points, horizontally" in printed and "give no heights" in printed
    errors = np.array(list(check["points"].values()), np.float64)
    assert np.hypot(errors[:, 0], errors[:, 1]).max() < 2 * GSD_M


@pytest.mark.slow
def test_photos_without_gps_are_placed_on_gcps(tmp_path, capsys):
    """25 views with no GPS at all (a 5 x 5 grid: the 4 x 4 one does not connect without GPS priors) and GCPs with
    heights: placed on the GCPs, the check points within 2 and 3 GSD."""
    poses = flight(5)
    write_photos(tmp_path / "photos", poses, gps_noise_m=None)
    write_control(tmp_path / "gcp.txt", poses, GCP_SPOTS, "gcp", mark_px=0.5)
    write_control(tmp_path / "check.txt", poses, CHECK_SPOTS, "check", mark_px=0.5, seed=1)
    check = sfm(tmp_path, "scene", "--gcp", str(tmp_path / "gcp.txt"))
    printed = capsys.readouterr().out
    assert "adjusted on 5 GCPs in" in printed and "GPS fixes" not in printed.split("adjusted on")[1].split("\n")[0]
    errors = np.array(list(check["points"].values()), np.float64)
    assert np.hypot(errors[:, 0], errors[:, 1]).max() < 2 * GSD_M and np.abs(errors[:, 2]).max() < 3 * GSD_M
