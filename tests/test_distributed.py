"""Several processes under torchrun (gloo on CPU): same result as one process, fault recovery, resume."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from momentum_gs.config import load_config, save_config
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import load_checkpoint
from momentum_gs.train.distributed import StepReducer, World, process_group_backend
from momentum_gs.train.scheduler import BlockScheduler
from momentum_gs.train.trainer import Trainer
from tests.helpers.states import flat_tensors, one_thread
from tests.helpers.tiny_training import TINY_OVERRIDES

HELPERS = Path(__file__).parent / "helpers"
SCRIPTS = Path(__file__).parents[1] / "scripts"


def torchrun(args: list[str], nproc: int = 2, script: list[str] | None = None, env: dict | None = None,
             max_restarts: int = 0, expect_success: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` with ``nproc`` CPU workers running ``mgs`` (or ``script``)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               f"--max-restarts={max_restarts}", "--monitor-interval=0.1"]
    command += script or ["-m", "momentum_gs.cli"]
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    result = subprocess.run(command + args, capture_output=True, text=True, env=run_env, timeout=600)
    assert (result.returncode == 0) == expect_success, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def dist_setup(tiny_scene, tmp_path_factory):
    """A 2-block config with 2 active blocks, teacher and weighting on, and its 2-process run."""
    from momentum_gs.partition import auto_partition

    root = tmp_path_factory.mktemp("dist")
    cfg = load_config(overrides=TINY_OVERRIDES + ["log.checkpoint_every=4"])
    cfg.data.path = str(tiny_scene)
    auto_partition(load_scene(cfg.data), 2).save(root / "partition.npz")
    cfg.blocks.partition, cfg.blocks.active, cfg.blocks.interval = str(root / "partition.npz"), 2, 3
    cfg.optim.steps = 12
    cfg.teacher.enabled = cfg.weighting.enabled = True
    cfg.weighting.eval_interval, cfg.weighting.warmup, cfg.weighting.val_every = 4, 4, 3
    save_config(cfg, root / "config.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "NPROC": "2", "MAX_RESTARTS": "0",
           "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPTS / "train_multi_gpu.sh"), "--config", str(root / "config.yaml"),
                             "--out", str(root / "two"), "distributed.check_every=1"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return cfg, root, result


def assert_same_state(a: dict, b: dict, atol: float = 1e-6) -> None:
    """Every block, the decoder, the teacher, the optimizers and the weighting agree."""
    fa, fb = flat_tensors({k: a[k] for k in ("blocks", "decoder", "teacher", "decoder_optimizer", "weighting")}), \
        flat_tensors({k: b[k] for k in ("blocks", "decoder", "teacher", "decoder_optimizer", "weighting")})
    assert fa.keys() == fb.keys()
    for name in fa:
        torch.testing.assert_close(fa[name], fb[name], rtol=0, atol=atol, msg=name)


def final_state(run: Path) -> dict:
    return load_checkpoint(run / "ckpt" / "step_12.pt", map_location="cpu")


@pytest.mark.slow
def test_two_processes_train_like_one(dist_setup):
    cfg, root, result = dist_setup
    with one_thread():
        one = Trainer(cfg, load_scene(cfg.data), root / "one", torch.device("cpu"))
        summary = one.train()
    assert summary["steps"] == 12 and [b.steps for b in one.blocks] == [12, 12]
    two = final_state(root / "two")
    assert_same_state(one.state(), two)
    assert not torch.equal(two["teacher"]["mlp_opacity.0.weight"], two["decoder"]["mlp_opacity.0.weight"])
    assert (two["weighting"]["evaluations"] > 0).all()
    # only rank 0 reports; every rank keeps its own log of its own block
    assert result.stdout.count("trained 12 steps") == 1
    logs = {r: (root / "two" / "logs" / f"rank{r}.log").read_text().splitlines() for r in (0, 1)}
    assert len(logs[0]) == len(logs[1]) == 12 and logs[0] != logs[1]
    assert len((root / "two" / "train.log").read_text().splitlines()) == 12
    summary = json.loads((root / "two" / "summary.json").read_text())
    decoder_floats = sum(v.numel() for v in two["decoder"].values())
    assert summary["processes"] == 2 and summary["steps"] == 12
    assert summary["allreduce_bytes_per_step"] >= 4 * decoder_floats  # the whole decoder gradient, once


@pytest.mark.slow
def test_a_killed_worker_restarts_and_resumes(dist_setup):
    cfg, root, _ = dist_setup
    result = torchrun(["train", "--config", str(root / "config.yaml"), "--out", str(root / "crashed")],
                      script=[str(HELPERS / "crash_once.py")], env={"CRASH_AFTER_STEP": "10"}, max_restarts=1)
    assert "resuming from" in result.stdout and "step_8.pt" in result.stdout  # lost only steps 9 and 10
    assert_same_state(final_state(root / "crashed"), final_state(root / "two"))


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_in_one_process(dist_setup):
    cfg, root, _ = dist_setup
    run = root / "resumed_in_one"
    (run / "ckpt").mkdir(parents=True)
    shutil.copy(root / "two" / "config.yaml", run / "config.yaml")
    shutil.copy(root / "two" / "ckpt" / "step_4.pt", run / "ckpt" / "step_4.pt")
    with one_thread():
        trainer = Trainer(cfg, load_scene(cfg.data), run, torch.device("cpu"))
        assert trainer.resume() and trainer.step == 4
        trainer.train()
    assert_same_state(trainer.state(), final_state(root / "two"))


def test_more_processes_than_active_blocks_is_a_clear_error(block_config):
    with pytest.raises(UserError, match="blocks.active >= 2"):  # 2 blocks, 1 active
        Trainer(block_config, load_scene(block_config.data), Path(block_config.out), torch.device("cpu"),
                World(rank=0, size=2))


def test_processes_on_one_block_not_planned_for_it_is_a_clear_error(tiny_config):
    with pytest.raises(UserError, match="planned_views=1"):  # one block on 2 processes: 2 views a step
        Trainer(tiny_config, load_scene(tiny_config.data), Path(tiny_config.out), torch.device("cpu"),
                World(rank=0, size=2))


def test_step_counts_follow_the_schedule():
    for policy in ("round_robin", "random"):
        scheduler = BlockScheduler(5, 2, policy, interval=3, seed=1)
        counts = [0] * 5
        for step in range(1, 40):
            assert scheduler.counts_before(step - 1) == counts
            for b in scheduler.active(step):
                counts[b] += 1


def test_single_process_reducer_averages_and_keeps_untouched_parameters_gradient_free():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    a.grad = torch.tensor([2.0, 4.0, 6.0])
    reducer = StepReducer([a, b], World())
    sums = reducer.reduce(2, [1.0, 3.0])
    assert sums.tolist() == [1.0, 3.0] and b.grad is None
    torch.testing.assert_close(a.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_on_gpus_host_tensors_and_block_states_go_through_gloo():
    # NCCL alone refuses CPU tensors (the weighting table, the anchor count) and would stage pickled block
    # states in GPU memory; every other pairing is what was asked for
    gpu, cpu = torch.device("cuda", 1), torch.device("cpu")  # a device object needs no GPU
    assert process_group_backend("auto", gpu) == process_group_backend("nccl", gpu) == "cpu:gloo,cuda:nccl"
    assert process_group_backend("auto", cpu) == process_group_backend("gloo", cpu) == "gloo"
    assert process_group_backend("gloo", gpu) == "gloo"
    with pytest.raises(UserError, match="distributed.backend=nccl needs GPUs"):
        process_group_backend("nccl", cpu)


@pytest.mark.parametrize("active", [2, 3])
@pytest.mark.slow
def test_blocks_moving_between_processes_and_uneven_shares_train_like_one_process(dist_setup, active):
    """3 blocks on 2 processes: with k = 2 blocks change hands between rounds; with k = 3 one process trains
    two blocks per step."""
    from momentum_gs.partition import auto_partition

    cfg, root, _ = dist_setup
    cfg = load_config(root / "config.yaml", [f"blocks.active={active}", "optim.steps=6", "log.checkpoint_every=0"])
    auto_partition(load_scene(cfg.data), 3).save(root / "partition3.npz")
    cfg.blocks.partition = str(root / "partition3.npz")
    save_config(cfg, root / f"config3_{active}.yaml")
    out = root / f"three_{active}"
    torchrun(["train", "--config", str(root / f"config3_{active}.yaml"), "--out", str(out)])
    with one_thread():
        one = Trainer(cfg, load_scene(cfg.data), root / f"three_{active}_one", torch.device("cpu"))
        summary = one.train()
    assert [b.steps for b in one.blocks] == [6, 6, 6]
    assert_same_state(one.state(), load_checkpoint(out / "ckpt" / f"step_{summary['steps']}.pt"))


@pytest.mark.parametrize("check_every, caught", [(2, True), (0, False)])
@pytest.mark.slow
def test_a_replica_that_drifts_is_caught_by_the_check(dist_setup, tmp_path, check_every, caught):
    """Process 1's decoder nudged after step 3: with ``distributed.check_every=2`` the job stops at step 4
    naming the decoder; without the check it trains on with two different decoders."""
    cfg, root, _ = dist_setup
    result = torchrun(["train", "--config", str(root / "config.yaml"), "--out", str(tmp_path / "run"),
                       f"distributed.check_every={check_every}"], script=[str(HELPERS / "diverge.py")],
                      env={"DIVERGE_AFTER_STEP": "3"}, expect_success=not caught)
    if caught:
        assert "the online decoder differs between processes at step 4" in result.stderr
    else:
        assert "differs between processes" not in result.stderr + result.stdout
