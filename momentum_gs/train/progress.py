"""Training progress: a tqdm bar (loss, PSNR, Gaussians, ETA), TensorBoard scalars and a plain log file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from momentum_gs.config import LogConfig


class TrainLogger:
    """Shows and records the metrics of each step.

    Args:
        out_dir: the run folder; scalars go to ``out_dir/tb`` and ``out_dir/train.log`` (JSON lines).
        cfg: how often to refresh and whether TensorBoard is on.
        start, total: the first step shown and the last step of the run.
        enabled: False on every process but the first (only rank 0 prints and writes TensorBoard).
    """

    def __init__(self, out_dir: Path, cfg: LogConfig, start: int, total: int, enabled: bool = True):
        self.cfg, self.enabled = cfg, enabled
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                        disable=not enabled, file=sys.stderr, mininterval=0.5)
        self.writer = None
        if enabled and cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

            self.writer = SummaryWriter(str(Path(out_dir) / "tb"))
        self.log_file = _open_log(Path(out_dir) / "train.log", start) if enabled else None
        self._since_refresh = 0

    def log(self, step: int, metrics: dict) -> None:
        """Record ``metrics`` (name → number) at ``step``."""
        self._since_refresh += 1
        if not self.enabled:
            return
        if step % self.cfg.progress_every == 0 or step == self.bar.total:
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
        if self.log_file is not None:
            self.log_file.close()


def _open_log(path: Path, start: int):
    """Open the JSON-lines log for appending, first dropping entries after ``start`` (left by a killed run)."""
    if start > 0 and path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True) if _step_of(line) <= start]
        path.write_text("".join(kept))
    return open(path, "a")


def _step_of(line: str) -> float:
    """The step of one log line; a line cut off by a kill counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")
