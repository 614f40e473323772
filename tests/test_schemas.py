"""Each JSON file type is read through one declared schema, checked right after reading and before any work:
a bad value is one line naming the file, the key and what was expected. A run finds its own partition when it
is moved or copied, and a partition that is not the run's is one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.cli import main
from momentum_gs.config import load_config
from momentum_gs.data.georef import read_georef
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.camera_path_json import read_path_json
from momentum_gs.eval.geometry import ground_truth_mesh
from momentum_gs.eval.table import gather
from momentum_gs.io.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from momentum_gs.io.mesh import write_mesh
from momentum_gs.io.schema import NOTHING, FileName, Items, ListOf, Maybe, Number, Obj, Tensor, check
from momentum_gs.mesh import extract
from momentum_gs.partition import auto_partition
from momentum_gs.partition.partition import Partition
from momentum_gs.data.up import recorded_up
from momentum_gs.ranges import Range
from momentum_gs.trained import load_run
from tests.helpers.run_folders import make_run
from tests.helpers.tiny_training import TINY_OVERRIDES, train_tiny

ORIGIN = {"lat": 46.5, "lon": 6.6, "alt": 400.0}
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than the json module follows: RecursionError


def refused(capsys, args: list[str], *fragments: str) -> str:
    """Run ``mgs args``: exit status 2 and one line ``error: ...`` holding every fragment, no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(fragment in lines[0] for fragment in fragments), err
    return lines[0]


