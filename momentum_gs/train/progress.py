"""Training progress: a tqdm bar (loss, PSNR, Gaussians, ETA), a plain log file, and scalars and images
for TensorBoard and (optionally, offline by default) Weights & Biases."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

import numpy as np
import torch

from momentum_gs.config import LogConfig
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.train_log import log_entry
from momentum_gs.train.distributed import SINGLE, World


class Metrics:
    """Named numbers of one step, left on the device until :meth:`read` (one read-back for all of them).

    On a GPU, reading a value waits for the device to finish the step; the logger reads only the steps it
    shows or writes.
    """

    def __init__(self, names: list[str], values: torch.Tensor):
        self.names, self.values = list(names), values

    def read(self) -> dict[str, float | int]:
        """name → number; counts (``num_*``) as whole numbers."""
        return {name: round(value) if name.startswith("num_") else value
                for name, value in zip(self.names, self.values.tolist())}


def _read(metrics: Metrics | dict | None) -> dict | None:
    return metrics.read() if isinstance(metrics, Metrics) else metrics


class TrainLogger:
    """Shows and records the metrics of each step.

    Args:
        out_dir: the run folder; scalars go to ``out_dir/tb`` and ``out_dir/train.log`` (JSON lines), and
            with ``cfg.wandb`` to a Weights & Biases run in ``out_dir/wandb``.
        cfg: how often to refresh, and which of TensorBoard and Weights & Biases are on.
        start, total: the first step shown and the last step of the run.
        world: the training processes. Only rank 0 prints, writes TensorBoard and ``train.log`` (metrics
            of all processes); with several processes each one also logs its own blocks' metrics to
            ``logs/rank<r>.log``.
        quiet: show and record nothing (a probe's steps).
    """

    def __init__(self, out_dir: Path, cfg: LogConfig, start: int, total: int, world: World = SINGLE,
                 run_config: dict | None = None, quiet: bool = False):
        enabled = world.is_main and not quiet
        self.cfg, self.enabled = cfg, enabled
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                        disable=not enabled, file=sys.stderr, mininterval=0.5)
        self.writer = None
        if enabled and cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

            self.writer = SummaryWriter(str(RunFolder(out_dir).tensorboard))
        self.wandb = _start_wandb(out_dir, cfg, run_config) if enabled and cfg.wandb else None
        self.log_file = _open_log(RunFolder(out_dir).train_log, start) if enabled else None
        self.rank_file = None
        if world.distributed:
            path = RunFolder(out_dir).rank_log(world.rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.rank_file = _open_log(path, start)
        self._since_refresh = 0
        self.started = time.perf_counter()

    def log(self, step: int, metrics: Metrics | dict, local: Metrics | dict | None = None) -> None:
        """Record ``metrics`` (name → number, over all processes) and this process's ``local`` ones at ``step``.

        They are read from the device only at the steps that are shown (every ``progress_every``).
        """
        self._since_refresh += 1
        due = step % self.cfg.progress_every == 0 or step == self.bar.total
        if due and self.rank_file is not None:
            self.rank_file.write(json.dumps({"step": step, **_read(local or metrics)}) + "\n")
            self.rank_file.flush()
        if not self.enabled:
            return
        if due:
            metrics = _read(metrics)
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", psnr=f"{metrics['psnr']:.2f}",
                                 gaussians=f"{metrics['num_gaussians']:.0f}", refresh=False)
            self.bar.update(self._since_refresh)
            self._since_refresh = 0
            seconds = round(time.perf_counter() - self.started, 3)  # wall time since this start (a resume restarts it)
            self.log_file.write(json.dumps({"step": step, **metrics, "seconds": seconds}) + "\n")
            self.log_file.flush()
            self.scalars(step, {f"train/{name}": value for name, value in metrics.items()})

    def scalars(self, step: int, values: dict) -> None:
        """Record named numbers at ``step`` in TensorBoard and Weights & Biases (rank 0 only)."""
        if not self.enabled:
            return
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    def image(self, step: int, name: str, image: torch.Tensor) -> None:
        """Record an [H, W, 3] image in [0, 1] at ``step`` (rank 0 only)."""
        if not self.enabled:
            return
        pixels = image.detach().clamp(0, 1).mul(255).round().byte().cpu().numpy()
        if self.writer is not None:
            self.writer.add_image(name, pixels, step, dataformats="HWC")
        if self.wandb is not None:
            import wandb

            self.wandb.log({name: wandb.Image(np.ascontiguousarray(pixels))}, step=step)

    def retotal(self, total: int) -> None:
        """The run's last step moved to ``total`` (a re-plan): the bar counts to it."""
        self.bar.total = total
        self.bar.refresh()

    def write(self, line: str) -> None:
        """Print ``line`` above the bar (rank 0, not quiet)."""
        if self.enabled:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        """Flush the bar, TensorBoard and the log file."""
        if self._since_refresh and self.enabled:
            self.bar.update(self._since_refresh)
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
        for file in (self.log_file, self.rank_file):
            if file is not None:
                file.close()


def _start_wandb(out_dir: Path, cfg: LogConfig, run_config: dict | None):
    """A Weights & Biases run stored in ``out_dir/wandb``; a resumed training continues the same run."""
    try:
        import wandb
    except ImportError:
        raise UserError("log.wandb=true needs Weights & Biases: pip install wandb (or set log.wandb=false)")
    folder = RunFolder(out_dir).wandb
    folder.mkdir(parents=True, exist_ok=True)
    run_id = folder / "run_id"
    if not run_id.is_file():
        run_id.write_text(wandb.util.generate_id())
    return wandb.init(project=cfg.wandb_project, dir=str(out_dir), mode=cfg.wandb_mode, id=run_id.read_text(),
                      resume="allow", name=Path(out_dir).resolve().name, config=run_config)


def _open_log(path: Path, start: int):
    """Open the JSON-lines log for appending, first dropping entries after ``start`` (left by a killed run)."""
    if path.is_file():
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        kept = [line for line in lines if _step_of(line) <= start]
        if len(kept) < len(lines):  # rewritten whole or not at all: a kill here keeps the old log
            atomic_write_text(path, "".join(kept))
    return open(path, "a")


def _step_of(line: str) -> float:
    """The step of one log line; a line cut off by a kill, or one that does not fit
    :data:`~momentum_gs.io.train_log.LOG_LINE` (a step that is not a whole number, a PSNR that is not a number),
    counts as after every step (and is dropped on a resume)."""
    try:
        return log_entry(line, "a train.log line")["step"]
    except UserError:
        return float("inf")


def counter_bar(desc: str, unit: str):
    """A ``progress(done, total)`` callback that draws a tqdm bar (created at the first call, closed at the
    last), for long work that reports its own progress (`mgs synth`, and `mgs demo` when it makes its city)."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress
