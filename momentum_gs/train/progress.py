"""Training progress: a tqdm bar (loss, PSNR, Gaussians, ETA), TensorBoard scalars and a plain log file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from momentum_gs.config import LogConfig
from momentum_gs.train.distributed import SINGLE, World


class TrainLogger:
    """Shows and records the metrics of each step.

    Args:
        out_dir: the run folder; scalars go to ``out_dir/tb`` and ``out_dir/train.log`` (JSON lines).
        cfg: how often to refresh and whether TensorBoard is on.
        start, total: the first step shown and the last step of the run.
        world: the training processes. Only rank 0 prints, writes TensorBoard and ``train.log`` (metrics
            of all processes); with several processes each one also logs its own blocks' metrics to
            ``logs/rank<r>.log``.
    """

    def __init__(self, out_dir: Path, cfg: LogConfig, start: int, total: int, world: World = SINGLE):
        enabled = world.is_main
        self.cfg, self.enabled = cfg, enabled
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                        disable=not enabled, file=sys.stderr, mininterval=0.5)
        self.writer = None
        if enabled and cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

            self.writer = SummaryWriter(str(Path(out_dir) / "tb"))
        self.log_file = _open_log(Path(out_dir) / "train.log", start) if enabled else None
        self.rank_file = None
        if world.distributed:
            (Path(out_dir) / "logs").mkdir(parents=True, exist_ok=True)
            self.rank_file = _open_log(Path(out_dir) / "logs" / f"rank{world.rank}.log", start)
        self._since_refresh = 0

    def log(self, step: int, metrics: dict, local: dict | None = None) -> None:
        """Record ``metrics`` (name → number, over all processes) and this process's ``local`` ones at ``step``."""
        self._since_refresh += 1
        due = step % self.cfg.progress_every == 0 or step == self.bar.total
        if due and self.rank_file is not None:
            self.rank_file.write(json.dumps({"step": step, **(local or metrics)}) + "\n")
            self.rank_file.flush()
        if not self.enabled:
            return
        if due:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", psnr=f"{metrics['psnr']:.2f}",
                                 gaussians=metrics["num_gaussians"], refresh=False)
            self.bar.update(self._since_refresh)
            self._since_refresh = 0
            self.log_file.write(json.dumps({"step": step, **metrics}) + "\n")
            self.log_file.flush()
            if self.writer is not None:
                for name, value in metrics.items():
                    self.writer.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        """Flush the bar, TensorBoard and the log file."""
        if self._since_refresh and self.enabled:
            self.bar.update(self._since_refresh)
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        for file in (self.log_file, self.rank_file):
            if file is not None:
                file.close()


def _open_log(path: Path, start: int):
    """Open the JSON-lines log for appending, first dropping entries after ``start`` (left by a killed run)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True) if _step_of(line) <= start]
        path.write_text("".join(kept))
    return open(path, "a")


def _step_of(line: str) -> float:
    """The step of one log line; a line cut off by a kill counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")
