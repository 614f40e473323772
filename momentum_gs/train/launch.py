"""Several training processes on one CPU machine, started by ``mgs train`` itself.

With k ≥ 2 blocks trained at once (``blocks.active``), processes share a machine's cores better than threads
(measured in docs/benchmarks/training.md, "Processes or threads for several active blocks"): each process keeps
its own PyTorch ops, image loading and tile lists on its own core, where threads split only the kernels. So ``distributed.processes: 0`` (auto) on a CPU
starts one process per active block, up to the physical cores, and each takes its share of the cores
(:func:`~momentum_gs.config.device.auto_threads` divides them by ``LOCAL_WORLD_SIZE``). The processes are the
ones ``torchrun`` would start (gloo, :mod:`~momentum_gs.train.distributed`), without its launcher's output:
process 0 prints as a single process does, the others are quiet unless they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from momentum_gs.config import Config, resolve_device
from momentum_gs.config.device import cores
from momentum_gs.errors import UserError
from momentum_gs.partition.partition import Partition
from momentum_gs.train.distributed import launched_by_torchrun

GRACE_S = 10.0  # after one process fails, how long the others get to end by themselves


def choose_processes(cfg: Config) -> tuple[int, str]:
    """(processes, why) for ``mgs train`` with ``cfg``: 1 under torchrun, on a GPU, with one active block, or on
    one core; ``distributed.processes`` when set; else one per active block, up to the physical cores."""
    setting, active = cfg.distributed.processes, cfg.blocks.active
    if launched_by_torchrun():
        return 1, "started by torchrun"
    if resolve_device(cfg.device).type != "cpu":
        return 1, "not a CPU device (torchrun starts one process per GPU)"
    blocks = _blocks(cfg)
    if setting > 0:
        if setting > min(active, blocks):
            raise UserError(f"distributed.processes={setting} but {min(active, blocks)} block(s) are trained at once "
                            f"(blocks.active={active}, {blocks} block(s)): every process needs an active block, so "
                            f"set distributed.processes to at most {min(active, blocks)}, or 0 to choose")
        return setting, f"distributed.processes={setting}"
    if min(active, blocks) < 2:
        return 1, "one block trained at a time"
    count, why = cores()
    if count < 2:
        return 1, why
    chosen = min(count, active, blocks)
    return chosen, (f"distributed.processes=0: one per active block (blocks.active={active}) on {why}; "
                    "distributed.processes=1 trains them in one process")


def _blocks(cfg: Config) -> int:
    """The blocks of the run's partition (1 without one); ``auto:N`` is N."""
    spec = cfg.blocks.partition
    if not spec:
        return 1
    if spec.startswith("auto:"):
        return int(spec[5:]) if spec[5:].isdigit() else 1
    return Partition.load(spec).num_blocks


def describe(processes: int) -> str:
    """"2 processes of 1 thread each": the split the processes' own kernel lines will show."""
    count, _ = cores()
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    each = int(threads) if threads.isdigit() and int(threads) > 0 else max(1, count // processes)
    return f"{processes} processes of {each} thread{'s' if each != 1 else ''} each"


def launch(processes: int, argv: list[str]) -> int:
    """Run ``mgs ARGV`` in ``processes`` processes joined by gloo on this machine; returns the exit status.

    Process 0 writes to this terminal; the others' output goes to files that are said (their last lines) only
    when one of them fails. When one process fails, the others get :data:`GRACE_S` to end and are then stopped.
    """
    port = _free_port()
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(processes),
                LOCAL_WORLD_SIZE=str(processes))
    command = [sys.executable, "-m", "momentum_gs.cli", *argv]
    with tempfile.TemporaryDirectory(prefix="mgs-processes-") as logs:
        children, outputs = [], []
        try:
            for rank in range(processes):
                env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank), GROUP_RANK="0")
                if rank == 0:
                    children.append(subprocess.Popen(command, env=env))
                    outputs.append(None)
                    continue
                log = open(Path(logs) / f"process_{rank}.log", "wb")
                outputs.append(log)
                children.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            return _wait(children, outputs)
        except KeyboardInterrupt:  # every process got the Ctrl-C too: let them write their checkpoints
            _stop(children, grace=60.0)
            return 130
        finally:
            _stop(children, grace=0.0)
            for log in outputs:
                if log is not None:
                    log.close()


def _wait(children: list[subprocess.Popen], outputs: list) -> int:
    """Wait for every process; after the first failure the rest get :data:`GRACE_S`. The status of process 0 when
    it failed, else the first failed one's, whose last lines are said."""
    while True:
        codes = [child.poll() for child in children]
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed or all(code is not None for code in codes):
            break
        time.sleep(0.2)
    if not failed:
        return 0
    deadline = time.monotonic() + GRACE_S  # the others often fail the same way: their own status is the better one
    while any(child.poll() is None for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    codes = [child.poll() for child in children]
    _stop(children, grace=0.0)
    if codes[0] not in (None, 0):  # process 0 failed by itself and said why on this terminal
        return codes[0]
    rank = failed[0]
    outputs[rank].flush()
    lines = Path(outputs[rank].name).read_text(errors="replace").strip().splitlines()
    said = [line for line in lines if line.startswith("error:")] or lines[-5:]
    print(f"training process {rank} of {len(children)} failed (exit status {codes[rank]}):", file=sys.stderr)
    print("\n".join(said), file=sys.stderr)
    return codes[rank] or 1


def _stop(children: list[subprocess.Popen], grace: float) -> None:
    """Wait up to ``grace`` seconds for the processes to end, then terminate the rest (and kill what stays)."""
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _free_port() -> int:
    """A TCP port on the loopback that no one listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
