"""The C library's allocator, told to keep the memory a process frees (glibc on Linux).

A training step allocates and frees the same buffers of a few megabytes each time: images, per-Gaussian tensors,
the kernels' per-tile lists. glibc's defaults hand memory above a sliding threshold straight back to the system
(``munmap``, or trimming the heap once 128 KiB lie free at its top), so the next step takes it again page by page,
each page faulted in and zeroed by the kernel. On the CPU that was about a sixth of a training process's time
(docs/benchmarks/training.md, "Memory the process keeps"). :func:`keep_freed_memory` sets the two thresholds once
(``mallopt``): blocks under :data:`MMAP_THRESHOLD` come from the heap, and the heap is trimmed only past
:data:`TRIM_THRESHOLD` free. What the process computes is unchanged; its resident memory stays near its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20  # bytes: the largest glibc accepts (its DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems)
TRIM_THRESHOLD = 1 << 30  # bytes free at the heap's top before it is given back
_done: list[bool] = []  # the outcome of the first call (the settings hold for the process's life)


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for the next allocation (module notes); True where it took the settings.
    Elsewhere (macOS, Windows, musl) it does nothing and returns False. Once per process; later calls return the
    first's outcome."""
    if _done:
        return _done[0]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # no C library by that name, or one without mallopt (musl)
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done.append(ok)
    return ok
