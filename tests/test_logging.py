"""What a run records: TensorBoard scalars and images, Weights & Biases offline, or neither."""

import sys
import types
from pathlib import Path

import pytest
import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.train.trainer import Trainer

pytestmark = pytest.mark.slow  # each test trains the tiny scene


@pytest.fixture
def logged_config(tiny_config, tmp_path):
    """2 blocks, both active, block weighting on, an image every 4 steps, 8 steps."""
    from momentum_gs.partition import auto_partition

    auto_partition(load_scene(tiny_config.data), 2).save(tmp_path / "partition.npz")
    cfg = tiny_config
    cfg.blocks.partition, cfg.blocks.active, cfg.optim.steps = str(tmp_path / "partition.npz"), 2, 8
    cfg.weighting.enabled, cfg.weighting.eval_interval, cfg.weighting.val_every = True, 4, 3
    cfg.log.progress_every, cfg.log.image_every = 2, 4
    return cfg


def _train(cfg) -> Path:
    Trainer(cfg, load_scene(cfg.data), Path(cfg.out), torch.device("cpu")).train()
    return Path(cfg.out)


def test_tensorboard_gets_losses_blocks_learning_rates_and_views(logged_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged_config.log.tensorboard = True
    events = EventAccumulator(str(_train(logged_config) / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/psnr", "lr/mlp_opacity", "lr/offset", "blocks/0/anchors", "blocks/1/anchors",
                "blocks/0/psnr", "blocks/1/ssim", "blocks/1/weight"):
        assert tag in scalars, tag
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert [e.step for e in events.Scalars("blocks/0/psnr")] == [4, 8]
    lrs = [e.value for e in events.Scalars("lr/mlp_opacity")]
    assert lrs[0] > lrs[-1]  # the decay shows
    assert "views/block0" in events.Tags()["images"]
    image = events.Images("views/block0")[0]
    camera = load_scene(logged_config.data).train[0]
    assert (image.width, image.height) == (2 * camera.width, camera.height)  # render | ground truth
    assert [e.step for e in events.Images("views/block0")] == [4, 8]


def test_a_run_shorter_than_the_image_interval_logs_its_last_step(logged_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged_config.log.tensorboard, logged_config.log.image_every = True, 1000
    events = EventAccumulator(str(_train(logged_config) / "tb"))
    events.Reload()
    assert [e.step for e in events.Images("views/block0")] == [8]


def test_wandb_logs_offline_into_the_run_folder(logged_config, monkeypatch):
    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self):
            calls["finish"] += 1

    def init(**kwargs):
        calls["init"].append(kwargs)
        return Run()

    fake = types.SimpleNamespace(init=init, Image=lambda pixels: ("image", pixels.shape),
                                 util=types.SimpleNamespace(generate_id=lambda: "abc123"))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logged_config.log.wandb = True
    out = _train(logged_config)
    (kwargs,) = calls["init"]
    assert kwargs["mode"] == "offline" and kwargs["dir"] == str(out) and kwargs["id"] == "abc123"
    assert kwargs["config"]["blocks"]["active"] == 2 and calls["finish"] == 1
    logged = {key for _, values in calls["log"] for key in values}
    assert {"train/loss", "lr/offset", "blocks/0/weight", "views/block0"} <= logged
    assert (out / "wandb" / "run_id").read_text() == "abc123"  # a resumed run continues the same W&B run


def test_logging_off_writes_neither(logged_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # would fail if anything imported it
    out = _train(logged_config)  # tiny_config has tensorboard off
    assert not (out / "tb").exists() and not (out / "wandb").exists() and (out / "train.log").is_file()
    logged_config.log.wandb = True
    logged_config.out = str(out.parent / "second")
    with pytest.raises(UserError, match="pip install wandb"):
        _train(logged_config)
