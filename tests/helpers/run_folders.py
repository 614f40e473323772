"""Run folders for tests: one written by hand as training and ``mgs eval`` leave it (for the tables and the
schemas), and a copy of a trained run that a test may change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from momentum_gs.config import load_config, save_config


def make_run(root, name, dataset="rubble-pixsfm", psnr=24.5, lpips=None, steps=200, blocks=1, active=1, **extra):
    """A run folder as training and ``mgs eval`` leave it: config, summary, train.log, eval/results.json."""
    folder = root / name
    (folder / "eval").mkdir(parents=True)
    save_config(load_config(overrides=[f"data.path=/data/{dataset}", f"blocks.active={active}"]), folder / "config.yaml")
    global_steps = steps * blocks // active
    (folder / "summary.json").write_text(json.dumps({"steps": global_steps, "seconds": 12.5, "num_blocks": blocks}))
    log = [json.dumps({"step": s, "loss": 0.1, "psnr": 15 + 8 * s / global_steps}) for s in range(10, global_steps + 1, 10)]
    (folder / "train.log").write_text("\n".join(log) + "\n{\"step\": 99")  # a line cut short by a killed run
    results = {"psnr": psnr, "ssim": 0.8, "lpips": lpips, "num_test_views": 4, "num_anchors": 1234,
               "num_gaussians": 5678, "seconds_per_view": 0.02, "fps": 50.0, "step": global_steps, **extra}
    (folder / "eval" / "results.json").write_text(json.dumps(results))
    return folder


def copy_run(trained, tmp_path) -> Path:
    """A copy of the run of ``trained`` (a fixture's (run, scene)) in ``tmp_path/run``, to change."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    return run
