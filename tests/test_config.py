"""The typed config tree: files, dotted overrides, type checks, round trip."""

from pathlib import Path

import pytest

from momentum_gs.config import SHIPPED, Config, find_config, load_config, save_config, shipped_names, to_dict
from momentum_gs.errors import UserError


def test_defaults_match_spec():
    cfg = Config()
    assert cfg.model.feat_dim == 32 and cfg.model.n_offsets == 10
    assert cfg.optim.lambda_dssim == 0.2 and cfg.optim.lambda_scale == 0.01
    assert cfg.strategy.grad_threshold == 0.0002 and cfg.strategy.min_opacity == 0.005


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  steps: 100\n  feature_lr: 0.5\nseed: 3\n")
    cfg = load_config(path, ["optim.steps=7", "render.background=[1, 1, 1]", "log.tensorboard=false"])
    assert cfg.optim.steps == 7 and cfg.optim.feature_lr == 0.5 and cfg.seed == 3
    assert cfg.render.background == (1.0, 1.0, 1.0) and cfg.log.tensorboard is False


def test_the_old_backend_name_torch_is_read_as_builtin(tmp_path):
    """render.backend "torch" (the builtin rasterizer's old name) in a file or an override is "builtin", and the
    resolved config says "builtin"."""
    path = tmp_path / "old.yaml"
    path.write_text("render:\n  backend: torch\n")
    assert load_config(path).render.backend == "builtin"
    assert load_config(overrides=["render.backend=torch"]).render.backend == "builtin"
    save_config(load_config(path), tmp_path / "resolved.yaml")
    assert "backend: builtin" in (tmp_path / "resolved.yaml").read_text()
    assert "torch" not in (tmp_path / "resolved.yaml").read_text()
    with pytest.raises(UserError, match=r"^config key 'render.backend' must be one of auto, builtin, gsplat, got 'cpp'$"):
        load_config(overrides=["render.backend=cpp"])


