"""Files that cannot run code or reach outside their folder, runs that survive kills and a second writer, and
bad values refused before work starts."""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.config import load_config
from momentum_gs.data.colmap.folder import read_model, write_model
from momentum_gs.errors import Interrupted, UserError
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.checkpoint import (checksum, latest_checkpoint, load_checkpoint, save_checkpoint)
from momentum_gs.train.run import train
from momentum_gs.train.seeding import rng_state, set_rng_state
from tests.helpers.cli import assert_ends_in_error, assert_one_line_error, mgs
from tests.helpers.run_folders import copy_run
from tests.helpers.tiny_training import train_tiny

PACKAGE = Path(__file__).resolve().parents[1] / "momentum_gs"


class MakesAFile:
    """Unpickling this creates ``path``: what a crafted checkpoint would do instead."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    """A tiny trained run (two checkpoints) and its export, made once; tests copy the run (and the scene)
    before changing either."""
    run = train_tiny(tiny_scene, tmp_path_factory.mktemp("trust") / "run", ("log.checkpoint_every=12",))
    assert mgs("export", str(run), "--format", "scaffold").returncode == 0
    return run, tiny_scene


# ---- files that would run code ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "export", "resume"])
@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path, command):
    run, marker = copy_run(trained, tmp_path), tmp_path / "pwned"
    torch.save({"format": "momentum_gs.checkpoint", "version": 2, "step": 999, "x": MakesAFile(marker)},
               run / "ckpt" / "step_999.pt")
    args = {"eval": ("eval", str(run), "--no-images"), "export": ("export", str(run)),
            "resume": ("train", "--resume", "--out", str(run))}[command]
    assert_ends_in_error(mgs(*args), "could run code; refused")
    assert not marker.exists()


@pytest.mark.slow
def test_an_exported_decoder_that_would_run_code_is_refused(trained, tmp_path):
    from momentum_gs.export.scaffold import load_export

    export, marker = tmp_path / "export", tmp_path / "pwned"
    shutil.copytree(trained[0] / "export" / "scaffold", export)
    assert load_export(export)[0] is not None  # the real file loads
    torch.save({"format": "momentum_gs.decoder", "version": 2, "decoder": MakesAFile(marker)}, export / "decoder.pt")
    with pytest.raises(UserError, match="could run code; refused"):
        load_export(export)
    assert not marker.exists()


def test_the_package_never_unpickles():
    unsafe = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load|"
                        r"yaml\.(Unsafe|Full)?Loader\b|pickle\.loads?\(")
    found = [f"{path.relative_to(PACKAGE)}:{n}" for path in PACKAGE.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if unsafe.search(line)]
    assert found == []
    # every torch.load says weights_only=True
    loads = [line for path in PACKAGE.rglob("*.py") for line in path.read_text().splitlines() if "torch.load(" in line]
    assert loads and all("weights_only=True" in line for line in loads)


def test_generator_states_round_trip_through_a_checkpoint(tmp_path):
    np.random.seed(7)
    torch.manual_seed(7)
    save_checkpoint(tmp_path / "step_1.pt", 1, {"rng": rng_state()})
    expected = (np.random.rand(4), torch.rand(4))
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(load_checkpoint(tmp_path / "step_1.pt")["rng"])
    assert np.array_equal(np.random.rand(4), expected[0]) and torch.equal(torch.rand(4), expected[1])


# ---- silent corruption -------------------------------------------------------------------------------------
def test_a_changed_tensor_does_not_match_the_checksum(tmp_path):
    save_checkpoint(tmp_path / "step_1.pt", 1, {"w": torch.arange(100.0)})
    ckpt = torch.load(tmp_path / "step_1.pt", weights_only=True)
    ckpt["w"][37] = 1e-3  # the stored checksum is kept: what flipped bits in the tensor data amount to
    torch.save(ckpt, tmp_path / "step_1.pt")
    with pytest.raises(UserError, match="does not match its checksum"):
        load_checkpoint(tmp_path / "step_1.pt")


def test_flipped_bytes_never_resume_silently(tmp_path):
    save_checkpoint(tmp_path / "step_1.pt", 1, {"w": torch.randn(4000), "n": 3})
    good = (tmp_path / "step_1.pt").read_bytes()
    rng = np.random.default_rng(0)
    for trial in range(20):
        data = bytearray(good)
        for at in rng.integers(0, len(data), 20):
            data[at] ^= 0xFF
        (tmp_path / "step_1.pt").write_bytes(bytes(data))
        with pytest.raises(UserError):
            load_checkpoint(tmp_path / "step_1.pt")


def test_the_checksum_sees_values_types_and_order():
    base = {"a": torch.zeros(3), "b": [1, 2.0]}
    assert checksum(base) == checksum({"a": torch.zeros(3), "b": [1, 2.0]})
    for other in ({"a": torch.zeros(3, dtype=torch.float64), "b": [1, 2.0]}, {"a": torch.zeros(1, 3), "b": [1, 2.0]},
                  {"a": torch.zeros(3), "b": [1, 2]}, {"b": [1, 2.0], "a": torch.zeros(3)},
                  {"a": torch.tensor([0.0, 0.0, 1e-30]), "b": [1, 2.0]}):
        assert checksum(other) != checksum(base)


# ---- what a COLMAP model may not hold ------------------------------------------------------------------
def _broken_model(scene: Path, tmp_path: Path, change) -> Path:
    model = read_model(scene / "train" / "sparse" / "0")
    change(model)
    out = tmp_path / "sparse"
    write_model(model, out, binary=False)
    return out


def _first(model):
    return model.images[min(model.images)]


BAD_MODELS = {
    "nan quaternion": (lambda m: _first(m).qvec.__setitem__(0, np.nan), "non-finite pose"),
    "zero quaternion": (lambda m: _first(m).qvec.__setitem__(slice(None), 0.0), "quaternion of length 0"),
    "infinite translation": (lambda m: _first(m).tvec.__setitem__(2, np.inf), "non-finite pose"),
    "zero focal": (lambda m: next(iter(m.cameras.values())).params.__setitem__(0, 0.0), "focal length"),
    "negative focal": (lambda m: next(iter(m.cameras.values())).params.__setitem__(0, -5.0), "focal length"),
    "zero width": (lambda m: setattr(next(iter(m.cameras.values())), "width", 0), "width and height must be positive"),
    "nan point": (lambda m: m.points.__setitem__((3, 1), np.nan), "non-finite coordinates"),
    "name leaving images/": (lambda m: setattr(_first(m), "name", "../../x/photo.jpg"), "outside the images folder"),
    "absolute name": (lambda m: setattr(_first(m), "name", "/tmp/photo.jpg"), "outside the images folder"),
    "duplicate name": (lambda m: setattr(_first(m), "name", m.images[max(m.images)].name), "both named"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
@pytest.mark.slow
def test_a_bad_model_is_refused_with_one_line(trained, tmp_path, case):
    change, fragment = BAD_MODELS[case]
    with pytest.raises(UserError, match=re.escape(fragment)):
        read_model(_broken_model(trained[1], tmp_path, change))


@pytest.mark.slow
def test_duplicate_image_ids_are_refused(trained, tmp_path):
    sparse = _broken_model(trained[1], tmp_path, lambda m: None)
    lines = (sparse / "images.txt").read_text().splitlines(keepends=True)
    records = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    first, second = records[0], records[2]  # each image has a pose line and a keypoint line
    lines[second] = lines[first].split(" ", 1)[0] + " " + lines[second].split(" ", 1)[1]
    (sparse / "images.txt").write_text("".join(lines))
    with pytest.raises(UserError, match="appears twice"):
        read_model(sparse)


@pytest.mark.slow
def test_an_image_name_leaving_the_folder_writes_nothing_outside(trained, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(trained[1], scene)
    sparse = scene / "train" / "sparse" / "0"
    model = read_model(sparse)
    victim = tmp_path / "x" / "photo.png"
    victim.parent.mkdir()
    victim.write_bytes(b"keep me")
    name = _first(model).name
    _first(model).name = "../../../x/photo.jpg"
    shutil.copy(scene / "train" / "images" / name, victim.with_suffix(".jpg"))
    write_model(model, sparse, binary=False)
    for stem in ("cameras", "images", "points3D"):
        (sparse / f"{stem}.bin").unlink(missing_ok=True)
    assert_ends_in_error(mgs("train", "--data", str(scene), "--out", str(tmp_path / "r"), "data.downsample=2",
                             "device=cpu"), "outside the images folder")
    assert victim.read_bytes() == b"keep me" and sorted(p.name for p in victim.parent.iterdir()) == ["photo.jpg",
                                                                                                     "photo.png"]


# ---- a loss that stops being finite ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_loss_that_turns_nan_stops_training_and_keeps_the_last_good_checkpoint(tiny_config, monkeypatch):
    import momentum_gs.train.block_step as T

    real, calls = T.reconstruction_loss, {"n": 0}

    def poisoned(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] >= 7 else loss), parts

    monkeypatch.setattr(T, "reconstruction_loss", poisoned)
    tiny_config.log.checkpoint_every, tiny_config.log.progress_every = 4, 5
    with pytest.raises(UserError, match="not finite from global step 7 on.*last good checkpoint is .*step_4.pt"):
        train(tiny_config)
    assert latest_checkpoint(Path(tiny_config.out) / "ckpt").name == "step_4.pt"


@pytest.mark.parametrize("override, fragment", [
    ("optim.lambda_dssim=.nan", "'optim.lambda_dssim' must be a finite number"),
    ("optim.feature_lr=.nan", "'optim.feature_lr' must be a finite number"),
    ("optim.mlp_color_lr=0", "'optim.mlp_color_lr' must be in (0, 1]"),
    ("teacher.lambda_cons=.inf", "finite"),
    ("seed=-1", "'seed' must be in [0, 4294967295]"),
    ("blocks.policy=foo", "'blocks.policy' must be one of round_robin, random"),
    ("blocks.offload=foo", "'blocks.offload' must be one of memory, disk"),
    ("teacher.gradient=foo", "'teacher.gradient' must be one of reference, student, decoder_only"),
    ("teacher.momentum=1.5", "'teacher.momentum' must be in [0, 1]"),
    ("weighting.ema=1", "'weighting.ema' must be in [0, 1)"),
    ("weighting.sigma=0", "'weighting.sigma' must be in [0.01, 1000]"),
    ("optim.lambda_dssim=2", "'optim.lambda_dssim' must be in [0, 1]"),
    ("render.background=[0,0,2]", "each item of config key 'render.background' must be in [0, 1], got 2.0"),
    ("optim.steps=[1", "not valid YAML"),
    ("optim.steps=[1, 2]", "'optim.steps' expects int"),
])
def test_bad_config_values_are_one_line(override, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_config(overrides=[override])


@pytest.mark.parametrize("text, fragment", [(b"3: 1\n", "is not a name"), (b"~: 1\n", "is not a name"),
                                            (b"optim:\n  steps: \xff\xfe\n", "not UTF-8")])
def test_bad_config_files_are_one_line(tmp_path, text, fragment):
    (tmp_path / "c.yaml").write_bytes(text)
    with pytest.raises(UserError, match=fragment):
        load_config(tmp_path / "c.yaml")


# ---- run folders ---------------------------------------------------------------------------------------------
def test_checkpoint_files_other_than_step_n_are_ignored(tmp_path):
    for name in ("step_final.pt", "step_3.pt", "step_12.pt", "step_x.pt", "notes.pt"):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "step_12.pt"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    target.write_text("old\n")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(UserError, match=r"cannot write .*config.yaml \(No space left on device\)"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and list(tmp_path.iterdir()) == [target]


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="cannot write .*step_3.pt"):
        save_checkpoint(tmp_path / "step_3.pt", 3, {"w": torch.zeros(2)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_resume_removes_temporaries_of_killed_writes_and_takes_over_a_stale_lock(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    (run / "ckpt" / f".step_30.pt.tmp{pid}").write_bytes(b"\0" * 1000)
    (run / ".lock").write_text(f"{socket.gethostname()} {pid}\n")
    cfg = load_config(run / "config.yaml", ["optim.steps=30", f"out={run}"])
    summary = train(cfg, resume=True)
    assert summary["steps"] == 30
    assert not list((run / "ckpt").glob(".*tmp*")) and not (run / ".lock").exists()
    out = capsys.readouterr().out
    assert "left by a write that was killed" in out and "its process" in out


@pytest.mark.slow
def test_a_second_writer_into_the_same_run_is_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(f"{socket.gethostname()} {owner.pid}\n")
        assert_ends_in_error(mgs("train", "--resume", "--out", str(run), "optim.steps=30"),
                             f"in use by another training process (pid {owner.pid})")
    finally:
        owner.kill()
    assert (run / ".lock").exists() and latest_checkpoint(run / "ckpt").name == "step_24.pt"


@pytest.mark.slow
def test_resume_accepts_the_same_model_overrides_and_refuses_a_change(trained, tmp_path):
    from momentum_gs.train.run import prepare_config

    run = copy_run(trained, tmp_path)
    cfg = prepare_config(None, None, str(run), ["model.feat_dim=32", "optim.steps=30"], resume=True)
    assert cfg.model.feat_dim == 32 and cfg.optim.steps == 30
    with pytest.raises(UserError, match=r"model.feat_dim: 32 -> 16"):
        prepare_config(None, None, str(run), ["model.feat_dim=16"], resume=True)


@pytest.mark.slow
def test_run_folder_that_is_a_file_is_one_line(trained, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_ends_in_error(mgs("train", "--data", str(trained[1]), "--out", str(tmp_path / "afile"), "device=cpu"),
                         "is a file")


@pytest.mark.slow
def test_partition_into_a_folder_is_one_line_and_leaves_nothing(trained, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    assert_ends_in_error(mgs("partition", "--data", str(trained[1]), "--blocks", "2", "--out", str(folder)),
                         "is a folder; give the partition a file name")
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["parts"]


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_that_resumes_to_the_same_run(tiny_config, tmp_path, monkeypatch):
    import momentum_gs.train.trainer as T

    straight = copy.deepcopy(tiny_config)
    straight.out = str(tmp_path / "straight")
    expected = train(straight)
    real, handler = T.Trainer.record, signal.getsignal(signal.SIGINT)

    def interrupt_at_step_9(self):
        real(self)
        if self.step == 9:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(T.Trainer, "record", interrupt_at_step_9)
    with pytest.raises(Interrupted, match=r"interrupted at step 9; saved .*step_9.pt; continue with `mgs train "
                                          r"--resume"):
        train(tiny_config)
    monkeypatch.setattr(T.Trainer, "record", real)
    assert latest_checkpoint(Path(tiny_config.out) / "ckpt").name == "step_9.pt"
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is put back
    resumed = train(tiny_config, resume=True)
    assert checksum(load_checkpoint(Path(expected["checkpoint"]))) == checksum(load_checkpoint(Path(resumed["checkpoint"])))


@pytest.mark.slow
def test_old_checkpoints_beyond_the_kept_number_are_removed(tiny_config):
    tiny_config.log.checkpoint_every, tiny_config.log.keep_checkpoints = 3, 2
    train(tiny_config)
    assert sorted(p.name for p in (Path(tiny_config.out) / "ckpt").iterdir()) == ["step_21.pt", "step_24.pt"]


def _literal_keys() -> dict[str, tuple[str, ...]]:
    import dataclasses
    from typing import Literal, get_args, get_origin, get_type_hints

    from momentum_gs.config import Config

    out = {}

    def walk(node, prefix):
        hints = get_type_hints(type(node))
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif get_origin(hints[f.name]) is Literal:
                out[f"{prefix}{f.name}"] = get_args(hints[f.name])

    walk(Config(), "")
    return out


def test_every_enumerated_key_refuses_other_values_and_accepts_its_own():
    keys = _literal_keys()
    assert {"blocks.policy", "blocks.offload", "teacher.gradient", "render.backend", "render.anchor_filter",
            "distributed.backend", "log.wandb_mode", "deterministic"} <= set(keys)
    for key, allowed in keys.items():
        with pytest.raises(UserError, match=re.escape(f"'{key}' must be one of {', '.join(allowed)}, got 'bogus'")):
            load_config(overrides=[f"{key}=bogus"])
        for value in allowed:
            assert load_config(overrides=[f"{key}={value}"]) is not None


@pytest.mark.slow
def test_config_explain_and_version_from_the_command_line():
    from momentum_gs import __version__

    assert mgs("--version").stdout.strip() == f"momentum_gs {__version__}"
    text = mgs("config", "--explain", "teacher").stdout
    assert "teacher.momentum (float in [0, 1]; default 0.9): θ_t ← m θ_t" in text
    assert "teacher.gradient (one of reference|student|decoder_only; default 'reference')" in text
    every = mgs("config", "--explain").stdout.splitlines()
    sections = [v for v in vars(load_config()).values() if hasattr(v, "__dataclass_fields__")]
    assert len(sections) >= 13  # one line per key: the top-level keys that are not sections, and each section's
    assert len(every) == len(load_config().__dataclass_fields__) - len(sections) + sum(
        len(v.__dataclass_fields__) for v in sections)
    assert_ends_in_error(mgs("config", "--explain", "teacher.nope"), "unknown config key or section 'teacher.nope'")
    assert_ends_in_error(mgs("config", "blocks.policy=foo"), "'blocks.policy' must be one of round_robin, random")


@pytest.mark.slow
def test_a_replaced_partition_file_is_refused_on_resume(tiny_config, tmp_path):
    from momentum_gs.data.scene import load_scene
    from momentum_gs.partition import auto_partition

    scene = load_scene(tiny_config.data)
    auto_partition(scene, 2).save(tmp_path / "partition.npz")
    tiny_config.blocks.partition, tiny_config.optim.steps = str(tmp_path / "partition.npz"), 6
    train(tiny_config)
    assert tiny_config.blocks.partition == str((tmp_path / "run" / "partition.npz").resolve())  # the run's copy
    auto_partition(scene, 2, margin=0.05).save(tiny_config.blocks.partition)  # same scene, other cells
    tiny_config.optim.steps = 8
    with pytest.raises(UserError, match="is not the one .*step_12.pt was trained with"):
        train(tiny_config, resume=True)


def test_integer_keys_take_exponents_that_are_whole_numbers():
    assert load_config(overrides=["optim.steps=1e3"]).optim.steps == 1000  # YAML reads 1e3 as text
    for bad in ("optim.steps=1.5", "optim.steps=abc", "optim.steps=1e400"):
        with pytest.raises(UserError, match="'optim.steps' expects int"):
            load_config(overrides=[bad])


@pytest.mark.slow
def test_export_into_a_file_is_one_line(trained, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_ends_in_error(mgs("export", str(trained[0]), "--out", str(tmp_path / "afile")),
                         "is a file; the export needs a folder")
    assert (tmp_path / "afile").read_text() == "x"


def _program(folder: Path, name: str, marker: Path) -> Path:
    """An executable shell script ``folder/name`` that, if it ever runs, creates ``marker``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\ntouch {marker}\n")
    path.chmod(0o755)
    return path


