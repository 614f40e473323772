"""Outside programs in tests: stand-ins for a command, and where npm's global installs are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def fake_tool(folder: Path, script: str) -> list[str]:
    """A stand-in for a command such as ``splat-transform``: ``folder/splat-transform``, a shell script (its
    last argument is the output); returns the command as a list."""
    tool = folder / "splat-transform"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return [str(tool)]


def npm_global_root() -> Path | None:
    """The folder of npm's global packages (``npm root -g``; .ci/run installs the browser tests' packages
    there), or None without npm."""
    if shutil.which("npm") is None:
        return None
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
    return Path(root) if root else None
