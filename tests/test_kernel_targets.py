"""The C++ kernels compile for a target other than this machine's: aarch64 with NEON, by the Debian cross
compiler, against this (x86-64) torch's headers, with the flags ``build.build`` uses. The kernels are written
with vector extensions so that every target runs the same source; this catches an x86-only construct before an
ARM user (Apple M, Graviton) meets it as a failed build and a silent fall back to the torch kernels."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from torch.utils import cpp_extension

from momentum_gs.render.kernels import build

CROSS = shutil.which("aarch64-linux-gnu-g++")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CROSS is None, reason="aarch64-linux-gnu-g++ (Debian g++-aarch64-linux-gnu) "
                                 "is not installed: the aarch64 compile is not checked")]
MARCH = "armv8-a"  # the baseline AArch64 profile; NEON (Advanced SIMD) is part of it
EM_AARCH64 = 183  # ELF e_machine of an AArch64 object


def _cflags() -> list[str]:
    """What ``cpp_extension.load`` passes to the compiler (torch 2.13: its defines, the include dirs, -fPIC,
    -std=c++20; there is no -D_GLIBCXX_USE_CXX11_ABI any more), then ``build.FLAGS`` with the ARM -march in
    place of ``native``."""
    system = [*cpp_extension.include_paths(), sysconfig.get_path("include", scheme="posix_prefix")]
    return ["-DTORCH_EXTENSION_NAME=momentum_gs_kernels_aarch64", "-DTORCH_API_INCLUDE_EXTENSION_H",
            f"-I{build.CSRC}", *(f"-isystem{path}" for path in system), "-fPIC", "-std=c++20",
            *build.FLAGS, f"-march={MARCH}"]


def _compile(source: Path, out_dir: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Cross-compiles ``source`` to an object in ``out_dir``: (the compiler's run, the object's path)."""
    obj = out_dir / f"{source.stem}.o"
    command = [CROSS, *_cflags(), "-c", str(source), "-o", str(obj)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600), obj


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Each source's compile (about 10 to 25 s of one core each, most of it torch's headers), two at a time."""
    out_dir = tmp_path_factory.mktemp("aarch64")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda source: _compile(source, out_dir), build.SOURCES)
        return {source.name: result for source, result in zip(build.SOURCES, results)}


@pytest.mark.parametrize("name", [path.name for path in build.SOURCES])
def test_source_compiles_for_aarch64(compiled, name):
    result, obj = compiled[name]
    assert result.returncode == 0, f"{name} does not compile for aarch64:\n{result.stderr[-4000:]}"
    header = obj.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 2 and header[5] == 1, f"{name}: not a 64-bit little-endian ELF"
    assert int.from_bytes(header[18:20], "little") == EM_AARCH64, f"{name}: e_machine is not AArch64"


def test_neon_target_picks_16_byte_vectors():
    """simd.h's choice for the NEON target, read from the preprocessor's macros: 16-byte vectors (one NEON
    register), ISA "neon", and the compiler does define __ARM_NEON for this -march."""
    command = [CROSS, f"-march={MARCH}", "-std=c++20", "-x", "c++", "-dM", "-E", str(build.CSRC / "simd.h")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    macros = dict(line.split(" ", 2)[1:] for line in result.stdout.splitlines() if line.count(" ") >= 2)
    assert macros.get("__ARM_NEON") == "1"
    assert macros.get("MGS_VECTOR_BYTES") == "16"
    assert macros.get("MGS_ISA") == '"neon"'
