"""A script of scripts/ loaded as a module, so that a test can call its parts. (Not named ``scripts.py``: a test
that puts tests/helpers on the import path would make ``scripts`` this module, not the folder.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module. scripts/ is on the import path while it loads, as when it runs: a script
    may import another beside it."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module
