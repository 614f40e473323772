"""The training loop reads the device's data back to the host only where sizes depend on it.

On a GPU every such read stalls the CPU until the device has finished the work queued before it. A step
needs two: the number of anchors in view and the number of children kept, which size every later
tensor. The step's metrics stay on the device until the logger shows them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.render import rasterize
from momentum_gs.render.kernels.build import use_cpp
from momentum_gs.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from host_reads import HostReads, plain_step_syncs, uncounted  # noqa: E402


def _counting_trainer(cfg, monkeypatch) -> tuple[Trainer, list[dict]]:
    """A trainer whose steps are counted, each step's reads by kind in the returned list.

    Not counted: the "builtin" rasterizer's forward (a GPU run uses gsplat's) and Adam's steps, whose step
    counters live on the host (they are read with ``.item()`` there, not from the device).
    """
    monkeypatch.setitem(rasterize.BACKENDS, "builtin", uncounted(rasterize.BACKENDS["builtin"]))
    monkeypatch.setattr(torch.optim.Adam, "step", uncounted(torch.optim.Adam.step))
    trainer = Trainer(cfg, load_scene(cfg.data), Path(cfg.out), torch.device("cpu"))
    steps, train_step = [], trainer.train_step

    def counted(views):
        with HostReads() as reads:
            out = train_step(views)
        steps.append(dict(reads.counts))
        return out

    monkeypatch.setattr(trainer, "train_step", counted)
    return trainer, steps


@pytest.mark.slow
def test_a_training_step_reads_two_sizes_from_the_device(tiny_config, monkeypatch):
    tiny_config.teacher.enabled = True  # the consistency loss gathers the kept children too
    tiny_config.log.progress_every = 8
    trainer, steps = _counting_trainer(tiny_config, monkeypatch)
    trainer.train()
    adjusting = {s for s in range(1, len(steps) + 1) if trainer.blocks[0].strategy.should_adjust(s)}
    plain = [counts for s, counts in enumerate(steps, start=1) if s not in adjusting]
    assert len(plain) >= 18
    clamp_check = 0 if use_cpp(torch.zeros(0)) else 1
    for counts in plain:
        # the two sizes; one host-side read of the block weights; the torch compositor's backward checks
        # once whether any opacity reaches its clamp (the fused one and gsplat's backward do not)
        assert counts == {"nonzero": 2, "scalar read": 1 + clamp_check}, counts
    # metrics were still logged, read at the shown steps only
    log = [json.loads(line) for line in Path(tiny_config.out, "train.log").read_text().splitlines()]
    assert [r["step"] for r in log] == [8, 16, 24] and log[-1]["num_anchors"] == trainer.num_anchors()
    assert all(r["loss"] > r["l1"] > 0 and r["psnr"] > 10 for r in log)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(importlib.util.find_spec("gsplat") is None, reason="gsplat not installed (pip install .[cuda])")
def test_on_a_gpu_a_training_step_waits_only_for_the_two_sizes(tiny_config):
    """What the dispatch count above cannot see: blocking copies and stream waits. On a GPU with the gsplat
    backend, every synchronizing call of a plain step from our code is one of the two ``nonzero`` sizes."""
    tiny_config.teacher.enabled = True
    plain = plain_step_syncs(tiny_config)
    assert len(plain) >= 16
    for sites in plain:
        ours = sorted(site for site in sites if site != "gsplat")
        assert ours == ["neural.py:generate_gaussians"] * 2, sites
