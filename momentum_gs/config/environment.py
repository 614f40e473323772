"""Every environment variable the package reads, in one place.

A setting travels in the config or in a typed value (:class:`~momentum_gs.train.request.TrainRequest`); the
environment is read only for what other programs set (``torchrun``'s process variables, ``OMP_NUM_THREADS``) and
for the few switches a user sets outside any run (the kernels, the image cache's folder, CesiumJS's folder).
``tests/test_structure.py`` holds every other module to this.

| variable | read by | what it does |
|---|---|---|
| ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` | :func:`torchrun_world` | the processes ``torchrun`` started |
| ``TORCHELASTIC_RESTART_COUNT`` | :func:`restart_count` | how often ``torchrun`` restarted the job |
| ``OMP_NUM_THREADS`` | :func:`omp_threads` | a thread count the user set, kept by ``threads: 0`` |
| ``MOMENTUM_GS_KERNELS`` (old name ``MOMENTUM_GS_COMPOSITOR``) | :func:`text` | the CPU kernels' mode |
| ``MOMENTUM_GS_MARCH`` | :func:`text` | the ``-march`` the CPU kernels are built for |
| ``TORCH_EXTENSIONS_DIR`` | :func:`text` | where torch keeps extension builds |
| ``MGS_CACHE`` | :func:`text` | the image cache's folder for read-only datasets |
| ``MGS_CESIUM`` | :func:`text` | CesiumJS's browser build, for the site's page |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

READ = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT", "OMP_NUM_THREADS",
        "MOMENTUM_GS_KERNELS", "MOMENTUM_GS_COMPOSITOR", "MOMENTUM_GS_MARCH", "TORCH_EXTENSIONS_DIR", "MGS_CACHE",
        "MGS_CESIUM")


@dataclass(frozen=True)
class TorchrunWorld:
    """This process's place among the processes ``torchrun`` started."""

    rank: int
    size: int
    local_rank: int
    local_size: int


def text(name: str) -> str:
    """The value of variable ``name`` (one of :data:`READ`), stripped; "" when unset."""
    if name not in READ:
        raise KeyError(f"{name} is not a variable the package reads; add it to READ with what it does")
    return os.environ.get(name, "").strip()


def _count(name: str, default: int) -> int:
    value = text(name)
    return int(value) if value.isdigit() else default


def torchrun_world() -> TorchrunWorld | None:
    """The ``torchrun`` variables of this process, or None when it was not started by ``torchrun`` (or another
    launcher that sets ``WORLD_SIZE`` and ``RANK``)."""
    if not text("WORLD_SIZE") or not text("RANK"):
        return None
    size = _count("WORLD_SIZE", 1)
    return TorchrunWorld(_count("RANK", 0), size, _count("LOCAL_RANK", 0), max(1, _count("LOCAL_WORLD_SIZE", 1)))


def restart_count() -> int:
    """How many times ``torchrun --max-restarts`` has restarted this job (0 on the first attempt)."""
    return _count("TORCHELASTIC_RESTART_COUNT", 0)


def omp_threads() -> str | None:
    """``OMP_NUM_THREADS`` as the user set it (None when unset)."""
    return text("OMP_NUM_THREADS") if "OMP_NUM_THREADS" in os.environ else None


def set_default(name: str, value: str) -> None:
    """Set variable ``name`` for this process and its children unless it is set already (a library such as cuBLAS
    reads it)."""
    os.environ.setdefault(name, value)


def prepend_path(folder: str) -> None:
    """Put ``folder`` first on this process's ``PATH`` (for the programs a build runs)."""
    os.environ["PATH"] = os.pathsep.join([folder, *os.get_exec_path()])
