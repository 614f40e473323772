"""The one switch of the CPU kernels: the config's ``render.kernels`` decides, ``MOMENTUM_GS_KERNELS`` overrides
it, the old ``MOMENTUM_GS_COMPOSITOR`` (fused meaning cpp) is still read, and a bad value is one line."""

from __future__ import annotations

import json

import pytest

from momentum_gs.config import load_config
from momentum_gs.errors import UserError
from momentum_gs.render import render
from momentum_gs.render.kernels import build
from tests.helpers.cli import assert_one_line_error, mgs
from tests.helpers.render_scenes import random_scene


@pytest.fixture
def switch(monkeypatch):
    """Neither variable set, the config setting "auto" (the default), and both restored after the test."""
    monkeypatch.delenv(build.KERNELS_VARIABLE, raising=False)
    monkeypatch.delenv(build.OLD_VARIABLE, raising=False)
    monkeypatch.setattr(build, "_configured", "auto")
    return monkeypatch


def test_the_config_key_is_typed_and_defaults_to_auto():
    assert load_config().render.kernels == "auto"
    assert load_config(overrides=["render.kernels=torch"]).render.kernels == "torch"
    with pytest.raises(UserError, match=r"^config key 'render.kernels' must be one of auto, cpp, torch, got 'fused'$"):
        load_config(overrides=["render.kernels=fused"])
    with pytest.raises(UserError, match=r"^config key 'render.kernels' must be one of auto, cpp, torch, got 'gpu'$"):
        build.use_kernels("gpu")  # a config made in code, not through load_config


def test_the_config_decides_and_the_variable_overrides_it(switch):
    assert build.kernels_mode() == "auto"
    build.use_kernels("torch")
    assert build.kernels_mode() == "torch"
    assert build.kernels_in_use() == "kernels: torch (render.kernels=torch)"
    switch.setenv(build.KERNELS_VARIABLE, "auto")
    assert build.kernels_mode() == "auto"
    switch.setenv(build.KERNELS_VARIABLE, " CPP ")  # read as the old one was: stripped, any case
    assert build.kernels_mode() == "cpp"
    switch.setenv(build.KERNELS_VARIABLE, "")  # empty is unset: the config decides again
    assert build.kernels_mode() == "torch"


def test_the_old_variable_is_an_alias(switch):
    build.use_kernels("torch")
    for old, mode in (("fused", "cpp"), ("torch", "torch"), ("auto", "auto")):
        switch.setenv(build.OLD_VARIABLE, old)
        assert build.kernels_mode() == mode, old
    switch.setenv(build.OLD_VARIABLE, "fused")
    switch.setenv(build.KERNELS_VARIABLE, "torch")  # both set: the new name wins
    assert build.kernels_mode() == "torch"
    assert build.kernels_in_use() == "kernels: torch (MOMENTUM_GS_KERNELS=torch)"
    switch.delenv(build.KERNELS_VARIABLE)
    switch.setenv(build.OLD_VARIABLE, "torch")
    assert build.kernels_in_use() == "kernels: torch (MOMENTUM_GS_COMPOSITOR=torch)"


@pytest.mark.parametrize("variable, expected", [
    ("MOMENTUM_GS_KERNELS", "MOMENTUM_GS_KERNELS='numba'; expected one of auto, cpp, torch"),
    ("MOMENTUM_GS_COMPOSITOR", "MOMENTUM_GS_COMPOSITOR='numba'; expected one of auto, fused, torch"),
    ("MOMENTUM_GS_KERNELS", "MOMENTUM_GS_KERNELS='fused'; expected one of auto, cpp, torch"),  # the old value
])
def test_a_bad_value_is_one_line_naming_the_variable(switch, variable, expected):
    value = expected.split("'")[1]
    switch.setenv(variable, value)
    other = build.OLD_VARIABLE if variable == build.KERNELS_VARIABLE else build.KERNELS_VARIABLE
    switch.setenv(other, "torch")  # a good value in the other variable does not hide it
    with pytest.raises(UserError) as error:
        build.kernels_mode()
    assert str(error.value) == expected and isinstance(error.value, ValueError)


def test_a_render_takes_the_kernels_the_config_names(switch):
    """The config's setting reaches the renderer: "torch" composites with the PyTorch ops, "cpp" does not."""
    from momentum_gs.render import composite

    calls = []
    weights = composite._weights
    switch.setattr(composite, "_weights", lambda *a, **k: calls.append(1) or weights(*a, **k))
    scene = random_scene(50, 16, 12, seed=2)
    modes = ("torch", "cpp") if build.build().ops is not None else ("torch",)
    for mode in modes:
        calls.clear()
        build.use_kernels(mode)
        render(**scene)
        assert bool(calls) == (mode == "torch"), mode


@pytest.mark.slow
def test_training_takes_the_config_value_and_the_variable_overrides_it(tiny_scene, tmp_path, monkeypatch):
    monkeypatch.delenv(build.OLD_VARIABLE, raising=False)
    monkeypatch.delenv(build.KERNELS_VARIABLE, raising=False)
    run = tmp_path / "r"
    done = mgs("train", "--data", str(tiny_scene), "--out", str(run), "optim.steps=2", "render.kernels=torch")
    assert done.returncode == 0, done.stderr
    assert "kernels: torch (render.kernels=torch)" in done.stdout.splitlines()
    assert json.loads((run / "summary.json").read_text())["compositor"] == "kernels: torch (render.kernels=torch)"
    monkeypatch.setenv(build.KERNELS_VARIABLE, "torch")
    done = mgs("train", "--data", str(tiny_scene), "--out", str(tmp_path / "s"), "optim.steps=2", "render.kernels=cpp")
    assert done.returncode == 0, done.stderr
    assert "kernels: torch (MOMENTUM_GS_KERNELS=torch)" in done.stdout.splitlines()


def test_bad_values_on_the_command_line_are_one_line(tiny_scene, tmp_path, monkeypatch):
    monkeypatch.delenv(build.OLD_VARIABLE, raising=False)
    train = ("train", "--data", str(tiny_scene), "--out", str(tmp_path / "r"), "optim.steps=2")
    assert_one_line_error(mgs(*train, "render.kernels=fused"),
                          "config key 'render.kernels' must be one of auto, cpp, torch, got 'fused'")
    monkeypatch.setenv(build.KERNELS_VARIABLE, "numba")
    assert_one_line_error(mgs(*train), "MOMENTUM_GS_KERNELS='numba'; expected one of auto, cpp, torch")
    assert not (tmp_path / "r").exists()


def test_a_command_that_reads_a_run_takes_its_kernels_and_threads(switch, tmp_path):
    """`mgs eval`, `view`, `export`... set the process as the run trained (``use_run_settings``); loading a run
    in code changes nothing."""
    import torch

    from momentum_gs.commands.common import use_run_settings
    from momentum_gs.config import save_config
    from momentum_gs.io.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    save_config(load_config(overrides=["render.kernels=torch", "threads=2", "device=cpu"]), run.config)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        use_run_settings(run.root)
        assert build.kernels_mode() == "torch" and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    switch.setattr(build, "_configured", "auto")
    use_run_settings(tmp_path / "not_a_run")  # no config.yaml: left to the reader to say
    assert build.kernels_mode() == "auto"
