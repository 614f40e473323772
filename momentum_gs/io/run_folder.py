"""The layout of a run folder: one type that knows every path of a run.

``RUN/`` holds ``config.yaml`` (the resolved config, itself a valid config file), ``ckpt/step_<N>.pt``
(checkpoints), ``offload/`` (parked blocks while training), ``.lock`` (while a training writes), ``train.log``,
``logs/rank<r>.log`` (distributed), ``wandb/``, ``tb/`` (TensorBoard),
``summary.json``, ``eval/`` (``results.json``, ``per_view.json``, ``strip.png``, ``renders/``, ``maps/``),
``export/`` and ``partition.npz`` (made there for ``blocks.partition=auto:N``, or a copy of the partition file
given from another folder). Paths only: what is in the files is read by
the modules that own them. A file of the run is named relative to ``root`` (:meth:`RunFolder.relative`), so a
moved or copied run folder still finds it.

Every path it gives is checked on the way (:func:`momentum_gs.io.safe_path.inside`): a link inside the run
folder that leads out of it (``ckpt -> /elsewhere``) is refused in one line before anything is read or written
through it. The run folder itself may be a link: the user named it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from momentum_gs.io.safe_path import inside


class Layout:
    """The pattern of the program's folders (a run folder, a site): a ``root`` and the paths named below it, each
    checked on the way (module notes), and a path of the folder named relative to its root."""

    root: Path

    def path(self, *parts: str) -> Path:
        """``root/parts...``, once checked that no link on the way leads outside the folder."""
        return inside(self.root.joinpath(*parts), self.root)

    def relative(self, path: str | Path) -> str | None:
        """``path`` relative to the folder (``/``-separated) when it lies inside it, else None."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None


@dataclass(frozen=True)
class RunFolder(Layout):
    """The paths of the run folder ``root``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """The resolved config the run trained with."""
        return self.path("config.yaml")

    @property
    def partition_picture(self) -> Path:
        """The map of the run's partition, beside it."""
        return self.path("partition.png")

    @property
    def partition(self) -> Path:
        """The run's partition: made there for ``blocks.partition=auto:N``, or a copy of the one given."""
        return self.path("partition.npz")

    @property
    def ckpt(self) -> Path:
        """The folder of checkpoints, ``step_<N>.pt``."""
        return self.path("ckpt")

    def checkpoint(self, step: int) -> Path:
        """The checkpoint written at ``step``."""
        return self.path("ckpt", f"step_{int(step)}.pt")

    @property
    def offload(self) -> Path:
        """Where parked blocks wait while training (one sub-folder per rank when distributed)."""
        return self.path("offload")

    @property
    def train_log(self) -> Path:
        """The training's log, one line per logged step."""
        return self.path("train.log")

    def rank_log(self, rank: int) -> Path:
        """The log of one process of a distributed training."""
        return self.path("logs", f"rank{int(rank)}.log")

    @property
    def wandb(self) -> Path:
        """Weights & Biases' files, when the run logs there."""
        return self.path("wandb")

    @property
    def lock(self) -> Path:
        """The lock a training holds while it writes into the run."""
        return self.path(".lock")

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's event files."""
        return self.path("tb")

    @property
    def summary(self) -> Path:
        """The training's summary (steps, time, the blocks)."""
        return self.path("summary.json")

    @property
    def eval(self) -> Path:
        """What ``mgs eval`` writes."""
        return self.path("eval")

    @property
    def results(self) -> Path:
        """The held-out scores, what ``mgs table`` reads."""
        return self.path("eval", "results.json")

    @property
    def per_view(self) -> Path:
        """The scores of each held-out view."""
        return self.path("eval", "per_view.json")

    @property
    def strip(self) -> Path:
        """A few held-out renders over their photos."""
        return self.path("eval", "strip.png")

    def render_picture(self, view_name: str) -> Path:
        """The render beside the photo of one held-out view."""
        return self.path("eval", "renders", f"{Path(view_name).stem}.png")

    def map_picture(self, view_name: str) -> Path:
        """The depth/normal maps of one held-out view."""
        return self.path("eval", "maps", f"{Path(view_name).stem}.png")

    @property
    def export(self) -> Path:
        """What ``mgs export`` writes unless told where."""
        return self.path("export")

    @property
    def distill(self) -> Path:
        """What ``mgs distill`` writes unless told where."""
        return self.path("distill")
