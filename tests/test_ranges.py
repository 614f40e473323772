"""Every number ``mgs`` reads, on its command lines and in its configs, is checked against one range table."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import get_args, get_origin, get_type_hints

import pytest

from momentum_gs.cli import _parser, main
from momentum_gs.config import RANGES, Config, load_config
from momentum_gs.errors import UserError
from momentum_gs.ranges import DISTILL, MESH, Number, Range, check_settings

BAD_TEXTS = ("nan", "NaN", "inf", "-inf", "-1", "1e30", str(10**30), "-" + str(10**30))


def _numeric_options(parser: argparse.ArgumentParser, path: str = "mgs"):
    """(command, its parser, action) for every option of every sub-command, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_options(sub, f"{path} {name}")
        elif action.type is not None:
            yield path, parser, action


def _accepts(parser: argparse.ArgumentParser, action: argparse.Action, text: str) -> bool:
    try:
        parser._get_value(action, text)  # argparse's own conversion: the type, then its error handling
    except argparse.ArgumentError:
        return False
    return True


def _expected(number: Number, text: str) -> bool:
    """Whether ``text`` should pass, worked out from the range's bounds without Number's own code."""
    try:
        value = number.kind(text)
    except ValueError:
        return False
    if not math.isfinite(value):
        return False
    low, high = number.allowed.low, number.allowed.high
    return (low is None or value > low or (value == low and not number.allowed.open_low)) and \
        (high is None or value < high or (value == high and not number.allowed.open_high))


def test_every_numeric_option_of_every_command_is_checked_and_says_its_range():
    options = list(_numeric_options(_parser()))
    assert len(options) > 20  # the walk found the sub-commands
    checked = 0
    for command, parser, action in options:
        if action.type in (int, float):
            assert action.choices, f"{command} {action.option_strings}: a number read without a range"
            continue
        if not isinstance(action.type, Number):
            continue
        checked += 1
        number = action.type
        assert f"(allowed: {'whole number' if number.kind is int else 'number'} {number.allowed})" in action.help
        assert "allowed: " in " ".join(parser.format_help().split())  # --help shows it
        if number.kind is int:  # every whole number has an upper bound: no 10**30 steps, seeds or blocks
            assert number.allowed.high is not None, f"{command} {action.option_strings}"
        for text in BAD_TEXTS + ("0", "0.5", "1", "3"):
            assert _accepts(parser, action, text) == _expected(number, text), (command, action.option_strings, text)
        for text in ("nan", "inf", "-inf", str(10**30) if number.kind is int else "nan"):
            assert not _accepts(parser, action, text), (command, action.option_strings, text)
    assert checked >= 20


