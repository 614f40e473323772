"""A GCP list's survey accuracies (OpenDroneMap's free ``extra1 extra2`` columns read as horizontal and vertical
metres): read, written, refused when they cannot be accuracies, and used to weigh each GCP in the adjustment."""

from __future__ import annotations

import numpy as np
import pytest

from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data.sfm.colmap_steps import transform
from momentum_gs.data.sfm.control import adjust_on_control
from momentum_gs.data.sfm.gcp import read_control, read_gcp_list, write_gcp_list
from momentum_gs.errors import UserError
from tests.helpers.colmap_model import SITE_SCALE, anchors_of, reconstruction

HEAD = "WGS84 UTM 32N\n"
LINE = "500100 5200300 400 10 20 {image} g1{extras}\n"


def test_accuracies_are_read_from_two_numbers_after_the_name(tmp_path):
    path = tmp_path / "gcp_list.txt"
    given = " 0.015 0.03"
    path.write_text(HEAD + LINE.format(image="a.jpg", extras=given) + LINE.format(image="b.jpg", extras=given)
                    + "500200 5200400 401 30 40 a.jpg g2 tape measured\n" + "500300 5200500 402 50 60 a.jpg\n")
    _, gcps = read_gcp_list(path)
    assert np.array_equal(gcps[0].accuracy, [0.015, 0.03]) and len(gcps[0].marks) == 2
    assert gcps[1].accuracy is None and gcps[2].accuracy is None  # words are the file's own; none given
    write_gcp_list(tmp_path / "again.txt", "EPSG:4326", [(np.array([9.1, 45.2, 120.0]), np.array([1.0, 2.0]), "a.jpg",
                                                           "g1", np.array([0.01, 0.02]))])
    assert np.array_equal(read_gcp_list(tmp_path / "again.txt")[1][0].accuracy, [0.01, 0.02])
    with pytest.raises(ValueError, match="give the point a name"):
        write_gcp_list(tmp_path / "x.txt", "EPSG:4326", [(np.zeros(3), np.zeros(2), "a.jpg", None, [0.01, 0.02])])


@pytest.mark.parametrize("text, words", [
    (HEAD + LINE.format(image="a.jpg", extras=" 0 0.03"), "line 2: extra1 extra2 (0 0.03) are read as"),
    (HEAD + LINE.format(image="a.jpg", extras=" 0.02 25"), "0.0001 to 10 m"),
    (HEAD + LINE.format(image="a.jpg", extras=" 0.02 nan"), "must be 0.0001 to 10 m"),
    (HEAD + LINE.format(image="a.jpg", extras=" 0.02 0.03") + LINE.format(image="b.jpg", extras=""),
     "line 3: GCP 'g1' has another accuracy (none) than on line 2"),
])
def test_accuracies_that_cannot_be_are_refused_in_one_line(tmp_path, text, words):
    path = tmp_path / "gcp_list.txt"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        read_gcp_list(path)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_gcp_the_file_says_is_loose_pulls_the_model_less(tmp_path):
    """One of five GCPs surveyed 0.5 m off: weighed at the default 2 cm it drags the others' residuals to
    centimetres; its file's accuracy of 5 m (extra1 extra2) leaves them at millimetres."""
    pycolmap = pytest.importorskip("pycolmap")
    origin = np.array([47.0, 8.0, 400.0])
    rows = []
    for k, anchor in enumerate(anchors_of(reconstruction(3)[0])):
        surveyed = anchor.enu / SITE_SCALE + ([0.5, 0.0, 0.0] if k == 0 else 0.0)
        lon_lat_h = enu_to_wgs84(surveyed[None], origin)[0][[1, 0, 2]]
        accuracy = [5.0, 5.0] if k == 0 else None
        rows += [(lon_lat_h, pixel, image, anchor.name, accuracy) for image, pixel in anchor.marks]
    others = {}
    for loose in (False, True):
        path = tmp_path / f"gcp_{loose}.txt"
        write_gcp_list(path, "EPSG:4326", [row if loose else row[:4] for row in rows])
        control = read_control(path)
        assert (control.gcps[0].accuracy is not None) == loose and control.gcps[1].accuracy is None
        model, _ = reconstruction(3)
        transform(pycolmap, model, np.c_[np.eye(3) / SITE_SCALE, np.zeros(3)])  # metres
        figures, lines = adjust_on_control(pycolmap, model, control, origin, {})
        others[loose] = max(np.linalg.norm(r) for n, r in figures["gcp_residuals_m"].items() if n != "g0")
        assert figures["gcp_std_m"]["g0"] == ([5.0, 5.0] if loose else [0.02, 0.03])
        assert ("1 of 5: 5 m horizontally, 5 m vertically; the other 4" if loose else "the default") in lines[-1]
    assert others[False] > 0.02 and others[True] < 0.005


