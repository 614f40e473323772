"""``scripts/bench_view.py`` measures the viewer's frames on a trained run and prints one table row per canvas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_view.py"


def test_bench_view_prints_frames_per_second_and_gaussians_drawn(tiny_scene, tmp_path):
    from tests.conftest import train_tiny

    run = train_tiny(tiny_scene, tmp_path / "run")
    result = subprocess.run([sys.executable, str(SCRIPT), str(run), "--sizes", "64x48", "--rounds", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    row = re.search(r"^\| 64x48 \| ([\d.]+) \| (\d+) \| (\d+x\d+) \| ([\d.]+) \|$", result.stdout, re.M)
    assert row, result.stdout
    assert float(row[1]) > 0 and int(row[2]) > 0 and float(row[4]) > 0
