"""Finding, compiling and loading the C++ CPU kernels (``csrc/``), and which kernels a render takes.

They are compiled by ``make setup``, else at first use, by ``torch.utils.cpp_extension.load`` (needs ninja and
a C++ compiler; a few minutes on 2 cores, said before it starts), for the target ``MOMENTUM_GS_MARCH`` names
(a ``-march`` value; default ``native``, this CPU, so the extension's name carries a digest of the CPU's
features; ``x86-64-v3`` builds for AVX2 on any x86-64 machine that has it), and cached under
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) in a folder named after the target, the
sources' location and their text, one per install: later processes load it in milliseconds. The vector
width follows the target (``csrc/simd.h``), and the build reports which it got (``Build.target``: "avx2,
32-byte vectors").

Which kernels CPU renders take is the config's ``render.kernels`` (:func:`use_kernels`), which the
environment variable ``MOMENTUM_GS_KERNELS`` overrides: ``auto`` (default: the C++ kernels where they build,
else the torch ops), ``cpp`` (an error if they do not build) or ``torch``. The variable's old name
``MOMENTUM_GS_COMPOSITOR`` (``auto``, ``fused`` for cpp, ``torch``) is still read when the new one is not set.
GPU tensors always take the torch ops.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import torch
from torch import Tensor
from tqdm import tqdm

from momentum_gs.config import Kernels, environment, kernel_threads, threads_in_use
from momentum_gs.errors import UserError

KERNELS_VARIABLE = "MOMENTUM_GS_KERNELS"
MODES = get_args(Kernels)  # ("auto", "cpp", "torch"), the values of render.kernels and of the variable
OLD_VARIABLE = "MOMENTUM_GS_COMPOSITOR"  # the variable's old name and values, read when the new one is unset
OLD_MODES = {"auto": "auto", "fused": "cpp", "torch": "torch"}
MARCH_VARIABLE = "MOMENTUM_GS_MARCH"
CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / name for name in ("composite.cpp", "projection.cpp", "ssim.cpp", "children.cpp")]
HEADERS = [CSRC / name for name in ("simd.h", "parallel.h", "pool.h")]
FLAGS = ["-O3", "-ffp-contract=fast", "-fopenmp"]
_configured = "auto"  # the render.kernels of this process's config (use_kernels)


@dataclass(frozen=True)
class Build:
    """The outcome of loading the extension: ``ops`` (``torch.ops.momentum_gs``) or None and why not."""

    ops: object | None
    note: str  # "ready in 9.1 s" (compiled, or loaded from the cache), or the first line of the error
    seconds: float
    march: str = "native"  # the -march it was compiled with
    target: str = ""  # what the compiled code says it is: "avx2, 32-byte vectors" (empty when not built)


class ModeError(UserError, ValueError):
    """A ``render.kernels`` or ``MOMENTUM_GS_KERNELS`` (``MOMENTUM_GS_COMPOSITOR``) value that is not one of
    its modes: one line on the command line, a ValueError to code that calls ``render``."""


def use_kernels(setting: str) -> None:
    """Make ``setting`` (a config's ``render.kernels``: auto, cpp or torch) the kernels of this process's CPU
    renders, unless the environment overrides it (:func:`kernels_mode`); ``ModeError`` for another value.
    Called where a config starts to be used (the trainer; the commands that read a trained run), after
    ``use_threads``, whose kernel thread count it passes on to loaded kernels (:func:`build` does on loading)."""
    global _configured
    if setting not in MODES:
        raise ModeError(f"config key 'render.kernels' must be one of {', '.join(MODES)}, got {setting!r}")
    _configured = setting
    if build.cache_info().currsize:
        _pass_threads(build().ops)


def _pass_threads(ops) -> None:
    """The kernels' thread count (``config.kernel_threads``) into the loaded kernels ``ops`` (None: not built),
    with torch's count it goes with: a later ``torch.set_num_threads`` makes the kernels follow torch's."""
    if ops is not None:
        ops.set_kernel_threads(kernel_threads(), torch.get_num_threads())


def kernels_mode() -> str:
    """The kernels CPU renders take: ``auto``, ``cpp`` or ``torch`` (see :func:`use_kernels`)."""
    return _choice()[0]


def _choice() -> tuple[str, str]:
    """(mode, what set it): ``MOMENTUM_GS_KERNELS``, else ``MOMENTUM_GS_COMPOSITOR``, else the config's
    ``render.kernels``. A bad value in either variable is a ``ModeError``, even where the other is set."""
    old = _from_variable(OLD_VARIABLE, OLD_MODES)
    new = _from_variable(KERNELS_VARIABLE, {mode: mode for mode in MODES})
    return new or old or (_configured, f"render.kernels={_configured}")


def _from_variable(variable: str, modes: dict[str, str]) -> tuple[str, str] | None:
    """(mode, "VARIABLE=value") of environment variable ``variable``, whose values are ``modes``' keys; None
    when it is unset or empty."""
    value = environment.text(variable).lower()
    if not value:
        return None
    if value not in modes:
        raise ModeError(f"{variable}={value!r}; expected one of {', '.join(modes)}")
    return modes[value], f"{variable}={value}"


def march() -> str:
    """The ``-march`` the kernels are built for: ``MOMENTUM_GS_MARCH``, else ``native``."""
    value = environment.text(MARCH_VARIABLE) or "native"
    if not all(c.isalnum() or c in "-_.+" for c in value):
        raise UserError(f"{MARCH_VARIABLE}={value!r} is not a -march value (e.g. native, x86-64-v3, armv8-a)")
    return value


@functools.lru_cache(maxsize=None)
def build() -> Build:
    """Compile (first time in this install, for this target) or load the extension, once per process; raises
    only for a bad ``MOMENTUM_GS_MARCH`` (a failed build is a ``Build`` without ops, said in one line). A
    compile says so before it starts and shows its elapsed time while it runs."""
    start = time.perf_counter()
    target = march()
    try:
        _put_pip_ninja_on_path()
        from torch.utils.cpp_extension import load

        name = f"momentum_gs_kernels_{_build_digest(target)}"
        with _build_lock(name) as folder, _announce(name, folder, target):
            load(name=name, sources=[str(path) for path in SOURCES], extra_cflags=[*FLAGS, f"-march={target}"],
                 extra_include_paths=[str(CSRC)], extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
        ops = torch.ops.momentum_gs
        # noqa below: fails here, not mid-render, if an op is absent
        ops.composite_forward, ops.composite_backward, ops.gaussians_forward, ops.gaussians_backward  # noqa: B018
        ops.project_forward, ops.project_backward, ops.intersect_tiles, ops.reference_visible  # noqa: B018
        ops.ssim_forward, ops.ssim_backward, ops.children_forward, ops.children_backward, ops.untile  # noqa: B018
        built_for = ops.build_target()
        _pass_threads(ops)
    except Exception as exc:  # no compiler, no ninja, a compile error: the torch ops take over
        failed = Build(None, _first_error(exc), time.perf_counter() - start, target)
        if _choice()[0] != "cpp":  # forced, the render refuses in one line (_checked_build) instead
            print(f"the CPU kernels did not build ({failed.note}): CPU renders take the slower PyTorch path",
                  file=sys.stderr, flush=True)
        return failed
    seconds = time.perf_counter() - start
    return Build(ops, f"ready in {seconds:.2f} s", seconds, target, built_for)


BUILD_SECONDS = "build_seconds"  # in a build's folder: how long its compile took, for the next estimate


def _estimate(root: Path) -> str:
    """How long a compile will take: the last one in ``root`` (any target), else what 2 cores take."""
    times = sorted(((path.stat().st_mtime, path.read_text().strip()) for path in root.glob(f"*/{BUILD_SECONDS}")),
                   reverse=True)
    return f"about {float(times[0][1]):.0f} s, as the last one here" if times else "20 s to a minute on 2 cores"


@contextlib.contextmanager
def _announce(name: str, folder: Path | None, target: str):
    """Around torch's load: when there is no build to load, one line before the compile and its elapsed time
    while it runs (a bar on standard error); the compile's time is kept for the next estimate."""
    if folder is None or (folder / f"{name}.so").exists():
        yield
        return
    print(f"building the CPU kernels for -march={target} (once per install and target, "
          f"{_estimate(folder.parent)}) in {folder}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with _ticking("building the CPU kernels"):
        yield
    if (folder / f"{name}.so").exists():
        (folder / BUILD_SECONDS).write_text(f"{time.perf_counter() - start:.1f}\n")


@contextlib.contextmanager
def _ticking(label: str):
    """A bar without a total on standard error, its elapsed time refreshed every second while the block runs."""
    done = threading.Event()
    with tqdm(desc=label, bar_format="{desc}: {elapsed}", file=sys.stderr) as bar:
        def tick() -> None:
            while not done.wait(1.0):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _checked_build(mode: str, source: str) -> Build:
    """``build()``; a UserError when ``mode`` (set by ``source``) is "cpp" and it did not build, naming the cache
    folder, the cause and the ways out."""
    built = build()
    if built.ops is None and mode == "cpp":
        raise UserError(f"{source}, but the C++ kernels cannot be built or loaded ({built.note}); their cache is "
                        f"{cache_root()}: remove that folder so that they build afresh, point TORCH_EXTENSIONS_DIR "
                        "at a folder this user can write, or set render.kernels=auto to take the PyTorch path")
    return built


def cache_root() -> str:
    """The folder of torch's extension builds: ``TORCH_EXTENSIONS_DIR``, else torch's default."""
    if environment.text("TORCH_EXTENSIONS_DIR"):
        return environment.text("TORCH_EXTENSIONS_DIR")
    try:
        from torch.utils.cpp_extension import get_default_build_root

        return get_default_build_root()
    except Exception:  # noqa: BLE001 - torch's layout changed: say where it usually is
        return str(Path.home() / ".cache" / "torch_extensions")


def use_cpp(tensor: Tensor) -> bool:
    """Whether a render of ``tensor``'s device and dtype takes the C++ kernels (:func:`kernels_mode`, built)."""
    mode, source = _choice()
    if mode == "torch" or tensor.device.type != "cpu" or tensor.dtype not in (torch.float32, torch.float64):
        return False
    return _checked_build(mode, source).ops is not None


def kernels_in_use(device: torch.device | str = "cpu") -> str:
    """One line naming the kernels that renders on ``device`` take, and why (builds the extension)."""
    mode, source = _choice()
    if torch.device(device).type != "cpu":
        return f"kernels: torch ({torch.device(device).type} tensors)"
    if mode == "torch":
        return f"kernels: torch ({source})"
    built = _checked_build(mode, source)
    if built.ops is None:
        return f"kernels: torch (the C++ kernels did not build: {built.note})"
    names = " + ".join(path.name for path in SOURCES)
    return f"kernels: cpp ({names}; {built.target} for -march={built.march}; {built.note}; {threads_in_use()})"


def _first_error(exc: Exception) -> str:
    """The compiler's first error line in a failed build's message (which starts with the command), else its
    first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    picked = next((line for line in lines if "error" in line.lower() and not line.startswith("[")), lines[0])
    return f"{type(exc).__name__}: {picked[:200]}"


# The instruction-set extensions a speed figure depends on, in the order they are named.
_ISA_FLAGS = ("avx512f", "avx2", "fma", "avx", "sse4_2", "asimd", "sve")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` ("model name", "flags", ...; empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def describe_cpu() -> str:
    """One line naming this CPU and the vector extensions it has, for benchmark tables: "AMD EPYC (x86_64,
    family 25 model 1; avx2 fma avx sse4_2; no avx512f)". A speed figure holds for the ISA it ran on."""
    fields = _cpuinfo()
    name = fields.get("model name") or fields.get("Hardware") or platform.processor() or "unknown CPU"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    where = [platform.machine()]
    if "cpu family" in fields:
        where.append(f"family {fields['cpu family']} model {fields.get('model', '?')}")
    elif "CPU part" in fields:
        where.append(f"implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}")
    has = [flag for flag in _ISA_FLAGS if flag in flags]
    isa = " ".join(has) or "no vector-extension flags read"
    if platform.machine() in ("x86_64", "AMD64") and "avx512f" not in flags:
        isa += "; no avx512f"
    return f"{name} ({', '.join(where)}; {isa})"


def _build_digest(target: str) -> str:
    """8 hex digits naming the build: its -march, the flags, where the sources are and their text (so that two
    checkouts or environments sharing torch's cache never rebuild or load each other's build) and, for
    ``native``, this CPU's instruction set, so that a shared cache never loads a -march=native build on
    another kind of CPU."""
    # "build.lock": builds take _build_lock; a folder shared with builds that did not could lose a live lock
    identity = " ".join([platform.machine(), target, "build.lock", *FLAGS, str(CSRC.resolve()),
                         *(path.read_text() for path in [*HEADERS, *SOURCES])])
    if target == "native":
        cpu = _cpuinfo()
        identity += platform.processor() + " ".join(cpu.get(key, "") for key in ("flags", "Features", "model name"))
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


@contextlib.contextmanager
def _build_lock(name: str):
    """Holds a lock around torch's build of extension ``name`` that the kernel releases when the process ends;
    yields the build's folder (None where there is no ``flock``: Windows).

    torch's own lock is a file that a killed build (Ctrl-C during the first build, the OOM killer) leaves behind,
    and every later build then waits for it for ever. Under this lock (``flock``), no other build of ours is
    running, so torch's file can only be such a leftover, and it is removed. Waiting for another process's
    build is said, with the time waited."""
    try:
        import fcntl
        from torch.utils.cpp_extension import _get_build_directory

        folder = Path(_get_build_directory(name, False))
    except Exception:  # noqa: BLE001 - no fcntl, or torch's layout changed: its own lock alone
        yield None
        return
    with open(folder / "build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process's build of the CPU kernels ({folder})", file=sys.stderr, flush=True)
            with _ticking("waiting for the CPU kernels"):
                fcntl.flock(handle, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield folder


def _put_pip_ninja_on_path() -> None:
    """cpp_extension runs ``ninja`` from PATH; the one the ``ninja`` wheel installs may not be on it."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        environment.prepend_path(ninja.BIN_DIR)