def test_resolved_config_is_a_valid_config(tmp_path):
    cfg = load_config(overrides=["model.voxel_size=0.25", "data.path=/somewhere"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert to_dict(load_config(tmp_path / "resolved.yaml")) == to_dict(cfg)


@pytest.mark.parametrize("override, message", [
    ("optim.stepz=3", "unknown config key 'optim.stepz'"),
    ("nosection.x=1", "unknown config key 'nosection.x'"),
    ("optim.steps=many", "expects int"),
    ("optim.steps=1.5", "expects int"),
    ("log.tensorboard=maybe", "expects bool"),
    ("optim=3", "is a section"),
    ("steps", "must look like section.key=value"),
])
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_config(overrides=[override])


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    twice = tmp_path / "twice.yaml"  # PyYAML alone keeps the last value without a word
    twice.write_text("optim:\n  steps: 100\ndata:\n  downsample: 2\noptim:\n  steps: 200\n")
    with pytest.raises(UserError, match=r"twice.yaml is not valid YAML: key 'optim' is given twice \(line 5\)"):
        load_config(twice)
    nested = tmp_path / "nested.yaml"
    nested.write_text("optim:\n  steps: 100\n  steps: 200\n")
    with pytest.raises(UserError, match=r"key 'steps' is given twice \(line 3\)"):
        load_config(nested)
    same_name_elsewhere = tmp_path / "fine.yaml"  # one key name in two sections is not a repeat
    same_name_elsewhere.write_text("teacher:\n  enabled: false\nweighting:\n  enabled: true\n")
    loaded = load_config(same_name_elsewhere)
    assert loaded.teacher.enabled is False and loaded.weighting.enabled is True
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  featdim: 3\n")
    with pytest.raises(UserError, match="unknown config key 'model.featdim'"):
        load_config(unknown)


def test_a_config_is_a_path_or_the_name_of_a_shipped_one(tmp_path, monkeypatch):
    """``--config`` takes a file, or a shipped config's name with or without ``.yaml``, from any folder; a file
    of that name in the working folder wins; anything else is one line naming what is shipped."""
    monkeypatch.chdir(tmp_path)
    assert {"demo", "demo_single", "brighton_beach", "ablation/f_full8", "datasets/rubble"} <= set(shipped_names())
    for name in ("demo.yaml", "demo", "ablation/f_full8", "datasets/rubble.yaml"):
        assert find_config(name) == SHIPPED / (name if name.endswith(".yaml") else f"{name}.yaml")
    assert load_config("brighton_beach").optim.steps == load_config(SHIPPED / "brighton_beach.yaml").optim.steps
    (tmp_path / "demo.yaml").write_text("optim:\n  steps: 77\n")
    assert find_config("demo.yaml") == Path("demo.yaml") and load_config("demo.yaml").optim.steps == 77
    for wrong in ("nope", "ablation", "../configs/demo", str(tmp_path / "demo")):
        with pytest.raises(UserError, match=r"^config file not found: .*\(neither a file nor a shipped config: "
                                            r"brighton_beach, demo, demo_single, ablation/a_one_block, .*\)$"):
            find_config(wrong)


def test_deterministic_kernels_are_on_for_cpu_runs_unless_asked_otherwise(tmp_path):
    import torch

    from momentum_gs.train.seeding import deterministic_kernels

    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert load_config().deterministic == "auto"
    assert deterministic_kernels("auto", cpu) and not deterministic_kernels("auto", gpu)
    assert deterministic_kernels("true", gpu) and not deterministic_kernels("false", cpu)
    (tmp_path / "old.yaml").write_text("deterministic: true\n")  # a YAML bool, as older run folders saved it
    assert load_config(tmp_path / "old.yaml").deterministic == "true"
    assert load_config(overrides=["deterministic=False"]).deterministic == "false"
    with pytest.raises(UserError, match="'deterministic' must be one of auto, true, false, got 'sometimes'"):
        load_config(overrides=["deterministic=sometimes"])


def test_the_growth_schedule_follows_the_run_length_unless_set(tmp_path):
    """Scaffold-GS grows from step 1500 to 15000 of 30000 with statistics from 500: a 3000-step run gets
    150 to 1500 from 50; a key set in a file or an override stays as given; a saved run config reloads as is."""
    from momentum_gs.config import save_config

    default = load_config().strategy
    assert (default.start_stat, default.update_from, default.update_until) == (500, 1500, 15000)
    short = load_config(overrides=["optim.steps=3000"])
    assert (short.strategy.start_stat, short.strategy.update_from, short.strategy.update_until) == (50, 150, 1500)
    assert short.strategy.update_interval == 100  # a window of views, not a share of the run
    (tmp_path / "c.yaml").write_text("optim:\n  steps: 6000\nstrategy:\n  update_until: 4000\n")
    mixed = load_config(tmp_path / "c.yaml", ["strategy.update_from=10"])
    assert (mixed.strategy.start_stat, mixed.strategy.update_from, mixed.strategy.update_until) == (100, 10, 4000)
    save_config(mixed, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml", ["optim.steps=9000"])  # a resume that lengthens the run
    assert (again.strategy.start_stat, again.strategy.update_from, again.strategy.update_until) == (100, 10, 4000)


def test_a_schedule_past_the_end_of_a_cut_run_is_said_with_the_value_to_give():
    """brighton_beach.yaml grows until step 1500 of 2000: cut to 1200 steps, growth would never settle."""
    from momentum_gs.config import schedule_warnings

    config = SHIPPED / "brighton_beach.yaml"
    assert schedule_warnings(load_config(config)) == []
    (line,) = schedule_warnings(load_config(config, ["optim.steps=1200"]))
    assert line.startswith("strategy.update_until=1500 is past the run's last step (optim.steps=1200)")
    assert line.endswith("give strategy.update_until=600")
    assert schedule_warnings(load_config(config, ["optim.steps=1200", "strategy.update_until=600"])) == []
    assert [line.split("=")[0] for line in schedule_warnings(load_config(None, ["optim.steps=300"]))] == \
        ["optim.lr_max_steps"]  # the block weighting is off by default: its warm-up schedules nothing
    lines = schedule_warnings(load_config(None, ["optim.steps=3000", "weighting.enabled=true",
                                                 "weighting.warmup=5000"]))
    assert [line.split("=")[0] for line in lines] == ["optim.lr_max_steps", "weighting.warmup"]
    assert lines[0].endswith("optim.lr_max_steps=0") and lines[1].endswith("weighting.warmup=100")


def test_the_maps_geometry_preset_fills_only_the_keys_not_given(tmp_path):
    assert load_config().geometry.lambda_sparse_depth == 0.0  # "none": the reference method
    assert load_config(overrides=["geometry.preset=maps"]).geometry.lambda_sparse_depth == 0.2
    assert load_config().model.voxel_max_footprints == 0.0
    assert load_config(overrides=["geometry.preset=maps"]).model.voxel_max_footprints == 6.0
    geometry = load_config(overrides=["geometry.preset=maps"]).geometry
    assert (geometry.lambda_multiview, geometry.multiview_every) == (0.15, 3)
    assert load_config(overrides=["geometry.preset=maps", "geometry.lambda_multiview=0"]).geometry.lambda_multiview == 0
    given = load_config(overrides=["geometry.preset=maps", "geometry.lambda_sparse_depth=0"])
    assert given.geometry.lambda_sparse_depth == 0.0  # a key given wins, in either order
    given = load_config(overrides=["geometry.lambda_sparse_depth=0.5", "geometry.preset=maps"])
    assert given.geometry.lambda_sparse_depth == 0.5
    path = tmp_path / "maps.yaml"
    path.write_text("geometry:\n  preset: maps\n")
    cfg = load_config(path)
    assert cfg.geometry.lambda_sparse_depth == 0.2
    save_config(cfg, tmp_path / "saved.yaml")  # a run's config.yaml reads back the same
    assert load_config(tmp_path / "saved.yaml").geometry == cfg.geometry
    with pytest.raises(UserError, match="one of none, maps"):
        load_config(overrides=["geometry.preset=map"])
