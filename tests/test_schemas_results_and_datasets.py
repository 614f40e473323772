"""The schemas of eval/results.json, MatrixCity's transforms.json and train.log lines, and the PLY files of
``mgs convert matrixcity`` and the ground-truth mesh opened through io.foreign's checks: a wrong type, a value
out of its range or a path leading out of its folder is one line naming the file and the key."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from momentum_gs.data.convert.matrixcity import _read_frames, read_points
from momentum_gs.data.sfm.options import SfmOptions
from momentum_gs.data.sfm.run import _database
from momentum_gs.errors import DataWarning, UserError
from momentum_gs.eval.table import table_main
from momentum_gs.io.mesh import read_mesh
from momentum_gs.train.progress import _open_log
from tests.helpers.run_folders import make_run


def one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- eval/results.json ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, expected", [
    ("ssim", "0.8", "expected a finite number in [-1, 1]"),  # a string: formatting it raised ValueError
    ("ssim", 1.5, "expected a finite number in [-1, 1]"),
    ("lpips", -0.1, "expected a finite number >= 0"),
    ("num_anchors", 12.5, "expected a whole number >= 0"),
    ("fps", 0, "expected a finite number > 0"),
])
def test_a_wrong_value_in_results_json_is_one_line_naming_the_key(tmp_path, key, value, expected):
    run = make_run(tmp_path, "run", **{key: value})
    with pytest.raises(UserError) as exc:
        table_main([run], tmp_path / "out")
    one_line(exc, str(run / "eval" / "results.json"), f"{key} is {json.dumps(value)}", expected)


# ---- train.log ------------------------------------------------------------------------------------------------
def test_a_resume_drops_a_log_line_that_does_not_fit_its_schema(tmp_path):
    log = tmp_path / "train.log"
    lines = ['{"step": 5, "psnr": 20.5}\n', '{"step": 6, "psnr": "x"}\n', '{"step": 7.5}\n', '{"step": -1}\n',
             '{"step": 8, "psnr": 21}\n']
    log.write_text("".join(lines))
    _open_log(log, start=10).close()  # the three bad lines were kept before: their steps are below 10
    assert log.read_text() == lines[0] + lines[4]


def test_mgs_table_leaves_a_bad_log_line_out_with_one_warning_naming_it(tmp_path):
    run = make_run(tmp_path, "run", steps=50)
    lines = (run / "train.log").read_text().splitlines()
    lines[1] = '{"step": 20, "psnr": "22.1"}'
    lines[2] = '{"step": 30.5, "psnr": 22}'
    (run / "train.log").write_text("\n".join(lines))  # still ends with a line cut short by a kill: not said
    with pytest.warns(DataWarning) as said:
        table_main([run], tmp_path / "out")
    messages = [str(w.message) for w in said if issubclass(w.category, DataWarning)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert re.search(r"train\.log line 2: psnr is \"22\.1\", expected a finite number .*; left out of the training "
                     r"curve \(and 1 more line\)$", messages[0]), messages[0]


# ---- MatrixCity transforms.json -------------------------------------------------------------------------------
def write_transforms(root, frames, **camera):
    """``root/pose/transforms.json`` with ``frames`` (a pose 10 units up by default) and one 32 x 24 image at
    ``root/aerial/block_1/input/0000.png``; returns the file."""
    image = root / "aerial" / "block_1" / "input" / "0000.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(image), np.zeros((24, 32, 3), np.uint8))
    pose = np.eye(4)
    pose[2, 3] = 10
    frames = [{"transform_matrix": pose.tolist(), **frame} for frame in frames]
    path = root / "pose" / "transforms.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"camera_angle_x": 0.9, "w": 32, "h": 24, **camera, "frames": frames}))
    return path


def test_a_valid_transforms_file_is_read(tmp_path):
    path = write_transforms(tmp_path, [{"file_path": "../block_1/0000"}], fl_x=40.0, cx=None, k1=0.0)
    (frame,) = _read_frames([path], [tmp_path / "aerial"], {}, 1.0)
    assert frame.src == tmp_path / "aerial" / "block_1" / "input" / "0000.png" and frame.intrinsics[2] == 40.0


@pytest.mark.parametrize("change, key, expected", [
    ({"fl_x": "40"}, "frames[0].fl_x", "expected a finite number in (0, 1000000000]"),  # was read as 40
    ({"camera_angle_x": 4.0}, "frames[0].camera_angle_x", "expected a finite number in (0, 3.14159"),
    ({"k1": "0.1"}, "frames[0].k1", "a lens distortion coefficient"),  # float("0.1") was taken
    ({"is_fisheye": "no"}, "frames[0].is_fisheye", "expected true or false"),  # "no" was a fisheye
    ({"transform_matrix": [[1, 0, 0, 1e20], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
     "frames[0].transform_matrix[0][3]", "within 1e15"),
    ({"file_path": 7}, "frames[0].file_path", "expected a string"),
])
def test_a_wrong_value_in_a_transforms_file_is_one_line_naming_the_key(tmp_path, change, key, expected):
    path = write_transforms(tmp_path, [{"file_path": "../block_1/0000", **change}])
    with pytest.raises(UserError) as exc:
        _read_frames([path], [tmp_path / "aerial"], {}, 1.0)
    one_line(exc, str(path), f"{key} is ", expected)


def test_a_file_path_leading_out_of_the_image_folders_reads_nothing_there(tmp_path):
    outside = tmp_path / "secret" / "0000.png"
    outside.parent.mkdir()
    cv2.imwrite(str(outside), np.zeros((24, 32, 3), np.uint8))
    path = write_transforms(tmp_path / "data", [{"file_path": str(outside)}])
    with pytest.raises(UserError) as exc:  # an absolute path was read as it stood
        _read_frames([path], [tmp_path / "data" / "aerial"], {}, 1.0)
    one_line(exc, "frames[0].file_path is ", "expected a relative path")
    climbing = "../../../secret/0000.png"  # from aerial/, it named tmp_path/secret/0000.png
    path = write_transforms(tmp_path / "data", [{"file_path": climbing}])
    with pytest.raises(UserError) as exc:
        _read_frames([path], [tmp_path / "data" / "aerial"], {}, 1.0)
    one_line(exc, "1 image(s) listed", "are missing", climbing)


# ---- the PLY files: header counts against the file's size, NaN ------------------------------------------------
def test_a_point_cloud_whose_header_counts_more_than_it_holds_is_one_line(tmp_path):
    path = tmp_path / "points.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\n"
                     b"property float y\nproperty float z\nend_header\n" + bytes(24))
    with pytest.raises(UserError) as exc:
        read_points(path)
    one_line(exc, str(path), "its header announces 1000000000 vertex")


def test_a_point_cloud_with_a_nan_colour_is_one_line_naming_the_field(tmp_path):
    vertex = np.zeros(3, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "f4"), ("green", "f4"), ("blue", "f4")])
    vertex["red"][1] = np.nan  # cast to a colour with a numpy warning before, and no word
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(UserError) as exc:
        read_points(tmp_path / "points.ply")
    one_line(exc, "red", "NaN")


def test_a_mesh_whose_header_counts_more_faces_than_it_holds_is_one_line(tmp_path):
    path = tmp_path / "mesh.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                     b"property float z\nelement face 2000000000\nproperty list uchar int vertex_indices\n"
                     b"end_header\n" + bytes(36) + b"\x03" + bytes(12))
    with pytest.raises(UserError) as exc:
        read_mesh(path)
    one_line(exc, str(path), "2000000000 face")


# ---- mgs sfm's feature stamp ----------------------------------------------------------------------------------
def test_a_feature_stamp_nested_too_deeply_counts_as_changed(tmp_path):
    (tmp_path / "features.json").write_text("[" * 100_000)  # a RecursionError escaped before
    (tmp_path / "database.db").write_bytes(b"old")
    _database(tmp_path, ["a.jpg"], SfmOptions())
    assert not (tmp_path / "database.db").exists()
    assert json.loads((tmp_path / "features.json").read_text())["photos"] == ["a.jpg"]
