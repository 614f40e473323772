"""The bounds of the numbers come from what they mean: float32's range for lengths, log-scales and depths, the
gradients growing can see, a margin that keeps blocks parts of the scene, and the scene's own extent and
coordinates once it is read; each refusal says that reason."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from momentum_gs.cli import main
from momentum_gs.config import Config, check_anchor_grid, check_scene_scale, load_config
from momentum_gs.errors import UserError
from momentum_gs.mesh import extract
from momentum_gs.mesh.settings import MeshSettings
from momentum_gs.ranges import FLOAT32_MAX, FLOAT32_TINY, LOG_SCALE, MAX_NDC_GRADIENT, Range, check_number
from tests.helpers.tiny_training import TINY_OVERRIDES


def _refused(override: str) -> str:
    with pytest.raises(UserError) as caught:
        load_config(overrides=[override])
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    return message


def test_the_float32_bounds_are_numpys():
    assert FLOAT32_MAX == float(np.finfo(np.float32).max) and FLOAT32_TINY == float(np.finfo(np.float32).tiny)


def test_a_huge_voxel_is_refused_for_float32_before_anything_is_read():
    assert "float32" in _refused("model.voxel_size=1e300")
    assert "smallest normal" in _refused("model.voxel_size=1e-40")
    load_config(overrides=["model.voxel_size=0"])  # automatic
    load_config(overrides=["model.voxel_size=0.0001"])  # the paper's scenes: every point its own anchor


def test_a_voxel_as_large_as_the_scene_is_refused_with_its_extent():
    cfg = load_config(overrides=["model.voxel_size=1e6"])
    points = np.random.default_rng(0).uniform(-50, 50, (200, 3))
    with pytest.raises(UserError, match=r"at least the scene's extent \(\d+\.?\d* world units"):
        check_scene_scale(cfg, points, np.zeros((1, 3)))
    check_scene_scale(load_config(overrides=["model.voxel_size=1"]), points, np.zeros((1, 3)))


def test_a_voxel_too_fine_for_64_bit_cells_is_refused():
    points = np.random.default_rng(0).uniform(-50, 50, (200, 3))
    with pytest.raises(UserError, match="cannot be numbered in 64 bits"):
        check_scene_scale(load_config(overrides=["model.voxel_size=1e-20"]), points, np.zeros((1, 3)))
    cfg = load_config(overrides=["model.voxel_size=1e-10", "strategy.levels=8", "strategy.hierarchy_factor=1024"])
    with pytest.raises(UserError, match="growing's finest cell"):
        check_scene_scale(cfg, points, np.zeros((1, 3)))


@pytest.mark.parametrize("value", ["1e300", "-1e300", "45", "-44"])
def test_a_child_log_scale_clamp_outside_float32_is_refused(value):
    assert "finite float32" in _refused(f"strategy.max_child_log_scale={value}")


def test_the_log_scale_bounds_render_in_float32():
    for bound in (LOG_SCALE.low, LOG_SCALE.high):
        squared = torch.exp(torch.tensor(2 * bound, dtype=torch.float32))
        assert torch.isfinite(squared) and squared >= FLOAT32_TINY * 0.999
        load_config(overrides=[f"strategy.max_child_log_scale={bound * 0.999}"])
    assert not torch.isfinite(torch.exp(torch.tensor(2 * (LOG_SCALE.high + 0.01), dtype=torch.float32)))


def test_a_gradient_threshold_out_of_reach_is_refused():
    message = _refused("strategy.grad_threshold=1e300")
    assert "never grow" in message and f"(0, {MAX_NDC_GRADIENT:g}]" in message
    assert "from level 16 on" in _refused("strategy.levels=30")  # 0.0002 x 2^16 > 10
    load_config(overrides=["strategy.levels=16"])


def test_a_pruning_bound_no_anchor_can_pass_is_refused():
    assert "every anchor would be pruned" in _refused("strategy.min_opacity=10")  # 10 children, each below 1
    load_config(overrides=["strategy.min_opacity=9.5"])


def test_a_huge_near_plane_is_refused_for_float32():
    message = _refused("render.near=1e300")
    assert "float32's largest number" in message and "smaller units" not in message


def test_a_near_plane_beyond_every_point_says_every_anchor_is_culled():
    points = np.random.default_rng(0).uniform(-5, 5, (100, 3))
    centres = np.array([[0.0, 0.0, 20.0], [10.0, 0.0, 20.0]])
    with pytest.raises(UserError, match="every anchor would be culled"):
        check_scene_scale(load_config(overrides=["render.near=1000"]), points, centres)
    check_scene_scale(load_config(overrides=["render.near=20"]), points, centres)  # the far points stay


def test_training_refuses_a_voxel_or_near_plane_the_scene_cannot_use(tiny_config, capsys):
    from momentum_gs.train.run import train

    for key, value, fragment in (("voxel_size", 1e6, "scene's extent"), ("near", 1e6, "every anchor would be culled")):
        cfg = load_config(overrides=[f"{'model' if key == 'voxel_size' else 'render'}.{key}={value}"])
        cfg.data, cfg.out, cfg.optim, cfg.device = tiny_config.data, tiny_config.out, tiny_config.optim, "cpu"
        with pytest.raises(UserError, match=fragment):
            train(cfg)
        assert "smaller units" not in capsys.readouterr().err  # not the warning about the model's units
        assert not (Path(cfg.out) / "ckpt").exists()


def test_a_margin_is_a_fraction_of_a_cell(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["partition", "--data", "d", "--out", "p.npz", "--margin", "1e300"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --margin: must be in [0, 1], got '1e300'" in err
    assert "neighbours' whole cells" in err and list(tmp_path.iterdir()) == []
    assert "'partition.margin' must be in [0, 1]" in _refused("partition.margin=2")


def test_a_mesh_voxel_too_fine_says_the_grid_is_too_large_not_empty():
    model = SimpleNamespace(anchors=SimpleNamespace(positions=torch.tensor([[0.0, 0, 0], [10, 10, 2], [5, 5, 1]])))
    with pytest.raises(UserError, match=r"voxel 1e-300 makes a grid of inf points") as caught:
        extract._scene_grid(model, None, MeshSettings(voxel=1e-300, region_percentile=0.0))
    assert "empty" not in str(caught.value)
    with pytest.raises(UserError, match="makes a grid of"):
        extract._scene_grid(model, None, MeshSettings(voxel=1e-4, region_percentile=0.0))
    assert extract._scene_grid(model, None, MeshSettings(voxel=0.5, region_percentile=0.0)).dims.tolist() == [23, 23, 7]


def test_a_range_gives_its_reason():
    assert check_number(2.0, Range(0, 1, why="a fraction")) == "must be in [0, 1], got 2.0 (a fraction)"
    assert check_number(10**400, Range(0, 1)).startswith("must be in [0, 1], got 1000")  # no OverflowError
    assert check_number(10**400, Range(0, 1)).endswith("...") and len(check_number(10**400, Range(0, 1))) < 100
    assert check_number(1 << 20000, Range(0, 1)) == "must be in [0, 1], got an integer of 20001 bits"
    assert str(Range(0, FLOAT32_MAX)) == "in [0, 3.40282e+38]"
    assert Config().strategy.max_child_log_scale < LOG_SCALE.high and math.isfinite(LOG_SCALE.low)


def test_an_automatic_voxel_is_checked_once_the_points_give_it():
    points = np.random.default_rng(0).uniform(-50, 50, (200, 3))
    cfg = load_config(overrides=["strategy.levels=8", "strategy.hierarchy_factor=1024"])  # voxel_size=0: automatic
    check_scene_scale(cfg, points, np.zeros((1, 3)))  # the voxel is not known yet
    with pytest.raises(UserError, match=r"growing's finest cell 2\^-\d+ world units, too fine to number in 64 bits"):
        check_anchor_grid(cfg, 5.0, points, block=1)
    with pytest.raises(UserError, match=r"the automatic voxel size of block 0 \(model.voxel_size=0: its points' "
                                        r"spacing\) is 200, at least block 0's extent"):
        check_anchor_grid(load_config(), 200.0, points, block=0)
    check_anchor_grid(load_config(), 5.0, points, block=0)


def test_training_refuses_growing_too_fine_for_the_automatic_voxel_in_one_line(tiny_scene, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_scene), "--out", str(run), *TINY_OVERRIDES, "strategy.levels=8",
                 "strategy.hierarchy_factor=1024"]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1, captured.err  # no warning before it
    assert captured.err.startswith("error: config keys 'strategy.levels' (8) and 'strategy.hierarchy_factor' (1024) "
                                   "make growing's finest cell") and "too fine to number in 64 bits" in captured.err
    assert not run.exists()  # nothing trained, nothing left


@pytest.mark.parametrize("shape", [["--grid", "2", "1", "1"], ["--grid", "2", "2", "1"], ["--blocks", "2"]])
def test_a_margin_that_makes_every_block_the_whole_scene_is_refused(shape, tiny_scene, tmp_path, capsys):
    out = tmp_path / "p.npz"
    assert main(["partition", "--data", str(tiny_scene), "--out", str(out), *shape, "--margin", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: with a margin of 1 (a fraction of a cell's size, on "
                                                         "each side) every block of the "), err
    assert re.search(r"grid starts from all \d+ SfM points: the blocks are copies of the whole scene, not parts", err)
    assert not out.exists()
    assert main(["partition", "--data", str(tiny_scene), "--out", str(out), *shape, "--margin", "0.5"]) == 0
