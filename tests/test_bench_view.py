"""``scripts/bench_view.py`` measures the viewer's frames on a trained run and prints one table row per canvas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.tiny_training import train_tiny

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_view.py"


@pytest.mark.slow
def test_bench_view_prints_frames_per_second_and_gaussians_drawn(tiny_scene, tmp_path):
    run = train_tiny(tiny_scene, tmp_path / "run")
    result = subprocess.run([sys.executable, str(SCRIPT), str(run), "--sizes", "64x48", "--rounds", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    row = re.search(r"^\| 64x48 \| ([\d.]+) \| (\d+) \| (\d+x\d+) \| ([\d.]+) \|$", result.stdout, re.M)
    assert row, result.stdout
    assert float(row[1]) > 0 and int(row[2]) > 0 and float(row[4]) > 0


def test_bench_view_lod_prints_a_row_per_pose_and_frame_with_and_without_levels():
    script = SCRIPT.with_name("bench_view_lod.py")
    result = subprocess.run([sys.executable, str(script), "--gaussians", "20000", "--rounds", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "avx" in result.stdout.splitlines()[0] or "vector" in result.stdout.splitlines()[0]  # the CPU and its ISA
    rows = re.findall(r"^\| 20,000 \| (above|street) \| (\d+x\d+) \| (\d+) \| ([\d,]+) \| (\d+) \| ([\d,]+) \| "
                      r"([\d.]+|inf) \| ([\d ]+) \|", result.stdout, re.M)
    assert [(r[0], r[1]) for r in rows] == [("above", "160x120"), ("above", "640x480"), ("street", "160x120"),
                                           ("street", "640x480")], result.stdout
    assert all(int(r[3].replace(",", "")) > 0 and int(r[5].replace(",", "")) > 0 for r in rows)
