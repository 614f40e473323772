"""``mgs view`` and ``mgs train --viewer``: the browser's camera as ours, frames per block and render mode, the
cells, the refusals, and what headless Chromium shows of the viewer (against our own render, a block switched off,
and a run watched while it trains, which ends with the same checkpoint as without the viewer)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.cli import main
from momentum_gs.errors import UserError
from momentum_gs.data.colmap.model import qvec_to_rotmat, rotmat_to_qvec
from momentum_gs.model.gaussian_scene import render_view
from momentum_gs.view.frames import camera_pose, cell_boxes, render_frame, viewer_camera
from tests.helpers.browser import CHROMIUM, Browser, free_port
from tests.helpers.tiny_training import TINY_OVERRIDES, train_tiny

HAVE_VISER = all(importlib.util.find_spec(name) for name in ("viser", "websocket"))
needs_browser = pytest.mark.skipif(CHROMIUM is None or not HAVE_VISER,
                                   reason="needs Chromium (apt-get install chromium) and viser + websocket-client "
                                          "(pip install -e .[test])")
needs_viser = pytest.mark.skipif(not HAVE_VISER, reason="needs viser (pip install -e .[test])")
TRAIN_STEPS = ("optim.steps=150", "blocks.active=1", "blocks.interval=3")  # 300 global steps over 2 blocks


@pytest.fixture(scope="module")
def partition_file(tiny_scene, tmp_path_factory) -> Path:
    from momentum_gs.config import load_config
    from momentum_gs.data.scene import load_scene
    from momentum_gs.partition import auto_partition

    cfg = load_config()
    cfg.data.path = str(tiny_scene)
    path = tmp_path_factory.mktemp("view") / "partition.npz"
    auto_partition(load_scene(cfg.data), 2).save(path)
    return path


@pytest.fixture(scope="module")
def blocks_run(tiny_scene, partition_file, tmp_path_factory) -> Path:
    """The tiny scene trained as 2 blocks."""
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("view") / "run", (f"blocks.partition={partition_file}",))


def test_the_browser_camera_and_ours_are_the_same_view(tiny_scene):
    from momentum_gs.config import load_config
    from momentum_gs.data.scene import load_scene

    g = np.random.default_rng(0)
    for _ in range(20):  # rotations of every kind, w of either sign
        R = qvec_to_rotmat(g.normal(size=4))
        assert np.allclose(qvec_to_rotmat(rotmat_to_qvec(R)), R, atol=1e-12) and np.linalg.det(R) == pytest.approx(1)
    cfg = load_config()
    cfg.data.path = str(tiny_scene)
    for camera in load_scene(cfg.data, images=False).train:
        position, wxyz, fov, aspect = camera_pose(camera)
        assert aspect == camera.width / camera.height and np.allclose(position, camera.center.double(), atol=1e-5)
        back = viewer_camera(position, wxyz, fov, camera.width, camera.height)
        assert torch.allclose(back.world_to_cam, camera.world_to_cam, atol=1e-5)
        assert back.K[1, 1] == pytest.approx(float(camera.K[1, 1]), rel=1e-5)
        assert back.K[0, 0] == back.K[1, 1] and back.K[0, 2] == camera.width / 2  # square pixels, centred
    # a point in front of the camera projects to the right of the centre when it lies to the camera's right
    right = viewer_camera((0, 0, 0), (1, 0, 0, 0), 1.0, 64, 48)
    assert (right.world_to_cam @ torch.tensor([1.0, 0, 5, 1]))[0] > 0


def test_the_cells_are_boxes_around_their_blocks(partition_file):
    from momentum_gs.partition.partition import Partition

    partition = Partition.load(partition_file)
    boxes = cell_boxes(partition)
    assert len(boxes) == partition.num_blocks == 2
    for b, (centre, size, wxyz) in enumerate(boxes):
        R = qvec_to_rotmat(wxyz)
        assert np.all(size > 0) and np.allclose(R, partition.rotation.T)
        inside = centre + (np.array([[-0.45, -0.45, -0.45], [0.45, 0.45, 0.45], [0.45, -0.45, 0]]) * size) @ R.T
        assert (partition.block_of(np.vstack([centre, inside])) == b).all()
    # the two cells meet: together they span the scene box
    assert np.isclose(sum(size.prod() for _, size, _ in boxes), np.prod(partition.box_max - partition.box_min))


@pytest.mark.slow
def test_frames_of_all_blocks_are_the_merged_scene_and_each_block_is_its_part(blocks_run):
    from momentum_gs.trained import load_run
    from momentum_gs.view.sources import RunSource

    source = RunSource(blocks_run, torch.device("cpu"))
    cfg, merged, step = load_run(blocks_run, torch.device("cpu"))
    assert source.num_blocks == 2 and source.step == step and source.partition is not None
    camera = source.cameras[0].scaled(96, 72)
    frame, drawn, _ = render_frame(source.parts((0, 1)), source.appearance, camera, cfg.render)
    with torch.no_grad():
        ours = merged.render(camera, cfg.render).output.image.clamp(0, 1).mul(255).round().byte().numpy()
    assert frame.shape == (72, 96, 3) and drawn > 100
    assert np.abs(frame.astype(int) - ours).max() <= 1  # the same Gaussians, decoded block by block
    alone = [render_frame(source.parts((b,)), source.appearance, camera, cfg.render)[1] for b in (0, 1)]
    assert sum(alone) == drawn and min(alone) > 0
    empty, none, _ = render_frame(source.parts(()), source.appearance, camera, cfg.render)
    assert none == 0 and (empty == np.round(np.array(cfg.render.background) * 255)).all()
    depth, _, _ = render_frame(source.parts((0, 1)), source.appearance, camera, cfg.render, "depth")
    normal, _, _ = render_frame(source.parts((0, 1)), source.appearance, camera, cfg.render, "normal")
    for image in (depth, normal):
        assert image.shape == (72, 96, 3) and image.dtype == np.uint8 and image.std() > 5
        assert np.abs(image.astype(int) - frame).mean() > 10  # not the colour image


@pytest.mark.slow
def test_frames_carry_their_depth_and_the_panel_settings(blocks_run):
    """The depth sent with a frame (for the overlays' occlusion) is the render's; the background colour and the
    depth mode's near/far come from the panel."""
    from momentum_gs.view.frames import FAR, FrameSettings
    from momentum_gs.view.sources import RunSource

    source = RunSource(blocks_run, torch.device("cpu"))
    camera = source.cameras[0].scaled(96, 72)
    parts, cfg = source.parts((0, 1)), source.cfg.render
    image, _, depth = render_frame(parts, source.appearance, camera, cfg)
    plain, _, none = render_frame(parts, source.appearance, camera, cfg, with_depth=False)  # overlays hidden
    assert none is None and np.array_equal(plain, image)
    with torch.no_grad():
        view = render_view(parts, camera, cfg, source.appearance, None, extras=("depth",)).output
    covered = (view.alpha[..., 0] > 0.5).numpy()
    assert depth.shape == (72, 96) and covered.any()
    np.testing.assert_allclose(depth[covered], view.normalised_depth()[..., 0].numpy()[covered], rtol=1e-5)
    assert (depth[~covered] == FAR).all()
    red, _, _ = render_frame(source.parts(()), source.appearance, camera, cfg, FrameSettings(background=(1, 0, 0)))
    assert (red == [255, 0, 0]).all()
    lo, hi = np.percentile(depth[covered], [2, 98])
    auto, _, _ = render_frame(parts, source.appearance, camera, cfg, "depth")
    same, _, _ = render_frame(parts, source.appearance, camera, cfg, FrameSettings("depth", near=lo, far=hi))
    wide, _, _ = render_frame(parts, source.appearance, camera, cfg, FrameSettings("depth", near=0, far=10 * hi))
    assert np.abs(same.astype(int) - auto).max() <= 1 and np.abs(wide.astype(int) - auto).mean() > 10


@needs_viser
@pytest.mark.slow
def test_the_host_and_the_address_printed(blocks_run):
    from momentum_gs.view.server import Viewer
    from momentum_gs.view.serving import check_port
    from momentum_gs.view.sources import RunSource

    with pytest.raises(UserError, match="--host is empty; give the address to listen on"):
        check_port("", 8080)
    viewer = Viewer(RunSource(blocks_run, torch.device("cpu")), "0.0.0.0", free_port(), log=lambda line: None)
    try:
        assert viewer.url == f"http://{socket.gethostname()}:{viewer.port}"  # not http://0.0.0.0:PORT
    finally:
        viewer.close()


@needs_viser
@pytest.mark.slow
def test_a_client_that_is_not_a_browser_prints_no_traceback(blocks_run, capfd):
    """A bare TCP connection (a port scanner, a health check) made the websockets server log its stack."""
    from momentum_gs.view.server import Viewer
    from momentum_gs.view.sources import RunSource

    viewer = Viewer(RunSource(blocks_run, torch.device("cpu")), "127.0.0.1", free_port(), log=lambda line: None)
    try:
        for payload in (b"", b"GARBAGE\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", viewer.port)) as bare:
                bare.sendall(payload)
                time.sleep(0.3)
        time.sleep(0.5)
    finally:
        viewer.close()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow
