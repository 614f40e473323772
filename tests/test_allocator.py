"""The allocator keeps what a process frees (``config.allocator``): memory freed and taken again costs no new pages."""

import subprocess
import sys

import pytest

PROBE = """
import ctypes, resource, sys
from momentum_gs.config.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 24 << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)  # a step's buffer, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(size); ctypes.memset(block, 2, size); libc.free(block)  # the next step's
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_memory_freed_is_taken_again_without_new_pages():
    def faults(mode: str) -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        kept, count = done.stdout.split()
        return kept, int(count)

    pages = (24 << 20) // 4096
    kept, with_setting = faults("keep")
    if kept != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    _, without = faults("default")
    assert without > pages // 2  # glibc's default gave the 24 MiB back: every page faulted in again
    assert with_setting < pages // 20  # kept: the same pages again


def test_keeping_freed_memory_is_asked_once_and_answers_the_same():
    from momentum_gs.config.allocator import keep_freed_memory

    assert keep_freed_memory() == keep_freed_memory()
