"""Fly-through videos: camera paths (training, orbit, nerfstudio JSON) and `mgs render`."""

from __future__ import annotations

import json
import math
import sys

import cv2
import numpy as np
import pytest
import torch

from momentum_gs.cli import main
from momentum_gs.data.camera import Camera
from momentum_gs.data.colmap.model import rotmat_to_qvec
from momentum_gs.eval.camera_path import (
    interpolate_keys,
    look_at,
    orbit_path,
    poses_of,
    rotation_angle,
    slerp,
    training_path,
    vertical_fov,
)
from momentum_gs.eval.camera_path_json import read_path_json, write_path_json
from momentum_gs.trained import load_run
from tests.helpers.tiny_training import train_tiny


def _rot(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _camera(cam_to_world: np.ndarray, fov_y: float = 50.0, width: int = 32, height: int = 24) -> Camera:
    f = 0.5 * height / math.tan(math.radians(fov_y) / 2)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    return Camera("key", width, height, K, torch.from_numpy(np.linalg.inv(cam_to_world)).float())


def _flight() -> list[Camera]:
    """Five oblique drone cameras at 10 m with uneven spacing (one long leg) and turning headings."""
    xs, yaws, fovs = [0.0, 1.0, 2.0, 8.0, 9.0], [0.0, 30.0, 70.0, 100.0, 160.0], [50.0, 50.0, 40.0, 40.0, 45.0]
    cameras = []
    for x, yaw, fov in zip(xs, yaws, fovs):
        pose = np.eye(4)
        pose[:3, :3] = _rot("z", yaw) @ _rot("x", -120.0)  # looking 30 degrees below the horizon
        pose[:3, 3] = [x, 0.3 * x, 10.0]
        cameras.append(_camera(pose, fov))
    return cameras


def test_the_training_path_meets_each_camera_at_its_key_frame_and_moves_smoothly():
    cameras = _flight()
    path = training_path(cameras, 32, 24)
    assert path.num_frames == 41  # 10 frames per step between the 5 cameras
    keys = poses_of(cameras)
    poses, fovs, knots = interpolate_keys(keys, np.array([vertical_fov(c) for c in cameras]), 41)
    assert knots[0] == 0 and knots[-1] == 40 and np.all(np.diff(knots) >= 1)
    np.testing.assert_allclose(poses[knots], keys, atol=1e-6)
    np.testing.assert_allclose(fovs[knots], [50, 50, 40, 40, 45], atol=1e-4)
    rendered = path.cameras()  # the Camera objects rendered: each key camera's own pose and focal length
    for k, camera in zip(knots, cameras):
        torch.testing.assert_close(rendered[k].world_to_cam, camera.world_to_cam, atol=1e-5, rtol=0)
        torch.testing.assert_close(rendered[k].K[1, 1], camera.K[1, 1], atol=1e-3, rtol=0)
    # no jumps: frames are shared by how far each leg moves and turns, so the speed changes gently (with 10
    # frames per leg the long 6 m leg is crossed at 3.2x the mean step, and the step changes by up to 1.9x)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    ratios = steps[1:] / steps[:-1]
    assert steps.max() < 2.5 * steps.mean() and ratios.min() > 0.7 and ratios.max() < 1.4, steps
    turns = np.degrees([rotation_angle(a[:3, :3], b[:3, :3]) for a, b in zip(poses[:-1], poses[1:])])
    assert turns.max() < 8, turns
    # and the position is C1: the velocity changes little from one frame to the next, keys included
    assert np.abs(np.diff(np.diff(poses[:, :3, 3], axis=0), axis=0)).max() < 0.5 * steps.mean()
    rotations = poses[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-9)


def test_slerp_stays_unit_and_takes_the_short_way():
    # Rx(160) and Rx(-160) are 40 degrees apart through 180; their (w >= 0) quaternions have a negative dot
    q0, q1 = rotmat_to_qvec(_rot("x", 160)), rotmat_to_qvec(_rot("x", -160))
    assert q0 @ q1 < 0
    for t in np.linspace(0, 1, 11):
        assert abs(np.linalg.norm(slerp(q0, q1, t)) - 1) < 1e-12
    keys = np.tile(np.eye(4), (2, 1, 1))
    keys[0, :3, :3], keys[1, :3, :3] = _rot("x", 160), _rot("x", -160)
    poses, _, _ = interpolate_keys(keys, np.array([50.0, 50.0]), 5)
    np.testing.assert_allclose(poses[2, :3, :3], _rot("x", 180), atol=1e-9)  # halfway is 180, not 0
    turns = [rotation_angle(a[:3, :3], b[:3, :3]) for a, b in zip(poses[:-1], poses[1:])]
    np.testing.assert_allclose(np.degrees(turns), 10.0, atol=1e-6)
    near = rotmat_to_qvec(_rot("z", 1e-3))  # nearly equal quaternions take the linear branch, still unit
    assert abs(np.linalg.norm(slerp(rotmat_to_qvec(np.eye(3)), near, 0.3)) - 1) < 1e-12


def test_the_orbit_keeps_its_altitude_and_distance_and_looks_at_the_centre():
    tilt = _rot("x", 25) @ _rot("z", 40)  # the scene's up is not a world axis
    up = tilt @ [0, 0, 1]
    centre = tilt @ [3.0, -2.0, 0.5]
    cameras = []
    for k in range(8):  # a ring of cameras at 10 above the ground, 20 out, looking at the centre
        a = 2 * math.pi * k / 8 + 0.3
        eye = tilt @ [3 + 20 * math.cos(a), -2 + 20 * math.sin(a), 10.0]
        cameras.append(_camera(look_at(eye, centre, up), 45.0))
    path = orbit_path(cameras, centre, 32, 24, frames=36)
    eyes = path.cam_to_world[:, :3, 3]
    np.testing.assert_allclose(eyes @ up, 10.0, atol=1e-9)  # the cameras' altitude along up
    horizontal = (eyes - centre) - np.outer((eyes - centre) @ up, up)
    np.testing.assert_allclose(np.linalg.norm(horizontal, axis=1), 20.0, atol=1e-9)
    towards = (centre - eyes) / np.linalg.norm(centre - eyes, axis=1, keepdims=True)
    np.testing.assert_allclose(np.einsum("fi,fi->f", path.cam_to_world[:, :3, 2], towards), 1.0, atol=1e-12)
    assert np.all(path.cam_to_world[:, :3, 1] @ up < 0)  # image y (down) points down: upright
    bearings = np.unwrap(np.arctan2(horizontal @ np.cross(up, horizontal[0]), horizontal @ horizontal[0]))
    np.testing.assert_allclose(np.diff(bearings), 2 * np.pi / 36, atol=1e-9)  # one even turn
    np.testing.assert_allclose(path.fov_y, 45.0, atol=1e-4)


def test_a_generated_path_round_trips_through_the_json_file(tmp_path):
    path = training_path(_flight(), 48, 36, frames=17, fps=24.0)
    file = write_path_json(path, tmp_path / "path.json")
    data = json.loads(file.read_text())
    assert (data["render_width"], data["render_height"], data["fps"]) == (48, 36, 24.0)
    assert data["seconds"] == pytest.approx(17 / 24) and len(data["camera_path"]) == 17
    assert len(data["camera_path"][0]["camera_to_world"]) == 16 and data["camera_path"][0]["aspect"] == 48 / 36
    back = read_path_json(file)
    np.testing.assert_allclose(back.cam_to_world, path.cam_to_world, atol=1e-6, rtol=0)
    np.testing.assert_allclose(back.fov_y, path.fov_y, atol=1e-6, rtol=0)
    assert (back.width, back.height, back.fps) == (48, 36, 24.0)


def test_a_hand_written_nerfstudio_camera_is_read_in_the_opengl_convention(tmp_path):
    # OpenGL camera at (0, 0, 5): identity rotation, so it looks down -z at the origin, with +y up in the image
    flat = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 5, 0, 0, 0, 1]
    nested = [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]]
    file = tmp_path / "hand.json"
    file.write_text(json.dumps({"render_width": 120, "render_height": 100, "seconds": 0.5,
                                "camera_path": [{"camera_to_world": flat, "fov": 90, "aspect": 1.2},
                                                {"camera_to_world": nested, "fov": 60, "aspect": 1.2}]}))
    path = read_path_json(file)
    assert path.fps == 4.0  # 2 frames in 0.5 s
    camera = path.cameras()[0]
    torch.testing.assert_close(camera.center, torch.tensor([0.0, 0.0, 5.0]))
    torch.testing.assert_close(camera.K, torch.tensor([[50.0, 0, 60], [0, 50, 50], [0, 0, 1]]))  # fov 90: f = H/2

    def pixel(point):
        x = camera.world_to_cam @ torch.tensor([*point, 1.0])
        assert x[2] > 0  # in front of the camera
        uv = camera.K @ (x[:3] / x[2])
        return uv[:2].tolist()

    assert pixel((0, 0, 0)) == pytest.approx([60, 50])  # the origin at the image centre
    assert pixel((1, 0, 0)) == pytest.approx([70, 50])  # +x to the right (50 * 1 / 5 pixels)
    assert pixel((0, 1, 0)) == pytest.approx([60, 40])  # +y up, so above the centre (image y points down)
    torch.testing.assert_close(path.cameras()[1].center, torch.tensor([1.0, 0.0, 5.0]))


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("render") / "run")


