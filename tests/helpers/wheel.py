"""The package as a wheel: built from a copy of the project's files, as ``pip wheel .`` builds it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(work: Path) -> Path:
    """Build the wheel of the checkout in ``work`` and return its path. A copy is built (no egg-info, whose
    file list would hide a missing entry; no build folder left in the checkout), offline: setuptools as
    installed, no dependencies."""
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "momentum_gs", source / "momentum_gs", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(work / "dist")], check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("*.whl")
    return wheel
