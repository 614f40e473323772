"""The package installed from its wheel, away from any checkout: ``mgs demo`` and ``--config NAME`` find the
configs the wheel ships."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from momentum_gs.config import shipped_names
from tests.helpers.wheel import ROOT, build_wheel

pytestmark = pytest.mark.slow  # a wheel, a virtual environment and a short demo


def _install(tmp_path: Path) -> Path:
    """A fresh virtual environment with the wheel installed; returns its ``bin`` folder. Its dependencies (torch
    and the rest) come from this Python's site-packages, so nothing is downloaded; the wheel's copy of the package
    goes into the environment itself, ahead of an editable install of a checkout that those site-packages hold."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--force-reinstall", str(build_wheel(tmp_path))], check=True, capture_output=True)
    return venv / "bin"


def test_an_installed_wheel_runs_the_demo_with_its_shipped_config(tmp_path):
    assert not tmp_path.resolve().is_relative_to(ROOT.resolve())
    bin_, work = _install(tmp_path), tmp_path / "work"
    work.mkdir()  # nothing of the checkout here, nor on the path
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["MOMENTUM_GS_KERNELS"] = "torch"  # not the C++ kernels: their first build would take minutes

    def run(*args):
        done = subprocess.run([str(a) for a in args], cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()

    (imported,) = run(bin_ / "python", "-c", "import momentum_gs; print(momentum_gs.__file__)")
    assert Path(imported).is_relative_to(tmp_path / "venv"), imported  # the wheel's copy, not the checkout's
    shipped = run(bin_ / "python", "-c", "from momentum_gs.config import shipped_names; print(*shipped_names())")
    assert shipped == [" ".join(shipped_names())] and len(shipped_names()) > 10  # every config of the checkout
    assert "  steps: 2000" in run(bin_ / "mgs", "config", "--config", "brighton_beach")  # a name, from any folder

    lines = run(bin_ / "mgs", "demo", "--preset", "tiny", "--data", "tiny", "--out", "run", "blocks.partition=auto:2",
                "optim.steps=6", "blocks.interval=3", "weighting.eval_interval=3", "weighting.warmup=3",
                "device=cpu", "log.tensorboard=false")
    assert lines[-1] == "run/eval/results.json"
    results = json.loads((work / lines[-1]).read_text())
    assert results["num_test_views"] > 0 and 5 < results["psnr"] < 60
    assert (work / "run" / "eval" / "strip.png").is_file() and (work / "run" / "partition.npz").is_file()
    saved = (work / "run" / "config.yaml").read_text()  # the shipped demo.yaml's settings, not the defaults'
    assert "  active: 2\n" in saved and "  lambda_cons: 5.0\n" in saved