@pytest.mark.parametrize("argv, fragment", [
    (["distill", "run", "--lambda-distill", "nan"], "argument --lambda-distill: must be in [0, 16777216], got 'nan'"),
    (["distill", "run", "--lambda-distill", "-1"], "--lambda-distill: must be in [0, 16777216], got '-1'"),
    (["distill", "run", "--lambda-structure", "inf"], "--lambda-structure: must be in [0, 16777216], got 'inf'"),
    (["distill", "run", "--seed", "-1"], "argument --seed: must be in [0, 4294967295], got '-1'"),
    (["distill", "run", "--steps", "0"], "argument --steps: must be in [1, 1000000000], got '0' (at least one step"),
    (["distill", "run", "--seed", str(2**32)], "argument --seed: must be in [0, 4294967295], got '4294967296'"),
    (["partition", "--data", "d", "--out", "p.npz", "--margin", "-1"], "--margin: must be in [0, 1], got '-1'"),
    (["partition", "--data", "d", "--out", "p.npz", "--coverage", "nan"], "argument --coverage: must be in [0, 1]"),
    (["partition", "--data", "d", "--out", "p.npz", "--grid", "2", "2", "1e3"], "expects a whole number, got '1e3'"),
    (["render", "run", "--path", "orbit", "--out", "v.mp4", "--fps", "0"], "argument --fps: must be in (0, 1000]"),
    (["convert", "downsample", "scene", "--factor", "0"], "argument --factor: must be in [1, 65536], got '0'"),
    (["train", "--data", "d", "optim.steps=1e30"], "'optim.steps' must be in [1, 1000000000]"),
    (["train", "--data", "d", f"seed={2**32}"], "'seed' must be in [0, 4294967295], got 4294967296"),
    (["config", "partition.grid=[2, 2, -1]"], "each item of config key 'partition.grid' must be in [0, 65536], got -1"),
])
def test_a_number_out_of_range_is_one_line_before_anything_runs(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        status = main(argv)
        raise SystemExit(status)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("argv, fragment", [
    (["synth", "--out", "city"], "mgs synth: unrecognized arguments: --out (see mgs synth --help)"),
    (["train", "--data", "d", "--outt", "r"], "mgs train: unrecognized arguments: --outt (see mgs train --help)"),
])
def test_an_unknown_option_names_its_sub_commands_help(argv, fragment, capsys, tmp_path, monkeypatch):
    """argparse says unknown options from the top parser (``see mgs --help``); the sub-command's own help is the
    one that lists what it takes."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {fragment}"
    assert list(tmp_path.iterdir()) == []


def _numeric_keys(node, prefix=""):
    hints = get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _numeric_keys(value, f"{prefix}{f.name}.")
        elif hints[f.name] in (int, float) or (get_origin(hints[f.name]) is tuple
                                               and get_args(hints[f.name])[0] in (int, float)):
            yield f"{prefix}{f.name}", hints[f.name], value


def test_every_numeric_config_key_has_a_range_and_refuses_nan_inf_negative_and_huge():
    keys = list(_numeric_keys(Config()))
    assert len(keys) > 60
    for key, type_, default in keys:
        assert key in RANGES, f"config key {key} has no range"
        allowed = RANGES[key]
        assert allowed.holds(default[0] if isinstance(default, tuple) else default), key  # the default is allowed
        item = get_args(type_)[0] if isinstance(default, tuple) else type_
        if item is int:
            assert allowed.high is not None, key
        for text in (".nan", ".inf", "-.inf", "-1", "1e30", str(10**30)):
            value = f"[{', '.join([text] * len(default))}]" if isinstance(default, tuple) else text
            number = float(text.replace(".nan", "nan").replace(".inf", "inf"))
            should_pass = allowed.holds(number) and (item is float or number.is_integer())
            if should_pass:
                load_config(overrides=[f"{key}={value}"])
            else:
                with pytest.raises(UserError, match=key.replace(".", r"\.")):
                    load_config(overrides=[f"{key}={value}"])


def test_the_settings_tables_check_the_python_api_too():
    from momentum_gs.mesh.settings import MeshSettings
    from momentum_gs.export.distill import DistillConfig

    for name, bad in (("lambda_structure", math.nan), ("lambda_distill", -1.0), ("seed", 2**32), ("dropout", 1.0),
                      ("noise", math.inf)):
        with pytest.raises(UserError, match=name.replace("_", "-") if name != "dropout" else "dropout"):
            DistillConfig(**{name: bad}).check()
    DistillConfig().check()
    assert set(DISTILL) <= {f.name for f in dataclasses.fields(DistillConfig)}
    assert set(MESH) <= {f.name for f in dataclasses.fields(MeshSettings)}
    with pytest.raises(UserError, match="--trunc must be in"):
        check_settings(MeshSettings(trunc_voxels=math.nan), MESH, {"trunc_voxels": "--trunc"})
    check_settings(MeshSettings(), MESH, {})  # voxel None: worked out later


def test_a_range_says_what_it_allows():
    assert str(Range(0, 1, open_low=True)) == "in (0, 1]" and str(Range(0)) == ">= 0"
    assert str(Range(0, 2**32 - 1)) == "in [0, 4294967295]" and str(Range()) == "finite"
    assert str(Range(0.5, 1000)) == "in [0.5, 1000]"
    assert not Range().holds(math.nan) and not Range(0).holds(math.inf) and Range(0, 1).holds(1)
