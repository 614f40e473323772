"""Outside programs in tests: stand-ins for a command, where npm's global installs are, and whether node finds
an npm package."""

from __future__ import annotations

import os
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


def node_with(package: str) -> dict | None:
    """The environment under which ``node`` finds the npm ``package`` (global installs included), or None."""
    node = shutil.which("node")
    if node is None:
        return None
    paths = [os.environ.get("NODE_PATH", ""), str(npm_global_root() or "")]
    env = {**os.environ, "NODE_PATH": os.pathsep.join(p for p in paths if p)}
    found = subprocess.run([node, "-e", f"require.resolve('{package}')"], env=env, capture_output=True, timeout=60)
    return env if found.returncode == 0 else None
