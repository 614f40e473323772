"""The Khronos glTF validator (npm ``gltf-validator``, run by node through validate_gltf.js beside this file): its
reports on GLB files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def validator_reports(paths: list[Path], env: dict) -> list[dict]:
    """The Khronos validator's report on each of ``paths``, in order."""
    script = Path(__file__).with_name("validate_gltf.js")
    done = subprocess.run(["node", str(script), *map(str, paths)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def validator_messages(path: Path, env: dict) -> list[dict]:
    """The messages of the Khronos validator's report on the GLB ``path``."""
    return validator_reports([path], env)[0]["issues"]["messages"]
