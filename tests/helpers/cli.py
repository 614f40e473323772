"""``mgs`` run as a user runs it (a subprocess), and the checks on what it prints for bad input: status 2, no
traceback, one ``error:`` line."""

from __future__ import annotations

import subprocess
import sys


def mgs(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m momentum_gs.cli *args`` in ``cwd``; its output captured as text."""
    return subprocess.run([sys.executable, "-m", "momentum_gs.cli", *args], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(result, fragment):
    """Status 2, no traceback, and exactly one ``error:`` line, the last thing printed (a progress bar that
    was running may stand before it)."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error: " in line]
    assert len(errors) == 1 and lines[-1].startswith("error: "), result.stderr
    assert fragment in lines[-1]
    assert "Traceback" not in result.stderr


def assert_ends_in_error(result, fragment: str) -> None:
    """Status 2, no traceback, and the last line printed an ``error:`` line holding ``fragment`` (lines before it,
    warnings included, are not looked at)."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and fragment in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
