"""``mgs train`` on a CPU with several active blocks: how many processes it starts, that they train like one
process, and that a failed one is said in a line and stops the others."""

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from momentum_gs.config import load_config, save_config
from momentum_gs.data import images
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import load_checkpoint
from momentum_gs.partition import auto_partition
from momentum_gs.train import launch
from momentum_gs.train.trainer import Trainer
from tests.helpers import processes
from tests.helpers.tiny_training import TINY_OVERRIDES


@pytest.fixture
def two_blocks(tiny_scene, tmp_path):
    """The tiny config with a 2-block partition, 2 active blocks."""
    cfg = load_config(overrides=TINY_OVERRIDES)
    cfg.data.path, cfg.out = str(tiny_scene), str(tmp_path / "run")
    auto_partition(load_scene(cfg.data), 2).save(tmp_path / "partition.npz")
    cfg.blocks.partition, cfg.blocks.active = str(tmp_path / "partition.npz"), 2
    return cfg


@pytest.fixture
def cores(monkeypatch):
    """Set the physical cores :func:`~momentum_gs.config.device.cores` reports."""
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)

    def set_cores(count: int) -> None:
        monkeypatch.setattr(launch, "cores", lambda: (count, f"the {count} physical cores this process may use"))

    return set_cores


def test_one_process_per_active_block_up_to_the_cores(two_blocks, cores):
    cores(2)
    count, why = launch.choose_processes(two_blocks)
    assert count == 2 and "blocks.active=2" in why and "distributed.processes=1" in why
    cores(16)
    assert launch.choose_processes(two_blocks)[0] == 2  # no more processes than active blocks
    cores(1)
    assert launch.choose_processes(two_blocks)[0] == 1
    two_blocks.blocks.partition = "auto:8"
    two_blocks.blocks.active = 8
    cores(4)
    assert launch.choose_processes(two_blocks)[0] == 4


def test_one_active_block_a_setting_of_one_and_torchrun_keep_one_process(two_blocks, cores, monkeypatch):
    cores(8)
    two_blocks.blocks.active = 1
    assert launch.choose_processes(two_blocks) == (1, "one block trained at a time")
    two_blocks.blocks.active = 2
    two_blocks.distributed.processes = 1
    assert launch.choose_processes(two_blocks) == (1, "distributed.processes=1")
    two_blocks.distributed.processes = 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert launch.choose_processes(two_blocks) == (1, "started by torchrun")


def test_more_processes_than_active_blocks_is_refused_before_any_start(two_blocks, cores):
    cores(8)
    two_blocks.distributed.processes = 3
    with pytest.raises(UserError, match="at most 2"):
        launch.choose_processes(two_blocks)


def test_the_image_cache_is_shared_by_the_processes_of_a_machine():
    alone = images.default_cache_bytes()
    assert images.default_cache_bytes(4) == alone // 4


def test_a_failed_process_is_said_in_its_lines_and_stops_the_others(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(launch, "GRACE_S", 0.5)
    spawn = multiprocessing.get_context("spawn")
    log = str(tmp_path / "process_1.log")
    waiting = spawn.Process(target=processes.wait_a_minute)
    failing = spawn.Process(target=processes.fail_in_lines, args=(log,))
    waiting.start()
    failing.start()
    started = time.monotonic()
    code = launch._wait([waiting, failing], [None, log])
    assert code == 2 and time.monotonic() - started < 20
    assert waiting.exitcode is not None  # stopped, not left running
    err = capsys.readouterr().err
    assert "training process 1 of 2 failed (exit status 2)" in err and "error: the scene is gone" in err
    assert "loading" not in err  # the error line, not the whole log



def test_a_training_process_ends_with_its_status_and_its_output_without_the_teardown(tmp_path):
    """A C++ thread freed in the interpreter's teardown could abort a process whose training was done."""
    log = tmp_path / "out.log"
    with open(log, "wb") as file:
        child = subprocess.run([sys.executable, "-c", "from tests.helpers import processes; "
                                "processes.leave_after_a_teardown_that_aborts()"],
                               stdout=file, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent, timeout=120)
    assert child.returncode == 3  # not 134 (-6): the teardown, which would abort, did not run
    assert log.read_text() == "trained\n"  # flushed before the end


@pytest.mark.parametrize("joined", [True, False])
def test_mgs_ends_a_process_that_joined_a_process_group_without_the_teardown(joined):
    """Under torchrun a gloo worker may still free a collective's tensors when the teardown begins, which aborts;
    ``mgs`` skips the teardown of such a process, and of no other."""
    child = subprocess.run([sys.executable, "-c", "import sys; from tests.helpers import processes; "
                            "processes.end_mgs_after_a_teardown_that_aborts(sys.argv[1])", str(int(joined))],
                           capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=120)
    assert child.returncode == (0 if joined else -6)  # -6: the teardown ran, and aborted
    assert child.stdout.startswith("momentum_gs ")  # the version, flushed before the end


@pytest.mark.slow
def test_mgs_train_starts_its_processes_and_they_train_like_one(two_blocks, tmp_path):
    cfg = two_blocks
    cfg.optim.steps, cfg.blocks.interval, cfg.log.checkpoint_every = 8, 3, 8
    cfg.teacher.enabled = True
    save_config(cfg, tmp_path / "config.yaml")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "train", "--config", str(tmp_path / "config.yaml"),
                             "--out", str(tmp_path / "two"), "distributed.processes=2"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "processes: 2 processes of 1 thread each (distributed.processes=2)" in result.stdout
    assert result.stdout.count("trained 8 steps") == 1  # process 0 reports; the other is quiet
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = Trainer(cfg, load_scene(cfg.data), tmp_path / "one", torch.device("cpu"))
        one.train()
    finally:
        torch.set_num_threads(before)
    two = load_checkpoint(tmp_path / "two" / "ckpt" / "step_8.pt", map_location="cpu")
    for key in ("decoder", "teacher"):
        for name, value in one.state()[key].items():
            torch.testing.assert_close(value, two[key][name], rtol=0, atol=1e-6, msg=f"{key}.{name}")
