"""The command line: one clear line and status 2 for bad input, never a traceback."""

import subprocess
import sys

import pytest


def mgs(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "momentum_gs.cli", *args], capture_output=True, text=True, cwd=cwd)


def _assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_scene(tmp_path):
    _assert_one_line_error(mgs("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")),
                           "nowhere")


def test_unknown_config_key(tiny_scene, tmp_path):
    result = mgs("train", "--data", str(tiny_scene), "--out", str(tmp_path / "r"), "optim.stepz=3")
    _assert_one_line_error(result, "unknown config key 'optim.stepz'")
    assert not (tmp_path / "r" / "ckpt").exists()


def test_eval_of_a_folder_that_is_not_a_run(tmp_path):
    _assert_one_line_error(mgs("eval", str(tmp_path)), "not a run folder")


def test_resume_without_a_run(tmp_path):
    _assert_one_line_error(mgs("train", "--resume", "--out", str(tmp_path / "r")), "cannot resume")


def test_train_eval_export_from_the_command_line(tiny_scene, tmp_path):
    run = tmp_path / "run"
    trained = mgs("train", "--data", str(tiny_scene), "--out", str(run), "optim.steps=4", "log.tensorboard=false",
                  "device=cpu")
    assert trained.returncode == 0, trained.stderr
    assert "trained 4 steps" in trained.stdout
    again = mgs("train", "--data", str(tiny_scene), "--out", str(run))
    _assert_one_line_error(again, "already holds a trained run")
    evaluated = mgs("eval", str(run), "--no-images")
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.strip().splitlines()[-1].endswith("results.json")
    exported = mgs("export", str(run))
    assert exported.returncode == 0 and (run / "export" / "point_cloud.ply").is_file()


@pytest.mark.parametrize("args", [("config", "model.nope=1"), ("synth", "x", "--preset", "huge")])
def test_other_bad_input(args, tmp_path):
    _assert_one_line_error(mgs(*args, cwd=tmp_path), "")
