"""PlayCanvas's ``splat-transform`` (Node.js), the outside program the export runs: it converts our standard PLY
files into PlayCanvas's formats (``mgs export --format sog`` and ``sog-lod``). It is found on the trusted PATH
only (:mod:`momentum_gs.io.programs`); docs/web.md says which of its versions runs on which Node.js.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from momentum_gs.errors import UserError
from momentum_gs.io.programs import find_program

INSTALL_SPLAT_TRANSFORM = ("install Node.js 22 or newer and run `npm install -g @playcanvas/splat-transform` "
                           "(on Node.js 18 or 20: `npm install -g @playcanvas/splat-transform@2.7.1`)")


def splat_transform_command(what: str = "--format sog") -> list[str]:
    """How to run ``splat-transform``: the command on the PATH (never one in the working folder, e.g. its
    ./node_modules: see :mod:`momentum_gs.io.programs`); a UserError saying what to install when it is not there."""
    return [find_program("splat-transform", what, INSTALL_SPLAT_TRANSFORM)]


def run_splat_transform(command: list[str], inputs: list[str], made: Path) -> None:
    """Convert ``inputs`` (files, each maybe followed by its actions) into ``made`` on the GPU splat-transform
    finds (WebGPU) or, where that fails, on the CPU, where compressing SH degrees 1-3 takes minutes
    (docs/web.md). ``-w``: a failed try may leave part of a multi-file output, which the next overwrites. A
    conversion that fails on both is a UserError naming ``made`` and saying why."""
    for device in ([], ["--gpu", "cpu"]):
        made.unlink(missing_ok=True)  # a failed try can leave an empty file, which the next would refuse
        try:
            result = subprocess.run([*command, *device, "--quiet", "-w", *inputs, str(made)], capture_output=True,
                                    text=True)
        except OSError as exc:  # e.g. its `#!/usr/bin/env node` finds no node
            raise UserError(f"cannot run splat-transform ({exc.strerror}); {INSTALL_SPLAT_TRANSFORM}")
        if result.returncode == 0 and made.is_file():
            return
    raise UserError(f"splat-transform could not write {made.name}: {_reason(result)}")


def _reason(result: subprocess.CompletedProcess) -> str:
    """The line of a failed splat-transform's output that says why (its first error line, else its last)."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    if errors:
        return errors[0][:200]
    return lines[-1][:200] if lines else f"exit status {result.returncode}"
