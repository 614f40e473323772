"""The CPU kernels' build as an install sees it: one build per install (two checkouts or environments sharing
torch's cache never rebuild or load each other's), a compile announced before it starts, waiting on another
process's build said, and every file the kernels include shipped in the package."""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from momentum_gs.render.kernels import build
from tests.helpers.wheel import build_wheel


def _install_at(monkeypatch, csrc: Path) -> None:
    """Point ``build`` at the kernel sources in ``csrc``, as another install's module would be."""
    monkeypatch.setattr(build, "CSRC", csrc)
    monkeypatch.setattr(build, "SOURCES", [csrc / path.name for path in build.SOURCES])
    monkeypatch.setattr(build, "HEADERS", [csrc / path.name for path in build.HEADERS])


def test_two_installs_side_by_side_never_share_a_build(tmp_path, monkeypatch):
    here = build._build_digest("x86-64-v3")
    other = tmp_path / "other-checkout" / "momentum_gs" / "render" / "kernels" / "csrc"
    shutil.copytree(build.CSRC, other)
    _install_at(monkeypatch, other)
    there = build._build_digest("x86-64-v3")
    assert there != here  # the same sources elsewhere: a build of their own, neither rebuilds the other's
    assert build._build_digest("x86-64-v3") == there  # and the same install finds its build again
    (other / "composite.cpp").write_text((other / "composite.cpp").read_text() + "\n// edited\n")
    assert build._build_digest("x86-64-v3") != there  # an edited source is another build, not a rebuild over it


def test_a_compile_is_announced_before_it_starts_and_timed_for_the_next(tmp_path, capsys):
    folder = tmp_path / "momentum_gs_kernels_abcd1234"
    folder.mkdir()
    with build._announce(folder.name, folder, "x86-64-v3"):
        assert "building the CPU kernels for -march=x86-64-v3" in capsys.readouterr().err  # before the work
        time.sleep(0.1)
        (folder / f"{folder.name}.so").write_bytes(b"")
    assert "building the CPU kernels: 00:00" in capsys.readouterr().err  # the bar's elapsed time
    seconds = float((folder / build.BUILD_SECONDS).read_text())
    assert 0.1 <= seconds < 5
    assert build._estimate(tmp_path) == f"about {seconds:.0f} s, as the last one here"
    with build._announce(folder.name, folder, "x86-64-v3"):  # a build to load: nothing said
        pass
    assert capsys.readouterr().err == ""


def test_waiting_for_another_process_build_is_said(tmp_path, monkeypatch, capsys):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda name, verbose: str(tmp_path))
    other = open(tmp_path / "build.lock", "w")  # noqa: SIM115 - held by "another process" until the timer
    fcntl.flock(other, fcntl.LOCK_EX)
    threading.Timer(1.5, other.close).start()
    start = time.perf_counter()
    with build._build_lock("momentum_gs_kernels_test") as folder:
        waited = time.perf_counter() - start
    assert folder == tmp_path and waited >= 1.0
    assert f"waiting for another process's build of the CPU kernels ({tmp_path})" in capsys.readouterr().err


def _installed_layout(tmp_path: Path) -> Path:
    """The package as a wheel holds it (:func:`~tests.helpers.wheel.build_wheel`), unpacked; returns the unpacked
    folder."""
    with zipfile.ZipFile(build_wheel(tmp_path)) as archive:
        archive.extractall(tmp_path / "installed")
    return tmp_path / "installed"


def test_the_wheel_ships_every_file_the_kernels_need(tmp_path):
    """What ``pip install .`` or a wheel gets: the whole csrc tree, and every file a kernel includes resolves
    there, without the checkout; then the compiler's view: each shipped source preprocesses with only the
    shipped folder and torch's headers."""
    from torch.utils.cpp_extension import include_paths

    installed = _installed_layout(tmp_path)
    shipped = installed / "momentum_gs" / "render" / "kernels" / "csrc"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in build.CSRC.iterdir())
    assert (installed / "momentum_gs" / "export" / "viewer.html").is_file()
    for source in shipped.iterdir():
        for included in re.findall(r'#include\s+"([^"]+)"', source.read_text()):
            assert (shipped / included).is_file(), f"{source.name} includes {included}, which is not shipped"
    if shutil.which("g++") is None:
        pytest.skip("no g++: the shipped sources are not preprocessed")
    for source in sorted(shipped.glob("*.cpp")):
        done = subprocess.run(["g++", "-std=c++20", "-E", f"-I{shipped}", *(f"-isystem{p}" for p in include_paths()),
                               str(source), "-o", "/dev/null"], capture_output=True, text=True)
        assert done.returncode == 0, f"{source.name}: {done.stderr.strip().splitlines()[:1]}"
