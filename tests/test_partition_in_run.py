"""A run keeps the partition it trains with: a partition file from another folder is copied into the run folder
at the start, and the checkpoints name the copy relative to the run, so a moved or copied run still loads and
resumes when the original file is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from momentum_gs.train.request import TrainRequest
from momentum_gs.train.start import train_request
from momentum_gs.config import load_config
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import latest_checkpoint, load_checkpoint
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.partition import auto_partition
from momentum_gs.train.run import keep_partition_in_run, train
from momentum_gs.trained import load_run
from tests.helpers.tiny_training import train_two_blocks


@pytest.mark.slow
def test_a_moved_run_loads_and_resumes_without_the_partition_it_was_given(tiny_scene, tmp_path):
    run, _ = train_two_blocks(tiny_scene, tmp_path / "first")
    given = tmp_path / "first" / "partition.npz"
    ckpt = load_checkpoint(latest_checkpoint(run / "ckpt"))
    assert ckpt["partition_in_run"] == "partition.npz" and Path(ckpt["partition"]) == (run / "partition.npz").resolve()
    assert (run / "partition.npz").read_bytes() == given.read_bytes()
    moved = Path(shutil.move(run, tmp_path / "moved"))
    given.unlink()
    cfg, _, step = load_run(moved, torch.device("cpu"))
    assert Path(cfg.blocks.partition) == moved / "partition.npz" and step == ckpt["step"]
    summary = train_request(TrainRequest(out=str(moved), overrides=("optim.steps=26",), resume=True))
    assert summary["steps"] > step and not run.exists()
    assert load_checkpoint(latest_checkpoint(moved / "ckpt"))["partition_in_run"] == "partition.npz"


def test_a_run_refuses_a_partition_other_than_the_one_it_keeps(tmp_path):
    folder, cfg = RunFolder(tmp_path / "run"), load_config()
    (tmp_path / "a.npz").write_bytes(b"one")
    (tmp_path / "b.npz").write_bytes(b"two")
    cfg.blocks.partition = str(tmp_path / "a.npz")
    assert keep_partition_in_run(cfg, folder) and cfg.blocks.partition == str(folder.partition.resolve())
    assert not keep_partition_in_run(cfg, folder)  # the run's own: nothing to copy
    cfg.blocks.partition = str(tmp_path / "a.npz")
    assert not keep_partition_in_run(cfg, folder)  # the same content already there
    cfg.blocks.partition = str(tmp_path / "b.npz")
    with pytest.raises(UserError, match=r"run/partition.npz holds another partition than blocks.partition=.*b.npz"):
        keep_partition_in_run(cfg, folder)
    assert folder.partition.read_bytes() == b"one" and sorted(p.name for p in folder.root.iterdir()) == [
        "partition.npz"]  # no temporary left


def test_a_start_that_fails_leaves_no_copy_of_the_partition(tiny_config, tmp_path):
    auto_partition(load_scene(tiny_config.data), 2).save(tmp_path / "partition.npz")
    tiny_config.blocks.partition, tiny_config.model.voxel_size = str(tmp_path / "partition.npz"), 1e6
    with pytest.raises(UserError, match="scene's extent"):
        train(tiny_config)
    assert not Path(tiny_config.out).exists()