def test_programs_are_never_taken_from_the_working_folder(tmp_path, monkeypatch):
    """A splat-transform (or node) in the folder a user works in, in its ./node_modules/.bin, or reached through
    a PATH entry that is empty, "." or the working folder itself is not found, let alone run: `mgs export
    --format sog` says in one line how to install the tool. One on an absolute PATH folder is found."""
    from momentum_gs.io.programs import find_program, trusted_path
    from momentum_gs.io.splat_transform import splat_transform_command

    work, ran = tmp_path / "downloaded_run", tmp_path / "it_ran"
    for folder in (work, work / "node_modules" / ".bin"):
        _program(folder, "splat-transform", ran)
        _program(folder, "node", ran)
    monkeypatch.chdir(work)
    empty = tmp_path / "empty"  # an absolute PATH folder without the tool (the machine's own may have it)
    empty.mkdir()
    for entry in ("", ".", str(work), "node_modules/.bin"):
        path = os.pathsep.join([entry, str(empty)])
        monkeypatch.setenv("PATH", path)
        assert str(work) not in trusted_path().split(os.pathsep)
        with pytest.raises(UserError, match="--format sog needs splat-transform, which is not on the PATH: install"):
            splat_transform_command()
    assert not ran.exists()
    tools = _program(tmp_path / "tools", "splat-transform", ran)
    monkeypatch.setenv("PATH", os.pathsep.join([".", str(tools.parent)]))
    assert splat_transform_command() == [str(tools)] and find_program("splat-transform", "x", "y") == str(tools)


