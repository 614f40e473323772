"""Outside programs (``splat-transform``, ``node``) are found on the PATH, never in the working folder.

A folder a user works in may have come from anyone (a downloaded dataset or run folder), so a program found
there must not run: :func:`find_program` looks only in the PATH's absolute folders other than the working
folder itself, which excludes the empty and "." entries a PATH may hold.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from momentum_gs.errors import UserError


def trusted_path() -> str:
    """The PATH's absolute folders, without the working folder (``os.pathsep``-joined)."""
    here = Path.cwd().resolve()
    kept = []
    for entry in os.get_exec_path():
        if not entry or not os.path.isabs(entry):
            continue
        try:
            if Path(entry).resolve() == here:
                continue
        except OSError:
            continue
        kept.append(entry)
    return os.pathsep.join(kept)


def find_program(name: str, needed_for: str, install: str) -> str:
    """The absolute path of program ``name`` on the trusted PATH (:func:`trusted_path`); else a UserError in one
    line: "<needed_for> needs <name>: <install>"."""
    found = shutil.which(name, path=trusted_path())
    if found is None:
        raise UserError(f"{needed_for} needs {name}, which is not on the PATH: {install}")
    return str(Path(found).absolute())
