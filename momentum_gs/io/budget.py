"""What a request costs in memory, checked before the work starts.

A request that cannot fit (baking ten million Gaussians with degree-3 colours on a laptop) should be one line
at the start, not a process the kernel kills an hour later; :func:`require_memory` compares an estimate with
the memory free on the device.
"""

from __future__ import annotations

import os

import torch

from momentum_gs.errors import UserError


def available_bytes(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (a GPU's free memory; the host's available memory), None where unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:  # Linux: what can be had without swapping
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # elsewhere: the physical memory
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def require_memory(need: int, device: torch.device, what: str, fix: str) -> None:
    """Raise a UserError saying ``what`` needs about ``need`` bytes, how many are free, and ``fix``, when the
    estimate does not fit in the memory free on ``device``."""
    have = available_bytes(device)
    if have is not None and need > have:
        raise UserError(f"{what} needs about {need / 2**30:.1f} GiB of memory and {have / 2**30:.1f} GiB is free "
                        f"on {torch.device(device).type}; {fix}")
