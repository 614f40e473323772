"""Training the tiny synthetic scene in a few dozen steps, for tests that need a trained run: the overrides of
the tiny config, one run, and a run of 2 blocks. (The fixtures that build on them are in tests/conftest.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from momentum_gs.config import load_config
from momentum_gs.data.scene import load_scene
from momentum_gs.partition import auto_partition
from momentum_gs.train.run import train

# A few dozen steps with growing and pruning inside the window, on the tiny scene.
TINY_OVERRIDES = [
    "optim.steps=24",
    "strategy.start_stat=2",
    "strategy.update_from=6",
    "strategy.update_interval=6",
    "strategy.update_until=100",
    "strategy.success_threshold=0.3",
    "log.tensorboard=false",
    "log.progress_every=1",
    "device=cpu",
]


def train_tiny(scene: Path, out: Path, overrides: tuple[str, ...] = ()) -> Path:
    """Train the tiny config (plus ``overrides``) on ``scene`` into ``out``; returns ``out``."""
    cfg = load_config(overrides=TINY_OVERRIDES + list(overrides))
    cfg.data.path, cfg.out = str(scene), str(out)
    train(cfg)
    return Path(out)


def train_two_blocks(tiny_scene: Path, folder: Path) -> tuple[Path, Path]:
    """The tiny scene copied into ``folder/scene`` and trained as 2 blocks into ``folder/run``: (run, scene)."""
    scene = shutil.copytree(tiny_scene, folder / "scene")
    cfg = load_config()
    cfg.data.path = str(scene)
    auto_partition(load_scene(cfg.data), 2).save(folder / "partition.npz")
    return train_tiny(scene, folder / "run", (f"blocks.partition={folder / 'partition.npz'}",)), scene


def step_by_hand(trainer, block, views: list[int]) -> None:
    """What processes on one block do together in their first step, in one process: render each of ``views``,
    back-propagate its loss, average the gradients over the views and take the block's and the decoder's step at
    step 1's learning rates."""
    from momentum_gs.model.gaussian_scene import render_view
    from momentum_gs.model.optim import update_learning_rates

    for index in views:
        camera = trainer.cameras[index]
        view = render_view([(block.anchors, trainer.decoder)], camera, trainer.cfg.render, trainer.appearance,
                           camera.uid)
        trainer.block_loss(view, trainer.loader[index], camera, trainer.decoder, False)[0].backward()
    for opt in (block.optimizer, trainer.decoder_opt):
        for p in (p for group in opt.param_groups for p in group["params"] if p.grad is not None):
            p.grad /= len(views)
        update_learning_rates(opt, 1)
        opt.step()
