"""scripts/check_gaps.py, the check that a command is never silent for long (`make demo` after `make setup`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test waits out a silence of seconds

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_gaps.py"


def _check(limit: float, program: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--limit", str(limit), "--", sys.executable, "-c", program],
                          capture_output=True, text=True, timeout=60)


def test_a_long_silence_fails_and_names_what_came_before_it():
    # limits well above an interpreter's start on a loaded machine (the start is a silent stretch too)
    quiet = _check(4, "import time; print('loading', flush=True); time.sleep(6); print('done')")
    assert quiet.returncode == 1 and "FAIL: silent for 6." in quiet.stdout
    assert "s after: loading" in quiet.stdout.split("longest silent stretches:")[1].splitlines()[1]


def test_a_progress_bar_redraw_counts_as_output():
    redraws = ("import sys, time\nfor i in range(6):\n    sys.stderr.write(f'\\rstep {i}'); sys.stderr.flush(); "
               "time.sleep(1)\nprint()")
    ticking = _check(4, redraws)
    assert ticking.returncode == 0 and "ok: never silent for more than 4 s" in ticking.stdout, ticking.stdout
    failing = _check(5, "raise SystemExit(3)")
    assert failing.returncode == 3 and "the command failed (exit 3)" in failing.stdout
