"""The render backends by name: one literal table, and the builtin rasterizer's old name "torch" still read
where a run folder or a command line gives it."""

from __future__ import annotations

import pytest

from momentum_gs.config import load_config
from momentum_gs.eval.evaluate import evaluate_run
from momentum_gs.render import BACKENDS, render
from momentum_gs.render.builtin import render_builtin
from momentum_gs.render.gsplat_backend import render_gsplat
from tests.helpers.cli import mgs
from tests.helpers.render_scenes import random_scene
from tests.helpers.tiny_training import train_tiny


def test_the_backends_are_one_table():
    assert BACKENDS == {"builtin": render_builtin, "gsplat": render_gsplat}
    scene = random_scene(20, 16, 12, seed=1)
    assert render(**scene).image.shape == (12, 16, 3)  # "builtin" is the default


def test_the_command_line_reads_torch_as_builtin():
    done = mgs("config", "render.backend=torch")
    assert done.returncode == 0, done.stderr
    assert "  backend: builtin" in done.stdout.splitlines()


@pytest.mark.slow
def test_an_old_run_folder_whose_config_says_torch_still_loads(tiny_scene, tmp_path):
    """A run trained before the rename: its config.yaml says ``backend: torch`` and has no ``render.kernels``;
    it loads, renders and evaluates, as ``builtin``."""
    run = train_tiny(tiny_scene, tmp_path / "run", ("optim.steps=2", "render.backend=torch"))
    saved = (run / "config.yaml").read_text()
    assert "  backend: builtin" in saved.splitlines()  # a resolved config written to a run says today's name
    old = [line.replace("backend: builtin", "backend: torch") for line in saved.splitlines() if "kernels:" not in line]
    (run / "config.yaml").write_text("\n".join(old) + "\n")
    assert load_config(run / "config.yaml").render.backend == "builtin"
    results = evaluate_run(run, save_images=False)
    assert results["psnr"] > 5
