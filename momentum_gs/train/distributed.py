"""Several training processes on ``torch.distributed``: NCCL between GPUs, gloo between CPU processes.

``torchrun`` starts one process per GPU (or per CPU worker) and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_world` reads them. Every process runs the
same trainer on the same global steps. Each step, the k active blocks are spread over the G processes
(:meth:`BlockScheduler.assign`); a process trains its blocks and adds their gradients into the one shared
decoder, then one all-reduce sums the decoder gradients of all processes (and the step's metrics) in a
single flat bucket, and every process takes the same optimizer step, so the decoders and teachers stay
identical without ever being sent.

``mgs train`` on a CPU starts its own processes (:mod:`momentum_gs.train.launch`), each handed its place and
the rendezvous port as a value (:class:`Rendezvous`). Without either (or with ``WORLD_SIZE=1``) the world is a
single process and nothing here talks to anyone: the same code trains on one CPU or GPU.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
import tqdm

from momentum_gs.config import environment, resolve_device
from momentum_gs.errors import UserError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # the training processes of this machine, which share its cores and memory

    @property
    def distributed(self) -> bool:
        """True when there is more than one process to talk to."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, writes TensorBoard, checkpoints and evaluates."""
        return self.rank == 0


SINGLE = World()
_joined = [False]  # whether this process has joined a process group (init_world), for joined()


@dataclass(frozen=True)
class Rendezvous:
    """Where the processes that ``mgs train`` started itself (:mod:`momentum_gs.train.launch`) meet: this process's
    place, and the loopback port of process 0's store."""

    world: World
    port: int


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or another launcher that sets WORLD_SIZE and RANK)."""
    return environment.torchrun_world() is not None


def restart_count() -> int:
    """How many times ``torchrun --max-restarts`` has restarted this job (0 on the first attempt)."""
    return environment.restart_count()


def init_world(device_name: str, backend: str = "auto", timeout_s: float = 1800.0,
               rendezvous: Rendezvous | None = None) -> tuple[World, torch.device]:
    """Join the process group of ``rendezvous`` (the processes ``mgs train`` started) or of ``torchrun``; returns
    the world and this process's device.

    ``device_name`` is the config's ``device``: with ``auto`` or ``cuda`` each process takes GPU
    ``LOCAL_RANK``. ``backend`` ``auto`` is NCCL on GPUs and gloo on CPUs.
    """
    started = environment.torchrun_world()
    if rendezvous is not None:
        world = rendezvous.world
    elif started is not None:
        world = World(started.rank, started.size, started.local_rank, started.local_size)
    else:
        world = SINGLE
    if world.size == 1:
        return SINGLE, resolve_device(device_name)
    bars_without_process_lock()
    device = resolve_device(device_name)
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"process {world.rank} wants GPU {world.local_rank} but this node has "
                            f"{torch.cuda.device_count()}; start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    backend = process_group_backend(backend, device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        if rendezvous is not None:
            store = dist.TCPStore("127.0.0.1", rendezvous.port, world.size, world.is_main, timeout=timeout)
        else:
            # The store of a job restarted by torchrun can still hold the previous attempt's addresses; keys
            # under a per-attempt prefix keep the new processes from dialling the dead ones.
            store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
            store = dist.PrefixStore(f"momentum_gs/attempt_{restart_count()}", store)
        dist.init_process_group(backend, store=store, rank=world.rank, world_size=world.size, timeout=timeout,
                                **({"device_id": device} if "nccl" in backend else {}))
    _joined[0] = True
    return world, device


def joined() -> bool:
    """True once this process has joined a process group (:func:`init_world`), left or not: its collectives' worker
    threads may still hold its tensors, so it must end without the interpreter's teardown
    (:func:`leave`)."""
    return _joined[0]


def bars_without_process_lock() -> None:
    """Progress bars guarded by a thread lock from here on, not tqdm's default lock across processes (a named
    semaphore). A process of a group ends by :func:`leave`, without the teardown that would release that semaphore,
    and Python's resource tracker then warns, as the run ends, of "leaked semaphore objects". Each process's bars
    are its own: a thread lock is all they need. Called where a process joins a group (:func:`init_world`), before
    any bar of its training."""
    tqdm.tqdm.set_lock(threading.RLock())


def leave(status: int) -> None:
    """End a process that joined a process group with ``status`` once its work is done and said: its output flushed,
    then out at once.

    The interpreter's teardown is skipped. A training's checkpoints, summary and logs are written and closed by
    then, so the teardown has nothing left to do that matters, and it can undo a finished training: a gloo worker
    thread frees a finished collective's tensors a moment after the collective returns; where that comes after the
    interpreter began its teardown, the thread's taking of the interpreter's lock ends it inside a C++ destructor,
    and the process aborts with ``terminate called without an active exception`` (status 134).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def process_group_backend(backend: str, device: torch.device) -> str:
    """What ``init_process_group`` gets for the config's ``distributed.backend`` on this process's ``device``.

    ``auto`` is NCCL on GPUs and gloo on CPUs. With NCCL, CPU tensors go through gloo
    (``"cpu:gloo,cuda:nccl"``): the block-weighting table, the anchor count and the pickled block states
    live on the host, NCCL alone refuses CPU tensors, and object collectives over NCCL would stage every
    block state in GPU memory.
    """
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if device.type != "cuda":
            raise UserError(f"distributed.backend=nccl needs GPUs but the device is {device.type}: "
                            "set device=cuda, or distributed.backend=gloo (or auto)")
        return "cpu:gloo,cuda:nccl"
    return backend


