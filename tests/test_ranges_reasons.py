"""Every numeric option of ``mgs`` and every config key says why its range is what it is: the reason follows the range in the one-line
refusal (what the number means, or that a larger value can only be a typing slip)."""

from __future__ import annotations

import argparse

import pytest

from momentum_gs.cli import _parser, main
from momentum_gs.config import RANGES, load_config
from momentum_gs.errors import UserError
from momentum_gs.ranges import DISTILL, MESH, Number


def _numbers(parser: argparse.ArgumentParser, path: str = "mgs"):
    """(command, action) for every option of every sub-command read by :class:`Number`, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numbers(sub, f"{path} {name}")
        elif isinstance(action.type, Number):
            yield path, action


def test_every_numeric_option_of_every_command_gives_a_reason():
    options = list(_numbers(_parser()))
    commands = {command for command, _ in options}
    assert len(options) >= 30 and {"mgs sfm", "mgs render", "mgs convert downsample", "mgs view"} <= commands
    silent = [f"{command} {action.option_strings[0]}" for command, action in options
              if len(action.type.allowed.why.strip()) < 20]
    assert not silent, f"numeric options without a reason for their range: {silent}"


@pytest.mark.parametrize("argv, fragment, reason", [
    (["render", "run", "--path", "orbit", "--out", "v.mp4", "--frames", "200000"],
     "argument --frames: must be in [2, 108000], got '200000'", "an hour of video at 30 fps"),
    (["render", "run", "--path", "orbit", "--out", "v.mp4", "--fps", "5000"], "argument --fps: must be in (0, 1000]",
     "no screen shows 1000 frames a second"),
    (["sfm", "photos", "--out", "s", "--max-size", "32"], "argument --max-size: must be in [64, 65536], got '32'",
     "SIFT feature's descriptor"),
    (["sfm", "photos", "--out", "s", "--threads", "100000"], "argument --threads: must be in [-1, 4096]",
     "more than any machine's cores"),
    (["sfm", "--video", "v.mp4", "--out", "s", "--fps", "2000"], "argument --fps: must be in (0, 1000]",
     "beyond any camera's"),
    (["convert", "downsample", "scene", "--factor", "100000"], "argument --factor: must be in [1, 65536]",
     "every image is less than a pixel"),
    (["export", "run", "--tile-size", "0"], "argument --tile-size: must be in [1, 16777216], got '0'",
     "at least one Gaussian"),
    (["view", "run", "--frame-time", "0"], "argument --frame-time: must be in [0.001, 60], got '0'",
     "a typing slip"),
    (["view", "run", "--port", "0"], "argument --port: must be in [1, 65535], got '0'", "a TCP port is 16 bits"),
    (["partition", "--data", "d", "--out", "p.npz", "--box", "0", "0", "0", "1e39", "1", "1"],
     "argument --box: must be in [-3.40282e+38, 3.40282e+38], got '1e39'", "float32"),
    (["mesh", "run", "--trunc", "0.25"], "argument --trunc: must be in [0.5, 1000], got '0.25'", "reaches neither"),
])
def test_an_option_out_of_range_says_why_in_one_line(argv, fragment, reason, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert reason in err.split(fragment, 1)[1], err  # the reason follows the range
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_every_config_key_and_setting_gives_a_reason():
    """The config keys' ranges and the ``mgs distill``/``mgs mesh`` settings' say why, as the options' do."""
    tables = {"config": RANGES, "distill": DISTILL, "mesh": MESH}
    silent = [f"{table} {key}" for table, ranges in tables.items() for key, allowed in ranges.items()
              if len(allowed.why.strip()) < 20]
    assert len(RANGES) > 60 and not silent, f"ranges without a reason: {silent}"


@pytest.mark.parametrize("override, fragment, reason", [
    ("optim.lambda_dssim=1.5", "must be in [0, 1], got 1.5", "one term's weight turns negative"),
    ("teacher.momentum=-0.1", "must be in [0, 1], got -0.1", "overshoots both and diverges"),
    ("model.feat_dim=100000", "must be in [1, 4096], got 100000", "16 KB an anchor"),
    ("render.background=[0, 2, 0]", "must be in [0, 1], got 2", "like the images'"),
    ("log.checkpoint_every=1e12", "must be in [0, 1000000000]", "runs stop at 10^9 steps"),
])
def test_a_config_key_out_of_range_says_why(override, fragment, reason):
    with pytest.raises(UserError) as caught:
        load_config(overrides=[override])
    message = str(caught.value)
    assert "\n" not in message and fragment in message and reason in message.split(fragment, 1)[1], message
