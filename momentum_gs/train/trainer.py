"""Single-block Scaffold-GS training: a loop in named phases, checkpoints, resume.

``Trainer.train()`` reads top to bottom: schedules → pick view → fetch image → render → losses → backward →
strategy hooks → optimizer step → logging → checkpoint. Block-wise training builds on the same pieces.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.config import Config, save_config
from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import SceneData
from momentum_gs.io.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from momentum_gs.losses import psnr, reconstruction_loss
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.model.optim import make_anchor_optimizer, make_decoder_optimizer, update_learning_rates
from momentum_gs.model.strategy import GrowPruneStrategy
from momentum_gs.train.progress import TrainLogger
from momentum_gs.train.views import view_schedule


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU runs are then reproducible)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_strategy(cfg: Config, anchors) -> GrowPruneStrategy:
    """The growing/pruning strategy of one anchor set, configured by ``cfg.strategy``."""
    return GrowPruneStrategy(cfg.strategy, anchors, seed=cfg.seed,
                             max_child_log_scale=cfg.strategy.max_child_log_scale,
                             reference_level_skip=cfg.strategy.reference_level_skip)


class Trainer:
    """Trains one Scaffold-GS anchor set on the training views of ``scene``.

    Args:
        cfg: the resolved config.
        scene: the loaded scene (cameras, points).
        out_dir: the run folder (config.yaml, ckpt/, tb/, train.log).
        device: where the model and images live.
    """

    def __init__(self, cfg: Config, scene: SceneData, out_dir: Path, device: torch.device):
        self.cfg, self.scene, self.out_dir, self.device = cfg, scene, Path(out_dir), device
        seed_everything(cfg.seed)
        self.model = GaussianScene.from_points(scene.points, cfg.model, len(scene.train), cfg.seed, device)
        self.extent = scene.extent()
        self.anchor_opt = make_anchor_optimizer(self.model.anchors, cfg.optim, self.extent)
        self.decoder_opt = make_decoder_optimizer(self.model.decoder, self.model.appearance, cfg.optim)
        self.strategy = make_strategy(cfg, self.model.anchors)
        self.loader = ImageLoader(scene.train, cache=cfg.data.cache_images, prefetch=cfg.data.prefetch)
        self.step = 0  # steps completed

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything needed to continue exactly where training stands."""
        return {
            "model": self.model.to_dict(),
            "anchor_optimizer": self.anchor_opt.state_dict(),
            "decoder_optimizer": self.decoder_opt.state_dict(),
            "strategy": self.strategy.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "extent": self.extent,
        }

    def save(self) -> Path:
        """Write ``ckpt/step_<N>.pt`` and return its path."""
        path = self.out_dir / "ckpt" / f"step_{self.step}.pt"
        save_checkpoint(path, self.step, self.state())
        return path

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save` (model, optimizers, strategy, generators)."""
        ckpt = load_checkpoint(path, map_location=self.device)
        self.model = GaussianScene.from_dict(ckpt["model"], self.cfg.model, self.device)
        self.extent = ckpt["extent"]
        self.anchor_opt = make_anchor_optimizer(self.model.anchors, self.cfg.optim, self.extent)
        self.decoder_opt = make_decoder_optimizer(self.model.decoder, self.model.appearance, self.cfg.optim)
        self.anchor_opt.load_state_dict(ckpt["anchor_optimizer"])
        self.decoder_opt.load_state_dict(ckpt["decoder_optimizer"])
        self.strategy = make_strategy(self.cfg, self.model.anchors)
        self.strategy.load_state_dict(ckpt["strategy"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        self.step = int(ckpt["step"])

    def resume(self) -> bool:
        """Load the latest checkpoint of the run folder, if any; True if one was loaded."""
        path = latest_checkpoint(self.out_dir / "ckpt")
        if path is not None:
            self.load(path)
        return path is not None

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self, until: int | None = None) -> dict:
        """Run from ``self.step`` to ``cfg.optim.steps`` (or stop after step ``until``); returns a summary.

        Stopping at ``until`` writes no final checkpoint, so the run folder is left exactly as a run killed
        after that step (schedules still span ``cfg.optim.steps``); call :meth:`save` to keep the state.
        """
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        end = cfg.optim.steps if until is None else min(until, cfg.optim.steps)
        save_config(cfg, self.out_dir / "config.yaml")
        logger = TrainLogger(self.out_dir, cfg.log, start=self.step, total=cfg.optim.steps)
        started = time.perf_counter()
        first_step = self.step
        views = view_schedule(self.step, end, len(self.scene.train), cfg.seed)
        try:
            for view_index, gt in self.loader.iterate(list(views)):
                metrics = self.train_step(view_index, gt.to(self.device, non_blocking=True))
                logger.log(self.step, metrics)
                if cfg.log.checkpoint_every and self.step % cfg.log.checkpoint_every == 0:
                    self.save()
        finally:
            logger.close()  # ends the progress bar's line, so an error message stands on its own
        checkpoint = self.save() if self.step == cfg.optim.steps else None
        seconds = time.perf_counter() - started
        return {"steps": self.step, "steps_run": self.step - first_step, "seconds": seconds,
                "steps_per_second": (self.step - first_step) / max(seconds, 1e-9),
                "num_anchors": self.model.anchors.num_anchors, "checkpoint": checkpoint and str(checkpoint)}

    def train_step(self, view_index: int, gt: torch.Tensor) -> dict:
        """One optimisation step on training view ``view_index`` with image ``gt`` [H, W, 3]."""
        step = self.step + 1  # schedules are indexed by the step being taken (1-based)
        update_learning_rates(self.anchor_opt, step)
        update_learning_rates(self.decoder_opt, step)
        camera = self.scene.train[view_index]

        view = self.model.render(camera, self.cfg.render, appearance_index=camera.uid)
        loss, parts = reconstruction_loss(view.output.image, gt, view.gaussians.scales, self.cfg.optim)
        loss.backward()

        self.strategy_hooks(step, view, camera)
        for opt in (self.anchor_opt, self.decoder_opt):
            opt.step()
            opt.zero_grad(set_to_none=True)
        self.step = step
        metrics = {"loss": float(loss.detach()), **{name: float(value) for name, value in parts.items()}}
        with torch.no_grad():
            metrics["psnr"] = float(psnr(view.output.image.detach().clamp(0, 1), gt))
        metrics["num_gaussians"] = view.gaussians.num
        metrics["num_anchors"] = self.model.anchors.num_anchors
        return metrics

    def strategy_hooks(self, step: int, view, camera) -> None:
        """Accumulate screen-space statistics, then grow and prune when the schedule says so."""
        if self.strategy.should_collect(step) and view.output.means2d.grad is not None:
            self.strategy.step_stats(view.gaussians, view.output.radii, view.output.means2d.grad,
                                     camera.width, camera.height)
        if self.strategy.should_adjust(step):
            self.strategy.adjust(self.model.anchors, self.anchor_opt)