def write(path: Path, content) -> Path:
    """``content`` into ``path``: bytes as they are, text as it is, anything else as JSON (NaN allowed)."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# ---- the checker ----------------------------------------------------------------------------------------------
def test_the_checker_names_the_key_and_what_was_expected():
    schema = Obj({"a": Number(Range(0, 1)), "b": ListOf(Obj({"c": Number(whole=True)}), 1, 2)},
                 {"f": FileName()}, refuse_unknown=True)
    good = {"a": 0.5, "b": [{"c": 3}], "f": "sub/mesh.ply"}
    assert check(good, schema, "x.json") is good
    cases = [({**good, "a": True}, "a is true, expected a finite number in [0, 1]"),
             ({**good, "a": float("nan")}, "a is NaN"), ({**good, "a": 10**400}, "a is 1000000000"),
             ({**good, "b": [{"c": 2.5}]}, "b[0].c is 2.5, expected a whole number"),
             ({**good, "b": []}, "b is a list of 0, expected a list of 1 to 2"),
             ({**good, "f": "../x"}, "f is \"../x\", expected a path inside the file's own folder"),
             ({**good, "f": "/etc/passwd"}, "f is \"/etc/passwd\""), ({"b": [{"c": 1}]}, "a is missing"),
             ({**good, "z": 1}, "z is not a key of this file (known: a, b, f)"),
             ([good], "the top level is a list of 1, expected an object")]
    for data, message in cases:
        with pytest.raises(UserError, match="^" + re.escape(f"x.json: {message}")):
            check(data, schema, "x.json")


def test_the_checker_reads_tensors_and_what_may_be_absent():
    """The kinds a checkpoint is declared with: a tensor's dtype and shape (None: any size), a list of one kind
    per item, a part that may be absent or None (Maybe) and one that must be (NOTHING)."""
    schema = Obj({"w": Tensor(torch.float32, (None, 3), "model.feat_dim=3"),
                  "blocks": Items((Obj({"steps": Number(Range(0, 5), whole=True)}),))},
                 {"teacher": Maybe(Obj({"w": Tensor(torch.float32, (2,))})), "appearance": NOTHING})
    good = {"w": torch.zeros(7, 3), "blocks": [{"steps": 5}]}
    for fine in (good, {**good, "teacher": None}, {**good, "appearance": None}):
        assert check(fine, schema, "c.pt") is fine
    cases = [({**good, "w": torch.zeros(7, 4)}, "w has shape (7, 4), expected float32 of shape (*, 3) "
                                                "(model.feat_dim=3)"),
             ({**good, "w": torch.zeros(7, 3, dtype=torch.float64)}, "w has dtype float64, expected float32"),
             ({**good, "w": [0.0] * 3}, "w is a list of 3, expected a tensor, float32 of shape (*, 3)"),
             ({**good, "blocks": []}, "blocks is a list of 0, expected a list of 1"),
             ({**good, "blocks": [{"steps": 6}]}, "blocks[0].steps is 6, expected a whole number in [0, 5]"),
             ({**good, "teacher": {"w": torch.zeros(3)}}, "teacher.w has shape (3,), expected float32 of shape (2,)"),
             ({**good, "appearance": {"weight": torch.zeros(2, 1)}}, "appearance is an object of 1 keys, expected "
                                                                    "none"),
             ({"blocks": [{"steps": 1}]}, "w is missing, expected float32 of shape (*, 3)")]
    for data, message in cases:
        with pytest.raises(UserError, match="^" + re.escape(f"c.pt: {message}")):
            check(data, schema, "c.pt")


# ---- georef.json ----------------------------------------------------------------------------------------------
GEOREF_CASES = {
    "latitude as a string": ({"origin": {**ORIGIN, "lat": "46.5"}}, 'origin.lat is "46.5", expected a finite number '
                                                                    "in [-90, 90] (degrees)"),
    "altitude null": ({"origin": {**ORIGIN, "alt": None}}, "origin.alt is null, expected a finite number in "
                                                          "[-12000, 100000]"),
    "NaN": ('{"origin": {"lat": NaN, "lon": 6.6, "alt": 400}}', "origin.lat is NaN"),
    "Infinity": ('{"origin": {"lat": 46.5, "lon": Infinity, "alt": 400}}', "origin.lon is Infinity, expected a "
                                                                          "finite number in [-180, 180]"),
    "latitude 500": ({"origin": {**ORIGIN, "lat": 500}}, "origin.lat is 500"),
    "1e308": ({"origin": {**ORIGIN, "alt": 1e308}}, "origin.alt is 1e+308"),
    "a boolean": ({"origin": {**ORIGIN, "lon": True}}, "origin.lon is true"),
    "no origin": ({"residual_rms_m": 0.4}, "origin is missing"),
    "a NaN residual": ('{"origin": {"lat": 46.5, "lon": 6.6, "alt": 400}, "residual_rms_m": NaN}',
                       "residual_rms_m is NaN"),
    "deep nesting": ('{"origin": ' + DEEP + "}", "is nested too deeply"),
    "not UTF-8": (b'{"origin": {"lat": 46.5, "lon": 6.6, "alt": 400, "\xff": 1}}', "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", GEOREF_CASES)
def test_a_bad_georef_is_one_line_naming_the_key(tmp_path, case):
    content, message = GEOREF_CASES[case]
    write(tmp_path / "georef.json", content)
    with pytest.raises(UserError) as error:
        read_georef(tmp_path)
    assert str(error.value).startswith(f"the georeference {tmp_path / 'georef.json'}") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_georef_limits_and_a_folder(tmp_path):
    write(tmp_path / "georef.json", {"origin": {"lat": -90, "lon": 180, "alt": -430.5}, "fit": "level"})
    assert read_georef(tmp_path)["origin"]["alt"] == -430.5  # the Dead Sea shore; keys not read are kept
    write(tmp_path / "georef.json", {"origin": {**ORIGIN, "height": 3}})  # the side-car copies the origin
    with pytest.raises(UserError, match=r"origin.height is not a key of this file \(known: lat, lon, alt\)"):
        read_georef(tmp_path)
    (tmp_path / "georef.json").unlink()
    assert read_georef(tmp_path) is None
    (tmp_path / "georef.json").mkdir()  # silently ignored before: refused
    with pytest.raises(UserError, match="georef.json is a folder, expected a JSON file"):
        read_georef(tmp_path)


@pytest.fixture(scope="module")
def scene_run(tiny_scene, tmp_path_factory):
    """A copy of the tiny scene and a run trained a few steps on it; tests change the scene's files and put them
    back (the ``scene_files`` fixture)."""
    folder = tmp_path_factory.mktemp("schemas")
    scene = shutil.copytree(tiny_scene, folder / "scene")
    return scene, train_tiny(scene, folder / "run", ("optim.steps=4",))


@pytest.fixture
def scene_files(scene_run, monkeypatch):
    """The scene and run of ``scene_run``; the scene's scene.json, mesh.ply and georef.json are restored after
    the test, and neither a fusion nor a bake may start."""
    scene, run = scene_run
    kept = {name: (scene / name).read_bytes() for name in ("scene.json", "mesh.ply")}

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the input was checked")

    monkeypatch.setattr(extract, "fuse_blocks", no_work)
    monkeypatch.setattr("momentum_gs.export.shared.baked_for_export", no_work)
    yield scene, run
    shutil.rmtree(scene / "georef.json", ignore_errors=True)
    (scene / "georef.json").unlink(missing_ok=True)
    for name, data in kept.items():
        (scene / name).write_bytes(data)


@pytest.mark.parametrize("case", ["latitude as a string", "altitude null", "NaN", "latitude 500", "1e308",
                                  "deep nesting"])
@pytest.mark.slow
def test_export_and_mesh_refuse_a_bad_georef_before_any_work(scene_files, tmp_path, capsys, case):
    scene, run = scene_files
    content, message = GEOREF_CASES[case]
    write(scene / "georef.json", content)
    refused(capsys, ["export", str(run), "--out", str(tmp_path / "e"), "--sh-degree", "0", "--refine", "0"],
            str(scene / "georef.json"), message)
    refused(capsys, ["mesh", str(run), "--out", str(tmp_path / "m.ply"), "--voxel", "0.5"], message)
    assert not list(tmp_path.rglob("*.georef.json")) and not (tmp_path / "m.ply").exists()


@pytest.mark.slow
def test_export_refuses_a_georef_folder(scene_files, tmp_path, capsys):
    scene, run = scene_files
    (scene / "georef.json").mkdir()
    refused(capsys, ["export", str(run), "--out", str(tmp_path / "e"), "--refine", "0"], "is a folder")


# ---- scene.json and the ground-truth mesh --------------------------------------------------------------------
SCENE_CASES = {
    "malformed": ("{not json", "is not valid JSON"),
    "a list": ([], "the top level is a list of 0, expected an object"),
    "an integer path": ({"mesh": 5}, "mesh is 5, expected a path inside the file's own folder"),
    "not UTF-8": (b'{"mesh": "mesh\xff.ply"}', "is not UTF-8 text"),
    "outside": ({"mesh": "../outside.ply"}, 'mesh is "../outside.ply", expected a path inside'),
    "deep nesting": ('{"mesh": ' + DEEP + "}", "is nested too deeply"),
}


@pytest.mark.parametrize("case", SCENE_CASES)
def test_a_bad_scene_json_is_one_line(tmp_path, case):
    scene = tmp_path / "scene"
    scene.mkdir()
    write_mesh(tmp_path / "outside.ply", np.eye(3), np.array([[0, 1, 2]]))
    content, message = SCENE_CASES[case]
    write(scene / "scene.json", content)
    for reader in (ground_truth_mesh, recorded_up):  # one schema for every reader of the file
        with pytest.raises(UserError, match=f"the scene description {scene / 'scene.json'}"):
            reader(scene)
    with pytest.raises(UserError) as error:
        ground_truth_mesh(scene)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_scene_json_absolute_paths_and_a_zero_up_are_refused(tmp_path):
    write_mesh(tmp_path / "outside.ply", np.eye(3), np.array([[0, 1, 2]]))
    write(tmp_path / "scene.json", {"mesh": str(tmp_path / "outside.ply")})
    with pytest.raises(UserError, match="expected a path inside the file's own folder"):
        ground_truth_mesh(tmp_path)
    write(tmp_path / "scene.json", {"up": [0, 0, 0]})
    with pytest.raises(UserError, match=r"up is \[0, 0, 0\], expected a direction"):
        recorded_up(tmp_path)
    write(tmp_path / "scene.json", {"up": [0, 0, 1], "mesh": "gone.ply"})
    assert recorded_up(tmp_path).tolist() == [0, 0, 1] and ground_truth_mesh(tmp_path) is None


@pytest.mark.slow
def test_mesh_refuses_a_ground_truth_outside_the_scene_or_not_finite(scene_files, tmp_path, capsys):
    scene, run = scene_files
    info = json.loads((scene / "scene.json").read_text())
    shutil.copy(scene / "mesh.ply", scene.parent / "outside.ply")
    write(scene / "scene.json", {**info, "mesh": "../outside.ply"})  # scored without a word before
    refused(capsys, ["mesh", str(run), "--out", str(tmp_path / "m.ply")], "mesh is \"../outside.ply\"")
    write(scene / "scene.json", info)
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.nan, 0, 0]], np.float32)
    write_mesh(scene / "mesh.ply", vertices, np.array([[0, 1, 2], [1, 2, 3]]))  # gave "Chamfer inf" before
    refused(capsys, ["mesh", str(run), "--out", str(tmp_path / "m.ply")],
            f"the ground-truth mesh {scene / 'mesh.ply'} has 1 vertices that are not finite")


# ---- camera paths ---------------------------------------------------------------------------------------------
def _path_file(tmp_path, text: str | bytes | dict) -> Path:
    return write(tmp_path / "path.json", text)


CAMERA = {"camera_to_world": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 5, 0, 0, 0, 1], "fov": 50}
PATH = {"render_width": 32, "render_height": 24, "fps": 10, "camera_path": [CAMERA, CAMERA]}
PATH_CASES = {
    "a width as a string": ({**PATH, "render_width": "32"}, 'render_width is "32", expected a whole number in '
                                                            "[1, 65536] (pixels)"),
    "a width of 1e308": ({**PATH, "render_height": 1e308}, "render_height is 1e+308"),
    "an fps of NaN": ({**PATH, "fps": float("nan")}, "fps is NaN, expected a finite number in (0, 1000]"),
    "a 400-digit fov": (json.dumps(PATH).replace('"fov": 50', '"fov": 1' + "0" * 400, 1),
                        "camera_path[0].fov is 1000000000"),
    "a fov of true": ({**PATH, "camera_path": [CAMERA, {**CAMERA, "fov": True}]}, "camera_path[1].fov is true"),
    "text in a matrix": ({**PATH, "camera_path": [CAMERA, {**CAMERA, "camera_to_world": ["1"] * 16}]},
                         "camera_path[1].camera_to_world is a list of 16, expected 16 numbers within ±1e15 (a row-major "
                         "4x4 matrix) or a 4x4 list of them"),
    "a nested matrix": ({**PATH, "camera_path": [{**CAMERA, "camera_to_world": json.loads("[" * 500 + "]" * 500)}] * 2},
                        "camera_path[0].camera_to_world is a list of 1"),
    "deep nesting": ('{"camera_path": ' + DEEP + "}", "is nested too deeply"),
    "not UTF-8": (b'{"camera_path": "\xfe"}', "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", PATH_CASES)
def test_a_bad_camera_path_is_one_line_naming_the_key(tmp_path, case):
    content, message = PATH_CASES[case]
    file = _path_file(tmp_path, content)
    with pytest.raises(UserError) as error:
        read_path_json(file)
    assert str(error.value).startswith(f"camera path {file}") and message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


# ---- the partition file ---------------------------------------------------------------------------------------
def _partition_file(tmp_path, meta_change: dict | None = None, meta_text: str | None = None, **arrays) -> Path:
    """A small 2-block partition, its JSON header changed by ``meta_change`` (or replaced by ``meta_text``) and
    its arrays by ``arrays``."""
    good = tmp_path / "good.npz"
    Partition(np.zeros(3), np.ones(3), (2, 1, 1), np.array([0, 1, 0, 1]), [np.array([0, 2]), np.array([1, 3])],
              [np.array([0]), np.array([1])], camera_names=["a.png", "b.png"]).save(good)
    with np.load(good, allow_pickle=False) as data:
        content = {key: data[key] for key in data.files}
    meta = {**json.loads(str(content["meta"])), **(meta_change or {})}
    content["meta"] = np.array(meta_text if meta_text is not None else json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **{**content, **arrays})
    return tmp_path / "bad.npz"


PARTITION_CASES = {
    "a block count as text": (dict(meta_change={"block_dim": [2, "1", 1]}),
                              'block_dim[1] is "1", expected a whole number in [1, 65536]'),
    "a NaN margin": (dict(meta_text='{"format": "momentum_gs.partition", "version": 1, "block_dim": [2, 1, 1], '
                                    '"margin": NaN}'), "margin is NaN"),
    "a flag as text": (dict(meta_change={"has_up": "yes"}), 'has_up is "yes", expected true or false'),
    "names that are numbers": (dict(meta_change={"camera_names": [1, 2]}), "camera_names[0] is 1, expected a string"),
    "an unknown key": (dict(meta_change={"weights": [1, 2]}), "weights is not a key of this file"),
    "another version": (dict(meta_change={"version": 2}), "version is 2, expected a whole number in [1, 1]"),
    "deep nesting": (dict(meta_text=DEEP), "is nested too deeply"),
    "a NaN rotation": (dict(rotation=np.full((3, 3), np.nan)), "rotation holds float64 values that are not all finite"),
    "float indices": (dict(point_block=np.array([0.0, 1.0, 0.0, 1.0])), "point_block holds float64 values"),
}


@pytest.mark.parametrize("case", PARTITION_CASES)
def test_a_bad_partition_file_is_one_line(tmp_path, case):
    change, message = PARTITION_CASES[case]
    path = _partition_file(tmp_path, **change)
    with pytest.raises(UserError) as error:
        Partition.load(path)
    assert f"partition file {path}" in str(error.value) and message in str(error.value), str(error.value)
    assert Partition.load(_partition_file(tmp_path)).num_blocks == 2  # the unchanged file reads


# ---- the run summary ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    ({"steps": "200", "seconds": 12.5, "num_blocks": 1}, 'steps is "200", expected a whole number in [0, 1000000000]'),
    ('{"steps": 200, "seconds": NaN, "num_blocks": 1}', "seconds is NaN"),
    ({"steps": 200, "seconds": 12.5, "num_blocks": 0}, "num_blocks is 0"),
    ({"steps": 200, "seconds": 12.5}, "num_blocks is missing"),
    (b'{"steps": 200, "seconds": 12.5, "num_blocks": 1, "\xff": 0}', "is not UTF-8 text"),
    ("[" * 100_000, "is nested too deeply"),
    (None, "is a folder, expected a JSON file"),
], ids=["steps as text", "NaN seconds", "no blocks", "missing", "not UTF-8", "deep nesting", "a folder"])
def test_a_bad_run_summary_is_one_line(tmp_path, content, message):
    run = make_run(tmp_path, "run")
    summary = run / "summary.json"
    summary.unlink()
    summary.mkdir() if content is None else write(summary, content)
    with pytest.raises(UserError) as error:
        gather([run])
    assert str(error.value).startswith(f"the run summary {summary}") and message in str(error.value)


# ---- a run and its partition ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moved_run(tiny_scene, tmp_path_factory) -> Path:
    """A run of 2 blocks (blocks.partition=auto:2: the partition inside the run folder), moved to another folder
    after training, so the absolute path its checkpoint records no longer exists."""
    from momentum_gs.train.request import TrainRequest
    from momentum_gs.train.start import train_request

    folder = tmp_path_factory.mktemp("moved")
    train_request(TrainRequest(data=str(tiny_scene), out=str(folder / "trained"),
                               overrides=(*TINY_OVERRIDES, "blocks.partition=auto:2", "optim.steps=6")))
    return Path(shutil.move(folder / "trained", folder / "here"))


def copy_run(moved_run: Path, tmp_path) -> Path:
    return Path(shutil.copytree(moved_run, tmp_path / "copy"))


def _edit_checkpoint(run: Path, **change) -> None:
    """The run's latest checkpoint with ``change`` (None: the key removed), as an older version would write it."""
    path = latest_checkpoint(run / "ckpt")
    ckpt = load_checkpoint(path)
    ckpt.update(change)
    parts = {k: v for k, v in ckpt.items() if k not in ("format", "version", "step") and v is not None}
    save_checkpoint(path, ckpt["step"], parts)


