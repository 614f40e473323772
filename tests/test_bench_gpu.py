"""scripts/bench_gpu.py end to end on the CPU (torch backend, the tiny city): the table it prints is read
back from the runs it made. scripts/gpu_checks.sh refuses a machine without a GPU before it writes anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_prints_one_row_per_run_on_the_cpu(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "scripts/bench_gpu.py", "--device", "cpu", "--backends", "torch", "--scenes", "city",
         "--city-preset", "tiny", "--blocks", "2", "--steps", "4", "--out", str(out), "log.progress_every=1"],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| city |")]
    assert len(rows) == 1, result.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    run = out / "synthetic_tiny_torch"
    summary = json.loads((run / "summary.json").read_text())
    results = json.loads((run / "eval" / "results.json").read_text())
    assert cells[:2] == ["city", "torch"] and summary["steps"] == 4  # 2 blocks, 2 active, 4 steps each
    assert cells[2] == f"{summary['steps_per_second']:.2f}" and cells[4] == f"{results['fps']:.1f}"
    assert 50 < float(cells[3]) < 20000  # peak resident memory of the training process, MB
    assert cells[5] == "–" and cells[6] == f"{results['psnr']:.2f}"  # no GPU memory to report on the CPU


def test_bench_gpu_refuses_gsplat_on_the_cpu_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "scripts/bench_gpu.py", "--device", "cpu", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "needs a CUDA device" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_checks_refuse_a_machine_without_a_gpu_and_write_nothing(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {"PATH": os.environ["PATH"], "PYTHON": sys.executable, "WORK": str(work)}
    result = subprocess.run(["bash", "scripts/gpu_checks.sh", str(out), "tests"], capture_output=True, text=True,
                            cwd=REPO, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no CUDA GPU" in result.stderr and not out.exists() and not work.exists()
    wrong = subprocess.run(["bash", "scripts/gpu_checks.sh", str(out), "tests", "benchmarks"], capture_output=True,
                           text=True, cwd=REPO, env=env)
    assert wrong.returncode == 2 and "unknown part 'benchmarks'" in wrong.stderr and not out.exists()