def _frames(video) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.mark.slow
def test_render_writes_a_video_and_a_path_that_renders_the_same_again(trained, tmp_path, capsys):
    out = tmp_path / "fly.mp4"
    assert main(["render", str(trained), "--path", "training", "--out", str(out), "--frames", "6",
                 "--size", "32x24", "--device", "cpu"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("rendered 6 frames at 32x24 (0.2 s of video at 30 fps")
    frames = _frames(out)
    assert len(frames) == 6 and frames[0].shape == (24, 32, 3)
    assert all(frame.std() > 10 for frame in frames)  # a city, not a blank frame
    assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 10  # it moves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fly.json", "fly.mp4"]  # no temporary file left
    cfg, model, _ = load_run(trained, torch.device("cpu"))
    with torch.no_grad():  # the first frame is the model's render of the written path's first camera, in RGB
        expected = model.render(read_path_json(tmp_path / "fly.json").cameras()[0], cfg.render).output.image
    expected = expected.clamp(0, 1).mul(255).numpy()
    assert np.abs(frames[0][..., ::-1] - expected).mean() < 8  # measured 3.3 (MPEG-4 at 32x24); as BGR: 22.5
    again = tmp_path / "again.mp4"
    assert main(["render", str(trained), "--path", str(tmp_path / "fly.json"), "--out", str(again)]) == 0
    second = _frames(again)
    assert len(second) == 6 and second[0].shape == (24, 32, 3)
    assert max(np.abs(a.astype(float) - b.astype(float)).mean() for a, b in zip(frames, second)) < 2
    assert not (tmp_path / "again.json").exists()  # a path read from a file is not written back
    orbit = tmp_path / "orbit.mp4"
    assert main(["render", str(trained), "--path", "orbit", "--out", str(orbit), "--frames", "4", "--size",
                 "32x24", "--fps", "12"]) == 0
    assert len(_frames(orbit)) == 4 and cv2.VideoCapture(str(orbit)).get(cv2.CAP_PROP_FPS) == 12


@pytest.mark.slow
def test_a_render_that_fails_midway_leaves_no_file(trained, tmp_path, monkeypatch):
    from momentum_gs.eval import video

    def failing(model, path, render_cfg, timing):
        yield np.zeros((path.height, path.width, 3), np.uint8)
        raise RuntimeError("out of memory")

    monkeypatch.setattr(video, "render_frames", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        video.render_video(trained, "orbit", tmp_path / "fly.mp4", frames=4, size="32x24")
    assert list(tmp_path.iterdir()) == []  # neither the video, its temporary file, nor the path JSON
    # A killed render (its process gone) leaves its half a video hidden beside; the next render of it removes it,
    # and only it: another video's leftover stays for that video's next render.
    dead = 2 ** 22 + 12345  # above the kernel's largest process id
    (tmp_path / f".fly.mp4.tmp{dead}.mp4").write_bytes(b"half")
    (tmp_path / f".other.mp4.tmp{dead}.mp4").write_bytes(b"half")
    monkeypatch.undo()
    video.render_video(trained, "orbit", tmp_path / "fly.mp4", frames=2, size="32x24")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.mp4.tmp{dead}.mp4", "fly.json", "fly.mp4"]


def _pose(sx: float, sy: float, sz: float) -> list[float]:
    """A camera_to_world at (0, 0, 5) whose 3x3 part is diag(sx, sy, sz)."""
    return [sx, 0, 0, 0, 0, sy, 0, 0, 0, 0, sz, 5, 0, 0, 0, 1]


def _camera_file(folder, name: str, **change) -> str:
    camera = {"camera_to_world": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 5, 0, 0, 0, 1], "fov": 50}
    data = {"render_width": 32, "render_height": 24, "fps": 10, "camera_path": [camera, dict(camera, **change)]}
    (folder / name).write_text(json.dumps(data))
    return str(folder / name)


@pytest.mark.slow
def test_bad_input_exits_2_with_one_line_and_writes_nothing(trained, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "broken.json").write_text("{not json")
    (inputs / "deep.json").write_text("[" * 200_000 + "]" * 200_000)  # RecursionError in the json module
    (inputs / "empty_run").mkdir()
    (inputs / "untrained_run").mkdir()
    (inputs / "untrained_run" / "config.yaml").write_text((trained / "config.yaml").read_text())
    out = tmp_path / "out" / "fly.mp4"
    run = str(trained)
    cases = {
        "not a run": [str(inputs / "empty_run"), "--path", "training"],
        "no trained model": [str(inputs / "untrained_run"), "--path", "orbit"],
        "unknown path": [run, "--path", "spiral"],
        "missing file": [run, "--path", str(inputs / "missing.json")],
        "invalid JSON": [run, "--path", str(inputs / "broken.json")],
        "nested deeply": [run, "--path", str(inputs / "deep.json")],
        "non-finite pose": [run, "--path", _camera_file(inputs, "nan.json", camera_to_world=[float("nan")] * 16)],
        "not a rotation": [run, "--path", _camera_file(inputs, "scaled.json", camera_to_world=_pose(2, 2, 2))],
        "a mirror": [run, "--path", _camera_file(inputs, "mirror.json", camera_to_world=_pose(-1, 1, 1))],
        "fov 180": [run, "--path", _camera_file(inputs, "fov180.json", fov=180)],
        "fov 0": [run, "--path", _camera_file(inputs, "fov0.json", fov=0)],
        "odd size": [run, "--path", "training", "--size", "33x24"],
        "size not WxH": [run, "--path", "training", "--size", "32by24"],
        "one frame": [run, "--path", "orbit", "--frames", "1"],
        "a hundred million frames": [run, "--path", "orbit", "--frames", "100000000"],  # refused before building
        "not an mp4": [run, "--path", "orbit", "--out", str(tmp_path / "out" / "fly.avi")],
    }
    for name, args in cases.items():
        if "--out" not in args:
            args = [*args, "--out", str(out)]
        assert main(["render", *args]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), name
    assert "is not a rotation" in _error(capsys, run, cases["not a rotation"][2], out)
    assert "camera_path[1].fov is 180, expected a finite number in (0, 180) (the vertical field of view" in \
        _error(capsys, run, cases["fov 180"][2], out)


def _error(capsys, run: str, path: str, out) -> str:
    assert main(["render", run, "--path", path, "--out", str(out)]) == 2
    return capsys.readouterr().err


def test_a_long_loop_says_its_time_after_its_first_items(capsys):
    """The estimate is measured on the first items and names the option that shortens the loop."""
    import time

    from momentum_gs.estimate import estimate_line, sized

    slow = list(sized(range(40), 40, "render", "frame", "--frames or --size", file=sys.stderr))
    assert slow == list(range(40))
    quick = capsys.readouterr().err
    assert "about" not in quick  # 40 instant frames: the bar alone

    def frames():
        for i in range(6):
            time.sleep(0.2)
            yield i

    assert list(sized(frames(), 300, "render", "frame", "--frames or --size", file=sys.stderr)) == list(range(6))
    line = next(line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "a frame here" in line)
    assert line.startswith("render: 0.2") and line.endswith("min for 300 frames (--frames or --size to shorten)")
    # a bar turned off (show_progress=False) says nothing, however long the loop
    assert list(sized(frames(), 300, "render", "frame", "--frames", disable=True, file=sys.stderr)) == list(range(6))
    assert "a frame here" not in capsys.readouterr().err
    assert estimate_line("mesh", 2.0, 4, "block", "a larger --voxel") == \
        "mesh: 2.00 s a block here: about 8 s for 4 blocks (a larger --voxel to shorten)"
