"""The device and the CPU threads a config asks for."""

from __future__ import annotations

import os

import torch

from momentum_gs.errors import UserError


def use_threads(setting: int, device: torch.device) -> int:
    """Set the process's intra-op thread count from the config's ``threads``; returns the count in use.

    0 (auto) is 1 thread on a CPU device unless ``OMP_NUM_THREADS`` says otherwise. On the 2-core machine one
    thread trained faster than two everywhere it was measured (docs/benchmarks/training.md): the kernels of a
    step are small, and two threads pay for their synchronisation and, on a shared machine, wait for each
    other. On a GPU the host's work is light
    and PyTorch's default stays.
    """
    if setting > 0:
        torch.set_num_threads(setting)
    elif torch.device(device).type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    return torch.get_num_threads()


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