def close_world(world: World) -> None:
    """Leave the process group (a no-op for a single process)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every process (a no-op for a single process)."""
    if world.distributed:
        dist.barrier()


class StepReducer:
    """Sums the shared decoder's gradients and the step's metrics over all processes with one all-reduce.

    The gradients are copied into one flat buffer (followed by one presence flag per parameter and the
    metric sums), summed across processes in a single call, and copied back divided by ``count``, the
    number of blocks that contributed over all processes. A parameter no block touched anywhere keeps no
    gradient, exactly as when one process trains every active block, so Adam skips it in both cases.

    Args:
        params: the shared decoder's parameters, in optimizer order (the same on every process).
        world: the processes; with one process nothing is communicated.
    """

    def __init__(self, params: Sequence[torch.Tensor], world: World):
        self.params, self.world = list(params), world
        self.numel = sum(p.numel() for p in self.params)
        self.bytes_per_step = 0  # size of the last all-reduced buffer

    def reduce(self, count: int, metrics: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """Average the gradients over ``count`` blocks; returns ``metrics`` ([m], this process's sums)
        summed over all processes, on the device (nothing is read back for them)."""
        metrics = torch.as_tensor(metrics, dtype=torch.float32)
        grads = [p.grad for p in self.params]
        if not self.world.distributed:
            present = [g for g in grads if g is not None]
            if present and count > 1:
                torch._foreach_div_(present, float(count))
            return metrics
        device = self.params[0].device if self.params else metrics.device
        flat = torch.zeros(self.numel + len(self.params) + metrics.numel(), device=device, dtype=torch.float32)
        offset = 0
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is not None:
                flat[offset:offset + p.numel()].copy_(g.reshape(-1))
                flat[self.numel + i] = 1.0
            offset += p.numel()
        flat[self.numel + len(self.params):] = metrics
        dist.all_reduce(flat)
        self.bytes_per_step = flat.numel() * flat.element_size()
        flags = flat[self.numel:self.numel + len(self.params)].tolist()  # which gradients exist anywhere
        offset = 0
        for p, flag in zip(self.params, flags):
            p.grad = flat[offset:offset + p.numel()].view_as(p).div_(float(count)) if flag > 0 else None
            offset += p.numel()
        return flat[self.numel + len(self.params):]


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """``tensor`` summed over all processes (in place; unchanged for a single process)."""
    if world.distributed:
        dist.all_reduce(tensor)
    return tensor


def agreed(world: World, value: int) -> int:
    """Rank 0's ``value`` on every process."""
    if not world.distributed:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return int(box[0])


def checksum(tensors: Sequence[torch.Tensor]) -> float:
    """A float64 fingerprint of ``tensors`` (sum of values plus a position-weighted sum)."""
    total = torch.zeros((), dtype=torch.float64)
    for i, t in enumerate(tensors):
        t = t.detach().to("cpu", torch.float64).reshape(-1)
        total += t.sum() + (i + 1) * (t * torch.linspace(0.5, 1.5, t.numel(), dtype=torch.float64)).sum()
    return float(total)


def check_replicas(tensors: Sequence[torch.Tensor], world: World, what: str, step: int) -> None:
    """Raise when ``tensors`` differ between processes (compared by :func:`checksum`)."""
    if not world.distributed:
        return
    mine = checksum(tensors)
    sums = [None] * world.size
    dist.all_gather_object(sums, mine)
    if any(s != sums[0] for s in sums):
        raise RuntimeError(f"{what} differs between processes at step {step}: checksums {sums}")


def gather_to_main(obj, world: World) -> list | None:
    """Rank 0 gets the list of every process's ``obj`` (in rank order); the others get None."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def send_state(state: dict, dst: int) -> None:
    """Send a block state (nested dict of CPU tensors) to process ``dst``; its pickled bytes travel through
    gloo, on the host (see :func:`process_group_backend`)."""
    dist.send_object_list([state], dst=dst)


def receive_state(src: int) -> dict:
    """Receive a block state sent by :func:`send_state` from process ``src``."""
    box = [None]
    dist.recv_object_list(box, src=src)
    return box[0]