def test_the_refusals_are_one_line_each(blocks_run, tmp_path, capsys):
    import shutil

    import yaml

    from momentum_gs.view.sources import RunSource

    empty = tmp_path / "no_model"
    (empty / "ckpt").mkdir(parents=True)
    shutil.copy(blocks_run / "config.yaml", empty / "config.yaml")
    port = free_port()
    assert main(["view", str(empty), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no checkpoint, so there is no model to view" in err
    assert main(["view", str(tmp_path / "nothing"), "--port", str(port)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    moved = tmp_path / "moved"
    shutil.copytree(blocks_run, moved)
    (moved / "partition.npz").unlink()  # the run's copy of the partition, and the file its config names
    partition = Path(yaml.safe_load((moved / "config.yaml").read_text())["blocks"]["partition"])
    hidden = partition.with_suffix(".hidden")
    partition.rename(hidden)
    try:
        with pytest.raises(UserError, match=r"the partition file .*partition.npz of .*moved is missing; put it back"):
            RunSource(moved, torch.device("cpu"))
    finally:
        hidden.rename(partition)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert main(["view", str(blocks_run), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: port {port} on 127.0.0.1 is in use (another viewer?); pass --port with a free one\n"
    assert main(["view", str(blocks_run), "--port", "70000"]) == 2
    assert "argument --port: must be in [1, 65535], got '70000'" in capsys.readouterr().err
    from momentum_gs.view.serving import warn_if_open

    warn_if_open("127.0.0.1")
    assert capsys.readouterr().err == ""
    warn_if_open("0.0.0.0")  # --host opens it wider: one warning line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: the viewer listens on 0.0.0.0: anyone who can reach")


@needs_viser
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.slow
def test_mgs_view_serves_its_page_from_this_machine_and_stops_on_ctrl_c_or_sigterm(blocks_run, stop):
    """Ctrl-C, or SIGTERM (a service manager's stop), closes the viewer and says so."""
    port = free_port()
    # faulthandler: a viewer that does not stop is aborted below, and its threads' stacks are in the failure
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONFAULTHANDLER": "1"}
    # Ctrl-C raises KeyboardInterrupt in the child even where this test runs in a background job, whose children
    # start with SIGINT ignored (then Python installs no handler of its own, and the signal would do nothing)
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv = ['mgs'] + sys.argv[1:]; runpy.run_module('momentum_gs.cli', run_name='__main__')")
    process = subprocess.Popen([sys.executable, "-c", start, "view", str(blocks_run), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        line = process.stdout.readline() if line.startswith("kernels:") else line
        assert f"at http://127.0.0.1:{port}; Ctrl-C to stop" in line and "2 block(s)" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            page = answer.read().decode("utf-8", "replace")
        assert answer.status == 200 and "<title>Viser</title>" in page
        with socket.socket() as probe:  # listening on the loopback address only
            address = next((a for a in socket.gethostbyname_ex(socket.gethostname())[2] if a != "127.0.0.1"), None)
            if address is not None:
                assert probe.connect_ex((address, port)) != 0
        process.send_signal(stop)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            out, err = process.communicate(timeout=30)
            pytest.fail(f"mgs view did not stop within 60 s of {stop.name}; its output:\n{out}\n{err}")
    finally:
        process.kill()
    assert process.returncode == 0 and out.strip() == "viewer stopped", (out, err)


@needs_viser
@pytest.mark.slow
def test_a_failing_frame_is_one_line_and_the_viewer_goes_on(blocks_run):
    from momentum_gs.view.server import ClientState, Viewer
    from momentum_gs.view.sources import RunSource

    lines, calls = [], []
    viewer = Viewer(RunSource(blocks_run, torch.device("cpu")), "127.0.0.1", free_port(), log=lines.append)

    def broken(client_id):
        calls.append(client_id)
        raise RuntimeError("not enough memory\nfor the frame")

    try:
        viewer._serve = broken
        for client in (7, 8):  # two browsers that fail the same way: one line
            viewer.clients[client] = ClientState()
            deadline = time.time() + 30
            while client in viewer.clients and time.time() < deadline:
                time.sleep(0.02)
            assert client not in viewer.clients  # gone from the server: forgotten
        assert calls == [7, 8] and viewer._thread.is_alive()
        assert lines == ["viewer: a frame failed (RuntimeError: not enough memory)"]
    finally:
        viewer.close()
    assert not viewer._thread.is_alive()


@needs_viser
@pytest.mark.slow
def test_training_goes_on_when_the_viewer_cannot_start(tiny_config, monkeypatch, capsys):
    from momentum_gs.train.run import train
    from momentum_gs.view import server

    def cannot_start(self, *args, **kwargs):
        raise OSError("no more file handles")

    monkeypatch.setattr(server.Viewer, "__init__", cannot_start)
    summary = train(tiny_config, viewer=("127.0.0.1", free_port()))
    assert summary["steps"] == 24 and summary["checkpoint"]
    err = capsys.readouterr().err
    assert "viewer: could not start (OSError: no more file handles); training goes on without it\n" in err


# ---- In headless Chromium: what the page shows ------------------------------------------------------------

SHOT = (480, 360)
SHOW_CANVAS_ONLY = ("document.querySelectorAll('body *').forEach(e => { if (e.tagName !== 'CANVAS' && "
                    "!e.querySelector('canvas')) e.style.visibility = 'hidden'; }); true")


def _full_frame(viewer, after: int, camera=None, timeout: float = 120):
    """The viewer's next full frame after frame number ``after`` (from ``camera``'s pose if given; waits for it:
    the browser reports a camera that the server set a moment later, its roll levelled to the scene's up)."""
    deadline = time.time() + timeout
    while True:
        frame = viewer.last_frame
        if frame is not None and frame.count > after and (
                camera is None or torch.allclose(frame.camera.world_to_cam, camera.world_to_cam, atol=0.05)):
            return frame
        assert time.time() < deadline, "the viewer sent no full frame (from the camera set)"
        time.sleep(0.05)


def _shot(browser, viewer, after: int, camera=None):
    """(screenshot [H, W, 3] in [0, 1], the frame shown) once the full frame after ``after`` (from ``camera``) has
    been drawn."""
    frame = _full_frame(viewer, after, camera)
    time.sleep(1.0)  # the PNG travels to the page and is decoded
    browser.evaluate(SHOW_CANVAS_ONLY)
    # then the page must hold still: on a loaded machine the image can still be fading in a second later
    shot, deadline = browser.screenshot(), time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.5)
        browser.evaluate(SHOW_CANVAS_ONLY)
        again = browser.screenshot()
        if np.array_equal(again, shot):
            break
        shot = again
    return shot, frame


def _ours(model, camera, render_cfg) -> np.ndarray:
    with torch.no_grad():
        return model.render(camera, render_cfg).output.image.clamp(0, 1).numpy()


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@needs_browser
@pytest.mark.slow
def test_chromium_shows_our_render_from_the_browser_camera_and_a_block_switched_off(blocks_run, tmp_path):
    from momentum_gs.trained import load_run
    from momentum_gs.model.gaussian_scene import GaussianScene
    from momentum_gs.view.server import Viewer
    from momentum_gs.view.sources import RunSource

    source = RunSource(blocks_run, torch.device("cpu"))
    cfg, merged, _ = load_run(blocks_run, torch.device("cpu"))
    viewer = Viewer(source, "127.0.0.1", free_port(), log=lambda line: None)
    viewer.show_cameras.value = viewer.show_cells.value = False  # the background image alone
    browser = Browser(tmp_path / "profile", *SHOT)
    try:
        browser.open(viewer.url)
        # the page opens on training camera 0 (the viewer flies there)
        shot_a, frame_a = _shot(browser, viewer, 0, source.cameras[0])
        assert shot_a.shape == (SHOT[1], SHOT[0], 3) and (frame_a.camera.width, frame_a.camera.height) == SHOT
        ours_a = _ours(merged, frame_a.camera, cfg.render)
        # The screenshot is our frame sent as a PNG, so it matches to the byte: measured inf dB (correlation 1.0).
        # A mirrored image correlates 0.27, another camera's view below 0.5, a blank page not at all: 0.99 and
        # 35 dB leave room for a browser that resamples the image by a fraction of a pixel.
        assert _correlation(shot_a, ours_a) > 0.99 and float(np.mean((shot_a - ours_a) ** 2)) < 10 ** -3.5
        assert _correlation(shot_a, ours_a[:, ::-1]) < 0.9  # the scene is not left-right symmetric
        # the camera moves to a view where block 0 draws about half of the picture: a new frame, not the stale one
        block0 = GaussianScene(source.anchors[0], source.decoders[0], source.appearance)
        with torch.no_grad():
            halves = [abs(float((block0.render(c, cfg.render).output.alpha > 0.5).float().mean()) - 0.5)
                      for c in source.cameras[1:]]
        target = source.cameras[1 + int(np.argmin(halves))]
        client = next(iter(viewer.server.get_clients().values()))
        viewer.fly_to(client, target)
        shot_b, frame_b = _shot(browser, viewer, frame_a.count, target)
        ours_b = _ours(merged, frame_b.camera, cfg.render)
        assert _correlation(shot_b, ours_b) > 0.99 and _correlation(shot_b, ours_b) > _correlation(shot_b, ours_a) + 0.3
        viewer.block_boxes[0].value = False  # block 0 off: the picture changes where its anchors are
        viewer._changed()  # (a click in the page does this through the checkbox's update callback)
        shot_off, frame_off = _shot(browser, viewer, frame_b.count)
        assert frame_off.blocks == (1,)
        with torch.no_grad():
            alpha = block0.render(frame_off.camera, cfg.render).output.alpha[..., 0].numpy()
        assert torch.equal(frame_off.camera.world_to_cam, frame_b.camera.world_to_cam)  # only the block changed
        changed = np.abs(shot_off - shot_b).max(-1) > 0.05
        covered, untouched = alpha > 0.5, alpha < 0.01  # where block 0 is opaque, where it draws nothing
        # measured: block 0 opaque on 47 % of the view, absent from 12 %; 100 % and 0 % of those pixels changed
        assert covered.mean() > 0.05 and untouched.mean() > 0.05
        assert changed[covered].mean() > 0.5 and changed[untouched].mean() < 0.02
        assert _correlation(shot_off, _ours(GaussianScene(source.anchors[1], source.decoders[1], source.appearance),
                                            frame_off.camera, cfg.render)) > 0.99
        # nothing but this machine was asked for anything (the client is served from the viser wheel)
        outside = [url for url in browser.requests
                   if not url.startswith((viewer.url, "data:", "blob:", f"ws://127.0.0.1:{viewer.port}"))]
        assert browser.requests and not outside, outside
        assert any(url.startswith(f"ws://127.0.0.1:{viewer.port}") for url in browser.requests)  # seen, allowed
    finally:
        browser.close()
        viewer.close()


def _page_step(browser) -> tuple[int, bool] | None:
    """(the step the page shows, whether it says paused), or None before the status arrives."""
    text = browser.evaluate("document.body.innerText") or ""
    match = re.search(r"step (\d+) / \d+", text)
    return (int(match[1]), "(paused)" in text) if match else None


def _wait_for(condition, timeout: float = 120, what: str = ""):
    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@needs_browser
@pytest.mark.slow
def test_chromium_watches_a_run_train_and_the_viewer_changes_nothing(tiny_scene, partition_file, tmp_path,
                                                                   monkeypatch):
    from momentum_gs.config import load_config
    from momentum_gs.io.checkpoint import checksum, latest_checkpoint, load_checkpoint
    from momentum_gs.train import run as run_module

    overrides = (f"blocks.partition={partition_file}",) + TRAIN_STEPS
    without = train_tiny(tiny_scene, tmp_path / "without", overrides)
    started = {}

    def paused_at_the_start(trainer, host, port):  # the test decides when training goes
        viewer = start(trainer, host, port)
        viewer._toggle_pause()  # what the page's Pause button does
        started["viewer"] = viewer
        return viewer

    start = run_module.start_live_viewer
    monkeypatch.setattr(run_module, "start_live_viewer", paused_at_the_start)
    port, failures = free_port(), []
    cfg = load_config(overrides=TINY_OVERRIDES + list(overrides))
    cfg.data.path, cfg.out = str(tiny_scene), str(tmp_path / "with")

    def training():
        try:
            run_module.train(cfg, viewer=("127.0.0.1", port))
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=training)
    thread.start()
    browser = Browser(tmp_path / "profile", *SHOT)
    try:
        _wait_for(lambda: "viewer" in started or failures, what="the viewer")
        assert not failures, failures
        browser.open(started["viewer"].url)
        # paused before the first step: the trainer waits after it, the page says so
        assert _wait_for(lambda: _page_step(browser), what="the step on the page") == (1, True)
        time.sleep(1.5)
        assert _page_step(browser) == (1, True) and started["viewer"].source.trainer.step == 1  # standing still
        assert started["viewer"].last_frame is not None  # a frame of the loaded block was drawn meanwhile
        buttons = "[...document.querySelectorAll('button')].map(b => b.innerText.trim())"
        assert "Resume" in browser.evaluate(buttons)
        browser.evaluate("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Resume').click()")
        # the page follows the run: steps after the first, not paused, the button says Pause again
        later = _wait_for(lambda: (s := _page_step(browser)) and s[0] > 1 and not s[1] and s, what="the page to update")
        assert 1 < later[0] < 300 and "Pause" in browser.evaluate(buttons)
        thread.join(timeout=300)
        assert not thread.is_alive() and not failures, failures
    finally:
        started.get("viewer") and started["viewer"].source.paused.clear()
        browser.close()
        thread.join(timeout=300)
    a, b = (load_checkpoint(latest_checkpoint(run / "ckpt")) for run in (without, tmp_path / "with"))
    # each run keeps its own copy of the partition, and names it by its own path: all else is the same
    assert [Path(c.pop("partition")) for c in (a, b)] == [without / "partition.npz", tmp_path / "with" / "partition.npz"]
    assert a["step"] == b["step"] == 300 and checksum(a) == checksum(b)  # the same run, random streams and all


@pytest.mark.slow
def test_the_training_view_draws_every_block_the_parked_ones_as_last_trained(block_config, tmp_path):
    """While 1 of 2 blocks trains, the other is drawn from its parked state, which follows it each time it is
    parked again; all blocks together are the sum of each alone."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.train.trainer import Trainer
    from momentum_gs.view.sources import TrainingSource

    trainer = Trainer(block_config, load_scene(block_config.data), tmp_path / "run", torch.device("cpu"))
    trainer.view = source = TrainingSource(trainer)
    camera = trainer.scene.train[0].scaled(64, 48)

    def frame(blocks):
        with source.lock:
            return render_frame(source.parts(blocks), source.appearance, camera, block_config.render)

    trainer.train(until=1)
    (parked,) = [b.id for b in trainer.blocks if not b.loaded]
    first, drawn, _ = frame((parked,))
    assert drawn > 0 and "parked (as last trained): " + str(parked) in source.status()
    steps = trainer.blocks[parked].steps
    while trainer.blocks[parked].loaded or trainer.blocks[parked].steps == steps:  # trained again, parked again
        trainer.train(until=trainer.step + 1)
    again, _, _ = frame((parked,))
    assert np.abs(again.astype(int) - first).mean() > 0.1  # its newer state, not the first one kept
    alone = [frame((b,))[1] for b in (0, 1)]
    assert frame((0, 1))[1] == sum(alone) and min(alone) > 0


@needs_viser
@pytest.mark.parametrize("exit_with_training", [False, True], ids=["serves-on", "viewer-exit"])
@pytest.mark.slow
def test_after_training_the_viewer_serves_the_final_model_until_ctrl_c(tiny_scene, tmp_path, exit_with_training):
    """`mgs train --viewer` keeps the page up with the final model (the run written and unlocked first), until
    Ctrl-C; `--viewer-exit` ends with the training."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONFAULTHANDLER": "1"}
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv = ['mgs'] + sys.argv[1:]; runpy.run_module('momentum_gs.cli', run_name='__main__')")
    argv = ["train", "--data", str(tiny_scene), "--out", str(tmp_path / "run"), "--viewer", "--port", str(port),
            *(["--viewer-exit"] if exit_with_training else []), *TINY_OVERRIDES, "log.tensorboard=false"]
    process = subprocess.Popen([sys.executable, "-c", start, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        if exit_with_training:
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0 and "training done" not in out, (out, err)
            return
        lines = []
        while not (lines and lines[-1].startswith("training done")):
            line = process.stdout.readline()
            assert line, f"mgs train ended: {''.join(lines)}{process.stderr.read()}"
            lines.append(line)
        assert f"the viewer serves the final model at http://127.0.0.1:{port} until Ctrl-C" in lines[-1]
        assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / ".lock").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            assert answer.status == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0 and out.strip().endswith("viewer stopped"), (out, err)


@needs_browser
@pytest.mark.slow
def test_chromium_shows_a_training_block_before_and_after_it_is_parked(block_config, tmp_path):
    """The page of a training shows every block: a block that was training and is now parked is still drawn
    (from its parked state), where before only the loaded blocks were."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.train.trainer import Trainer
    from momentum_gs.view.server import Viewer
    from momentum_gs.view.sources import TrainingSource

    trainer = Trainer(block_config, load_scene(block_config.data), tmp_path / "run", torch.device("cpu"))
    trainer.view = source = TrainingSource(trainer)
    trainer.train(until=1)
    (training,) = [b.id for b in trainer.blocks if b.loaded]
    viewer = Viewer(source, "127.0.0.1", free_port(), log=lambda line: None)
    viewer.show_cameras.value = viewer.show_cells.value = False  # the background image alone
    browser = Browser(tmp_path / "profile", *SHOT)

    def ours(camera, blocks):
        with source.lock:
            image = render_frame(source.parts(blocks), source.appearance, camera, block_config.render)[0]
        return image.astype(np.float64) / 255

    try:
        browser.open(viewer.url)
        before, frame = _shot(browser, viewer, 0, source.cameras[0])
        assert _correlation(before, ours(frame.camera, (0, 1))) > 0.99
        while trainer.blocks[training].loaded:  # train until that block is parked
            trainer.train(until=trainer.step + 1)
        source.version += 1  # a new model version: the resting camera's frame is redrawn
        after, frame_after = _shot(browser, viewer, frame.count)
        loaded_only = ours(frame_after.camera, [b.id for b in trainer.blocks if b.loaded])
        everything = ours(frame_after.camera, (0, 1))
        assert _correlation(after, everything) > 0.99  # the parked block is in the picture
        assert np.abs(everything - loaded_only).max(-1).mean() > 0.02  # and it draws a part of it
        assert _correlation(after, loaded_only) < _correlation(after, everything) - 0.01
    finally:
        browser.close()
        viewer.close()