@pytest.mark.slow
def test_a_moved_run_finds_its_own_partition(moved_run, tmp_path):
    from momentum_gs.view.sources import RunSource

    assert not (moved_run.parent / "trained").exists()
    cfg, model, _ = load_run(moved_run, torch.device("cpu"))
    assert Path(cfg.blocks.partition) == moved_run / "partition.npz"
    source = RunSource(moved_run, torch.device("cpu"))
    assert source.num_blocks == 2 and source.partition.num_blocks == 2
    copy = copy_run(moved_run, tmp_path)
    (moved_run / "partition.npz").rename(moved_run / "partition.kept")  # the copy reads its own, not this one
    try:
        assert Path(load_run(copy, torch.device("cpu"))[0].blocks.partition) == copy / "partition.npz"
    finally:
        (moved_run / "partition.kept").rename(moved_run / "partition.npz")


@pytest.mark.slow
def test_a_partition_that_is_not_the_runs_is_one_line(moved_run, tmp_path, capsys):
    from momentum_gs.view.sources import RunSource

    copy = copy_run(moved_run, tmp_path)
    cfg = load_config(overrides=[f"data.path={load_run(copy)[0].data.path}"])
    auto_partition(load_scene(cfg.data), 1).save(copy / "partition.npz")
    with pytest.raises(UserError, match="partition.npz is not the one checkpoint .* was trained with"):
        RunSource(copy, torch.device("cpu"))
    _edit_checkpoint(copy, partition_sha256=None)  # a checkpoint from before the digest: the blocks are compared
    with pytest.raises(UserError, match=r"the run's checkpoint holds 2 blocks but the partition file .*copy/"
                                        r"partition.npz has 1; use the partition the run was trained with"):
        RunSource(copy, torch.device("cpu"))  # an IndexError in the viewer before
    refused(capsys, ["export", str(copy), "--format", "scaffold", "--out", str(tmp_path / "e")], "holds 2 blocks")


@pytest.mark.slow
def test_a_checkpoint_cannot_name_a_partition_outside_its_run(moved_run, tmp_path):
    copy = copy_run(moved_run, tmp_path)
    _edit_checkpoint(copy, partition_in_run="../elsewhere.npz")
    with pytest.raises(UserError, match='partition_in_run is "../elsewhere.npz", expected a path inside the run '
                                        "folder"):
        load_run(copy)


@pytest.mark.slow
def test_a_moved_run_resumes_with_its_own_partition(moved_run, tmp_path):
    from momentum_gs.train.request import TrainRequest
    from momentum_gs.train.start import train_request

    copy = copy_run(moved_run, tmp_path)
    before = load_checkpoint(latest_checkpoint(copy / "ckpt"))["step"]
    summary = train_request(TrainRequest(out=str(copy), overrides=("optim.steps=8",), resume=True))
    ckpt = load_checkpoint(latest_checkpoint(copy / "ckpt"))
    assert summary["steps"] == ckpt["step"] > before
    assert (ckpt["partition"], ckpt["partition_in_run"]) == (str(copy / "partition.npz"), "partition.npz")
