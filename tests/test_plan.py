"""The plan `mgs train` says before its first step, and ``--time``: a budget turned into steps and schedules."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from momentum_gs.config import load_config, schedule_warnings
from momentum_gs.config.load import INTERVAL_KEYS, SCHEDULE_KEYS
from momentum_gs.data.scene import load_scene
from momentum_gs.io.checkpoint import load_checkpoint
from momentum_gs.train import plan as P
from momentum_gs.train.run import train
from tests.helpers.tiny_training import TINY_OVERRIDES


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45),
                                           ("1.5h", 5400), ("10min", 600)])
def test_durations_read_as_people_write_them(text, seconds):
    assert P.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0s", "5x", "m", "1e9h"])
def test_a_duration_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError):
        P.parse_duration(text)


def test_a_bad_time_is_one_line_from_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "train", "--data", str(tmp_path), "--time", "soon"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "'soon' is not a duration" in result.stderr


@pytest.mark.parametrize("config, steps", [(None, 500), ("brighton_beach", 300), ("demo", 90)])
def test_every_schedule_keeps_its_share_of_a_fitted_run(config, steps):
    cfg = load_config(config)
    before = {key: P.setting(cfg, key) for key in (*SCHEDULE_KEYS, *INTERVAL_KEYS)}
    old = cfg.optim.steps
    P.fit_to_steps(cfg, steps)
    assert cfg.optim.steps == steps and schedule_warnings(cfg) == []
    for key, value in before.items():
        now = P.setting(cfg, key)
        assert now == 0 if value == 0 else abs(now - value * steps / old) <= 1, key
    assert cfg.strategy.update_until - cfg.strategy.update_from >= 2 * cfg.strategy.update_interval


def test_the_plan_says_the_size_the_photos_were_shrunk_from_and_what_shortens_a_long_run(tiny_scene):
    cfg = load_config(overrides=["device=cpu"])
    cfg.data.path = str(tiny_scene)
    scene = load_scene(cfg.data)
    width = scene.train[0].width
    scene.source_size = (width * 25, scene.train[0].height * 25)  # as if the photos were 25× wider
    cfg.data.max_width = width
    probe = P.Probe(seconds_per_step=0.5, steps=10, peak_bytes=2**30, blocks=1, total_steps=30000)
    lines = P.plan_lines(cfg, scene, 30000, 1, "2 threads", probe, cache_bytes=2**30)
    assert f"from {width * 25}×" in lines[0] and f"data.max_width={width}" in lines[0] and "30000 steps" in lines[0]
    assert "about 5 h 38 min" in lines[1] and "2.0 GiB" in lines[1]  # 0.5 s × 1.35 × 30000
    assert "--time 30m" in lines[2] and "optim.steps=7500" in lines[2]
    quick = P.Probe(seconds_per_step=0.01, steps=10, peak_bytes=None, blocks=1, total_steps=30000)
    assert len(P.plan_lines(cfg, scene, 30000, 1, "2 threads", quick, 0)) == 2  # under an hour: no advice


def test_a_budget_too_short_for_any_training_is_refused_in_one_line(tiny_scene):
    cfg = load_config(overrides=TINY_OVERRIDES)
    cfg.data.path = str(tiny_scene)
    scene = load_scene(cfg.data)
    slow = P.Probe(seconds_per_step=1.0, steps=5, peak_bytes=None, blocks=1, total_steps=24)
    from momentum_gs.errors import UserError

    with pytest.raises(UserError, match=r"leaves time for 2 steps at 1 s a step; give more time \(about 37 s for 24 steps\)"):
        P.fit_to_budget(cfg, scene, torch.device("cpu"), P.D.SINGLE, slow, time.time() + 5, 5.0)


def test_the_probe_changes_no_bit_of_the_run(tiny_scene, tmp_path):
    def run(folder: Path, plan: bool) -> dict:
        cfg = load_config(overrides=TINY_OVERRIDES)
        cfg.data.path, cfg.out = str(tiny_scene), str(folder)
        train(cfg, plan=plan)
        return load_checkpoint(folder / "ckpt" / "step_24.pt", map_location="cpu")

    with_probe, without = run(tmp_path / "probed", True), run(tmp_path / "plain", False)
    for name, value in without["decoder"].items():
        assert torch.equal(value, with_probe["decoder"][name]), name
    for key, value in without["blocks"][0].items():
        if torch.is_tensor(value):
            assert torch.equal(value, with_probe["blocks"][0][key]), key


@pytest.mark.slow
@pytest.mark.clock
def test_a_60_s_budget_ends_near_60_s_with_every_schedule_inside_and_the_plan_near_the_truth(tiny_scene, tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "train", "--data", str(tiny_scene), "--out",
                             str(tmp_path / "run"), "--time", "60s", "log.tensorboard=false", "device=cpu"],
                            capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    # the budget counts from the command's start; the reserve and the pace's spread leave it within a tenth or so
    assert 50 <= wall <= 75, (wall, result.stdout)
    fitted = load_config(tmp_path / "run" / "config.yaml")
    assert schedule_warnings(fitted) == [] and fitted.optim.steps < 30000
    assert fitted.strategy.update_until < fitted.optim.steps and fitted.optim.lr_max_steps <= fitted.optim.steps
    said = re.search(r"plan: about (\d+) s", result.stdout)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert said and 1 / 1.5 <= int(said.group(1)) / summary["seconds"] <= 1.5, (said, summary["seconds"])
    assert summary["budget_s"] == 60 and "against a budget of 60 s" in result.stdout
    assert summary["replanned"]["times"] >= 1 and "planned again from step" in result.stdout  # tests/test_replan.py
