"""What a command asks of a training, as one typed value.

``mgs train`` makes a :class:`TrainRequest` from its options, ``mgs run`` makes one for its train stage; the value is
handed to :func:`~momentum_gs.train.start.start`, and from there to the trainer and to each training process
(:mod:`momentum_gs.train.launch`). Nothing of it travels in environment variables or a command line built again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainRequest:
    """A training asked for.

    Attributes:
        config: a YAML file or the name of a shipped config (None: the defaults).
        data: the scene folder (None: the config's ``data.path``).
        out: the run folder (None: ``runs/<scene name>``).
        overrides: dotted config overrides, in order.
        budget: ``--time`` in seconds, counted from ``started`` (None: the config's steps).
        started: when the command started (``time.time()``): a budget counts from there, in every process.
        viewer: (host, port) of the live viewer, or None.
        keep_viewer: after the training, the viewer serves the final model until Ctrl-C.
        resume: continue the run in ``out`` from its last checkpoint.
    """

    config: str | None = None
    data: str | None = None
    out: str | None = None
    overrides: tuple[str, ...] = ()
    budget: float | None = None
    started: float = field(default_factory=time.time)
    viewer: tuple[str, int] | None = None
    keep_viewer: bool = False
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))
