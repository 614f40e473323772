"""The layout of a run folder: one type that knows every path of a run.

``RUN/`` holds ``config.yaml`` (the resolved config, itself a valid config file), ``ckpt/step_<N>.pt``
(checkpoints), ``offload/`` (parked blocks while training), ``train.log``, ``tb/`` (TensorBoard),
``summary.json``, ``eval/`` (``results.json``, ``per_view.json``, ``strip.png``, ``renders/``, ``maps/``),
``export/`` and, for ``blocks.partition=auto:N``, ``partition.npz``. Paths only: what is in the files is read by
the modules that own them. A file of the run is named relative to ``root`` (:meth:`RunFolder.relative`), so a
moved or copied run folder still finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    """The paths of the run folder ``root``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """The resolved config the run trained with."""
        return self.root / "config.yaml"

    def relative(self, path: str | Path) -> str | None:
        """``path`` relative to the run folder (``/``-separated) when it lies inside it, else None."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None

    @property
    def partition(self) -> Path:
        """The partition ``blocks.partition=auto:N`` makes for the run."""
        return self.root / "partition.npz"

    @property
    def ckpt(self) -> Path:
        """The folder of checkpoints, ``step_<N>.pt``."""
        return self.root / "ckpt"

    def checkpoint(self, step: int) -> Path:
        """The checkpoint written at ``step``."""
        return self.ckpt / f"step_{int(step)}.pt"

    @property
    def offload(self) -> Path:
        """Where parked blocks wait while training (one sub-folder per rank when distributed)."""
        return self.root / "offload"

    @property
    def train_log(self) -> Path:
        """The training's log, one line per logged step."""
        return self.root / "train.log"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's event files."""
        return self.root / "tb"

    @property
    def summary(self) -> Path:
        """The training's summary (steps, time, the blocks)."""
        return self.root / "summary.json"

    @property
    def eval(self) -> Path:
        """What ``mgs eval`` writes."""
        return self.root / "eval"

    @property
    def results(self) -> Path:
        """The held-out scores, what ``mgs table`` reads."""
        return self.eval / "results.json"

    @property
    def per_view(self) -> Path:
        """The scores of each held-out view."""
        return self.eval / "per_view.json"

    @property
    def strip(self) -> Path:
        """A few held-out renders over their photos."""
        return self.eval / "strip.png"

    def render_picture(self, view_name: str) -> Path:
        """The render beside the photo of one held-out view."""
        return self.eval / "renders" / f"{Path(view_name).stem}.png"

    def map_picture(self, view_name: str) -> Path:
        """The depth/normal maps of one held-out view."""
        return self.eval / "maps" / f"{Path(view_name).stem}.png"

    @property
    def export(self) -> Path:
        """What ``mgs export`` writes unless told where."""
        return self.root / "export"

    @property
    def distill(self) -> Path:
        """What ``mgs distill`` writes unless told where."""
        return self.root / "distill"
