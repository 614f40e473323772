"""`render.kernels=cpp` on a kernel cache that cannot be used: one `error:` line naming the folder, the cause and
the way out, a non-zero exit and no traceback; the default setting falls back to the PyTorch path instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from momentum_gs.render.kernels import build as kernels
from tests.helpers.tiny_training import TINY_OVERRIDES


def built_folder() -> Path:
    """The folder of this machine's build of the kernels (built now if need be)."""
    if kernels.build().ops is None:
        pytest.skip("the C++ kernels do not build on this machine")
    from torch.utils.cpp_extension import _get_build_directory

    name = f"momentum_gs_kernels_{kernels._build_digest(kernels.march())}"
    return Path(_get_build_directory(name, False))


def train(tiny_scene: Path, out: Path, extensions: Path, kernels_setting: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("MOMENTUM_GS_KERNELS", None)
    return subprocess.run([sys.executable, "-m", "momentum_gs.cli", "train", "--data", str(tiny_scene), "--out",
                           str(out), *TINY_OVERRIDES, "optim.steps=4", f"render.kernels={kernels_setting}"],
                          capture_output=True, text=True, env=env, timeout=600)


def copied_cache(tmp_path: Path) -> tuple[Path, Path]:
    """(a TORCH_EXTENSIONS_DIR holding a copy of this machine's build where torch looks for it, that copy)."""
    from torch.utils.cpp_extension import _get_build_directory

    source = built_folder()
    root = tmp_path / "extensions"
    before = os.environ.get("TORCH_EXTENSIONS_DIR")
    os.environ["TORCH_EXTENSIONS_DIR"] = str(root)
    try:
        copy = Path(_get_build_directory(source.name, False))
    finally:
        os.environ.pop("TORCH_EXTENSIONS_DIR") if before is None else os.environ.update(TORCH_EXTENSIONS_DIR=before)
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build.lock", "lock"), dirs_exist_ok=True)
    return root, copy


def uncreatable(tmp_path: Path) -> Path:
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path / "a_file" / "extensions"


def lock_is_a_folder(tmp_path: Path) -> Path:
    root, copy = copied_cache(tmp_path)
    (copy / "build.lock").mkdir()
    return root


# A library cut short in a copied cache is rebuilt by torch's own build (the copy's build files name another
# folder), so it is no case here: it trains, after a compile.
@pytest.mark.parametrize("make_cache", [uncreatable, lock_is_a_folder])
def test_a_forced_cpp_setting_on_an_unusable_cache_is_one_line(make_cache, tiny_scene, tmp_path):
    root = make_cache(tmp_path)
    result = train(tiny_scene, tmp_path / "run", root, "cpp")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "render.kernels=cpp" in errors[0] and str(root) in errors[0]
    assert "render.kernels=auto" in errors[0] and "TORCH_EXTENSIONS_DIR" in errors[0]
    assert "slower PyTorch path" not in result.stderr  # no fallback is claimed where none is taken


def test_the_default_setting_falls_back_in_one_line(tiny_scene, tmp_path):
    result = train(tiny_scene, tmp_path / "run", uncreatable(tmp_path), "auto")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("the CPU kernels did not build") == 1 and "kernels: torch" in result.stdout
