"""Several training processes on one CPU machine, started by ``mgs train`` itself.

With k ≥ 2 blocks trained at once (``blocks.active``), processes share a machine's cores better than threads
(measured in docs/benchmarks/training.md, "Processes or threads for several active blocks"): each process keeps
its own PyTorch ops, image loading and tile lists on its own core, where threads split only the kernels. So
``distributed.processes: 0`` (auto) on a CPU starts one process per active block, up to the physical cores, and each
takes its share of the cores
(:func:`~momentum_gs.config.device.auto_threads` divides them by the processes). They join as ``torchrun``'s would
(gloo, :mod:`~momentum_gs.train.distributed`), but each is handed the resolved config, the
:class:`~momentum_gs.train.request.TrainRequest` and its place as values: no command line or environment variable
carries them. Process 0 prints as a single process does, the others are quiet unless they fail.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from momentum_gs.config import Config, environment, resolve_device
from momentum_gs.config.device import cores
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError, exit_status
from momentum_gs.partition.partition import Partition
from momentum_gs.train.distributed import Rendezvous, World, launched_by_torchrun, leave
from momentum_gs.train.request import TrainRequest
from momentum_gs.train.run import describe as describe_run, train

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
    views = cfg.distributed.view_processes
    if views != 1:
        return _view_processes(views, blocks, cfg)
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


def _view_processes(views: int, blocks: int, cfg: Config) -> tuple[int, str]:
    """(processes, why) for ``distributed.view_processes`` = ``views`` (not 1) on a scene of ``blocks`` blocks,
    at most one per training view: a step of more views than the scene has would take one twice."""
    if blocks != 1:
        raise UserError(f"distributed.view_processes={views} trains a scene of one block in several processes, but "
                        f"this one has {blocks} blocks: set distributed.view_processes=1 (its blocks spread over "
                        "processes by themselves)")
    train, per = len(load_scene(cfg.data, images=False).train), cfg.distributed.views_per_process
    each = "its own view" if per == 1 else f"its own {per} views"
    if views > 1:
        if views * per > train:
            raise UserError(f"distributed.view_processes={views} with views_per_process={per} but the scene has "
                            f"{train} training views: each process trains {each} of every step, so set it to at "
                            f"most {train // per} (or 0 to choose)")
        return views, f"distributed.view_processes={views}: each on {each} of every step"
    count, why = cores()
    if count * per > train:
        bound = "training view" if per == 1 else f"{per} training views"
        count, why = train // per, f"{why}, at most one per {bound} ({train})"
    if count < 2:
        return 1, why
    return count, (f"distributed.view_processes=0: one per physical core on {why}, each on {each} of every "
                   "step; distributed.view_processes=1 trains in one process")


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
    threads = environment.omp_threads() or ""
    each = int(threads) if threads.isdigit() and int(threads) > 0 else max(1, count // processes)
    return f"{processes} processes of {each} thread{'s' if each != 1 else ''} each"


def launch(processes: int, cfg: Config, request: TrainRequest) -> int:
    """Train ``cfg`` (resolved, its partition made) as ``request`` asks, in ``processes`` processes joined by gloo on
    this machine; returns the exit status.

    Each process is handed the config, the request and its place as values (:class:`~momentum_gs.train.distributed
    .Rendezvous`). Process 0 writes to this terminal; the others' output goes to files that are said (their last
    lines) only when one of them fails. When one process fails, the others get :data:`GRACE_S` to end and are then
    stopped.
    """
    port = _free_port()
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: no thread or lock of this one copied
    with tempfile.TemporaryDirectory(prefix="mgs-processes-") as logs:
        children, outputs = [], []
        try:
            for rank in range(processes):
                log = None if rank == 0 else str(Path(logs) / f"process_{rank}.log")
                place = Rendezvous(World(rank, processes, rank, processes), port)
                child = spawn.Process(target=train_process, args=(cfg, request, place, log), name=f"mgs-train-{rank}")
                child.start()
                children.append(child)
                outputs.append(log)
            return _wait(children, outputs)
        except KeyboardInterrupt:  # every process got the Ctrl-C too: let them write their checkpoints
            _stop(children, grace=60.0)
            return 130
        finally:
            _stop(children, grace=0.0)


def train_process(cfg: Config, request: TrainRequest, place: Rendezvous, log: str | None) -> None:
    """One training process of :func:`launch`: its output to ``log`` (None: this terminal); it ends as ``mgs`` does
    (:func:`~momentum_gs.errors.exit_status`: bad input in one ``error:`` line, status 2)."""
    if log is not None:
        with open(log, "ab") as file:
            os.dup2(file.fileno(), 1)
            os.dup2(file.fileno(), 2)
    leave(exit_status(lambda: train(
        cfg, resume=request.resume, viewer=request.viewer, keep_viewer=request.keep_viewer,
        report=lambda summary: print(describe_run(summary), flush=True), budget=request.budget,
        started=request.started, plan=True, rendezvous=place)))  # the viewer: process 0's, as train() decides


def _wait(children: list, outputs: list[str | None]) -> int:
    """Wait for every process (:class:`multiprocessing.Process`); after the first failure the rest get
    :data:`GRACE_S`. The status of process 0 when it failed, else the first failed one's, whose last lines
    (in its file of ``outputs``) are said."""
    while True:
        codes = [child.exitcode for child in children]
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed or all(code is not None for code in codes):
            break
        time.sleep(0.2)
    if not failed:
        return 0
    deadline = time.monotonic() + GRACE_S  # the others often fail the same way: their own status is the better one
    while any(child.exitcode is None for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    codes = [child.exitcode for child in children]
    _stop(children, grace=0.0)
    if codes[0] not in (None, 0):  # process 0 failed by itself and said why on this terminal
        return _status(codes[0])
    rank = failed[0]
    lines = Path(outputs[rank]).read_text(errors="replace").strip().splitlines() if outputs[rank] else []
    said = [line for line in lines if line.startswith("error:")] or lines[-5:]
    print(f"training process {rank} of {len(children)} failed (exit status {_status(codes[rank])}):",
          file=sys.stderr)
    print("\n".join(said), file=sys.stderr)
    return _status(codes[rank]) or 1


def _status(code: int) -> int:
    """A process's exit status as a shell gives it: 128 + N for one ended by signal N."""
    return 128 - code if code < 0 else code


def _stop(children: list, grace: float) -> None:
    """Wait up to ``grace`` seconds for the processes to end, then terminate the rest (and kill what stays)."""
    deadline = time.monotonic() + grace
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
        if child.exitcode is None:
            child.terminate()
    for child in children:
        child.join(timeout=5.0)
        if child.exitcode is None:
            child.kill()
            child.join()


def _free_port() -> int:
    """A TCP port on the loopback that no one listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