@pytest.mark.slow
def test_a_model_that_is_not_finite_is_refused_where_it_is_loaded_and_never_written(tiny_scene, tmp_path):
    """A run whose checkpoint holds NaN (a valid checksum: a diverged run, not a tampered file) is refused by
    every command that loads it, in one line naming the tensor and the count; no export file is written. The
    writers themselves refuse Gaussians with NaN or inf too (a finite model can still bake to inf)."""
    from momentum_gs.export.splat import save_splat
    from momentum_gs.export.spz import save_spz
    from momentum_gs.export.standard_ply import save_standard_ply
    from momentum_gs.model.standard import StandardGaussians

    run = train_tiny(tiny_scene, tmp_path / "run")
    path = latest_checkpoint(run / "ckpt")
    ckpt = load_checkpoint(path)
    ckpt["blocks"][0]["anchors"]["features"][:3, 0] = float("nan")
    save_checkpoint(path, ckpt["step"], {k: v for k, v in ckpt.items() if k not in ("format", "version", "step")})
    for command in (["eval", str(run), "--no-images"], ["export", str(run)], ["export", str(run), "--format", "spz"],
                    ["render", str(run), "--path", "orbit", "--out", str(tmp_path / "orbit.mp4"), "--frames", "2"],
                    ["distill", str(run), "--out", str(tmp_path / "student")]):
        assert_one_line_error(mgs(*command), "blocks[0].anchors.features holds 3 NaN/inf of")
    assert not any(p.exists() for p in (run / "export", run / "eval", tmp_path / "orbit.mp4", tmp_path / "student"))

    n = 4
    gaussians = StandardGaussians(torch.zeros(n, 3), torch.tensor([[1.0, 0, 0, 0]] * n), torch.full((n, 3), 0.1),
                                  torch.full((n,), 0.5), torch.zeros(n, 1, 3))
    gaussians.scales[2, 1] = float("inf")
    for save, name in ((save_standard_ply, "a.ply"), (save_splat, "a.splat"), (save_spz, "a.spz")):
        with pytest.raises(UserError, match=f"to write to .*{name} is not finite: scales holds 1 NaN/inf of 12"):
            save(gaussians, tmp_path / name)
        assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_resuming_a_checkpoint_of_another_structure_is_one_line(trained, tmp_path):
    """A checkpoint (valid checksum) missing a section, a block missing its own, or holding a decoder of another
    shape: `--resume` says the file does not fit the run in one line, instead of a KeyError or a
    size-mismatch traceback."""
    changes = {
        "no weighting section": lambda ckpt: ckpt.pop("weighting"),
        "a block without its anchors": lambda ckpt: ckpt["blocks"][0].pop("anchors"),
        "a decoder of another shape": lambda ckpt: ckpt["decoder"].update(
            {name: torch.zeros(3, 3) for name in list(ckpt["decoder"])[:1]}),
    }
    for name, change in changes.items():
        run = copy_run(trained, tmp_path / name.replace(" ", "_"))
        path = latest_checkpoint(run / "ckpt")
        ckpt = load_checkpoint(path)
        change(ckpt)
        save_checkpoint(path, ckpt["step"], {k: v for k, v in ckpt.items() if k not in ("format", "version", "step")})
        cfg = load_config(run / "config.yaml", ["optim.steps=40", f"out={run}"])
        with pytest.raises(UserError, match=f"{path.name} does not fit this run .*; resume it with the config"):
            train(cfg, resume=True)
