"""The device and the CPU threads a config asks for."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from momentum_gs.config import environment
from momentum_gs.config.allocator import keep_freed_memory
from momentum_gs.errors import UserError

SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP = Path("/sys/fs/cgroup")
# PyTorch's own ops (the decoder, Adam, the losses' image ops) take the threads only on views of at least this
# many pixels: on smaller ones their many small parallel regions cost more than they save (2-core machine,
# idle: two threads trained 128×96 views at 0.77× and 487×273 at 1.11× of one; 650×364 broke even; 975×547
# gained 1.54×), while the C++ kernels gained 1.33-1.37× at every size with PyTorch's ops on one thread.
TORCH_OPS_MIN_PIXELS = 250_000
_plan = {"kernels": 0, "torch": 0, "why": ""}  # the last use_threads's counts and why (threads_in_use)


def use_threads(setting: int, device: torch.device, pixels: int | None = None, processes: int = 1) -> int:
    """Set the process's CPU threads from the config's ``threads``; returns the C++ kernels' count.

    0 (auto) on a CPU device is the physical cores this process may use (:func:`cores`), divided among the
    ``processes`` training processes of this machine, unless ``OMP_NUM_THREADS`` is set, which stays; N > 0 is N. The
    C++ kernels split every view over them and give the same bits at any count (csrc/parallel.h). PyTorch's
    own intra-op threads are the same count where the views (``pixels`` each, None: not known) have at least
    ``TORCH_OPS_MIN_PIXELS``, else one. The kernels take their count from :func:`kernel_threads` (the
    render's ``use_kernels`` passes it on). On a GPU the host's work is light and PyTorch's default stays. On a
    CPU the allocator keeps the memory a step frees for the next (:func:`~momentum_gs.config.allocator.
    keep_freed_memory`).
    """
    if torch.device(device).type == "cpu":
        keep_freed_memory()
    if torch.device(device).type != "cpu":
        count, why = torch.get_num_threads(), "PyTorch's default (not a CPU device)"
    elif setting > 0:
        count, why = setting, f"threads={setting} in the config"
    elif (value := environment.omp_threads()) is not None:
        count = int(value) if value.isdigit() and int(value) > 0 else torch.get_num_threads()
        why = f"OMP_NUM_THREADS={value}"
    else:
        count, why = auto_threads(processes)
    small = torch.device(device).type == "cpu" and pixels is not None and pixels < TORCH_OPS_MIN_PIXELS
    ops = 1 if small else count
    torch.set_num_threads(ops)
    note = f"; PyTorch's ops on 1: views of {pixels} pixels, under {TORCH_OPS_MIN_PIXELS}" if ops != count else ""
    _plan.update(kernels=count, torch=ops, why=why + note)
    return count


def kernel_threads() -> int:
    """The C++ kernels' thread count: the last :func:`use_threads`'s, while torch's count is still the one it
    set; else torch's count."""
    return _plan["kernels"] if _plan["torch"] == torch.get_num_threads() else torch.get_num_threads()


def threads_in_use() -> str:
    """The kernels' thread count and why, and PyTorch's where it differs, in words: "2 threads (threads=0: the 2
    physical cores this process may use)"; why is the last :func:`use_threads`'s, where torch's count is still
    the one it set."""
    count = kernel_threads()
    why = _plan["why"] if _plan["torch"] == torch.get_num_threads() else "torch.set_num_threads or PyTorch's default"
    return f"{count} thread{'s' if count != 1 else ''} ({why})"


def auto_threads(processes: int = 1) -> tuple[int, str]:
    """(threads, why) of ``threads: 0`` on a CPU: :func:`cores`, divided among the ``processes`` training
    processes of this machine, at least 1."""
    count, why = cores()
    if processes > 1:
        return max(1, count // processes), f"threads=0: {why}, shared by {processes} training processes"
    return count, f"threads=0: {why}"


def cores() -> tuple[int, str]:
    """(count, why): the physical cores among the CPUs this process may run on (its affinity; SMT siblings
    count once), at most the cgroup's CPU quota (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), at least 1."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    physical = {_core_of(cpu) for cpu in cpus}
    count, why = len(physical), f"the {len(physical)} physical cores this process may use"
    if len(physical) == 1:
        why = "the 1 physical core this process may use"
    quota = _cgroup_quota()
    if quota is not None and quota < count:
        count, why = quota, f"the cgroup's CPU quota ({quota} of {len(physical)} physical cores)"
    return max(1, count), why


def _core_of(cpu: int) -> tuple[str, str] | int:
    """The physical core of logical CPU ``cpu`` (package, core id), or the CPU itself where sysfs has no topology."""
    topology = SYS_CPU / f"cpu{cpu}" / "topology"
    try:
        return (topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()
    except OSError:
        return cpu


def _cgroup_quota() -> int | None:
    """Whole CPUs of this container's CPU quota (rounded down, at least 1), or None without a quota."""
    try:
        quota, period = (CGROUP / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (CGROUP / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (CGROUP / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.lstrip("-").isdigit() or not period.isdigit() or int(period) <= 0:
        return None
    return max(1, math.floor(int(quota) / int(period)))


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → cuda if available else cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UserError(f"device '{name}' is not available here ({count} CUDA devices); use device=cpu or auto")
    return device
