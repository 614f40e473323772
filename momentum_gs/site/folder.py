"""A site's folders (``mgs run --out SITE``) and its record of finished stages, ``SITE/stages.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.run_folder import Layout, RunFolder
from momentum_gs.io.schema import parse_json


@dataclass
class Site(Layout):
    """The folders of a site (the pattern of :class:`~momentum_gs.io.run_folder.Layout`, as a run folder's) and its
    record of finished stages."""

    root: Path
    record: dict = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root)

    @property
    def scene(self) -> Path:
        """The training scene ``mgs sfm`` made."""
        return self.path("scene")

    @property
    def run(self) -> Path:
        """The training run."""
        return self.path("run")

    @property
    def run_folder(self) -> RunFolder:
        """The training run's own layout."""
        return RunFolder(self.run)

    @property
    def export(self) -> Path:
        """The exports of one bake."""
        return self.path("export")

    @property
    def maps(self) -> Path:
        """The orthophoto and the surface model."""
        return self.path("maps")

    @property
    def page(self) -> Path:
        """The site's page."""
        return self.path("index.html")

    @property
    def record_path(self) -> Path:
        """The record of the finished stages and the options they ran with."""
        return self.path("stages.json")

    def load(self) -> "Site":
        """Read ``stages.json`` (an empty record when there is none)."""
        if self.record_path.is_file():
            record = parse_json(self.record_path.read_text(errors="replace"), str(self.record_path))
            self.record = record if isinstance(record, dict) else {}
        self.record.setdefault("stages", {})
        return self

    def done(self, stage: str) -> bool:
        return bool(self.record["stages"].get(stage, {}).get("done"))

    def mark(self, stage: str, seconds: float, options: dict | None = None, outputs: dict | None = None) -> None:
        """Record ``stage`` as done in ``seconds``, with the ``options`` of ``mgs run`` it ran with and the
        ``outputs`` it made (:mod:`momentum_gs.site.outputs`)."""
        self.record["stages"][stage] = {"done": True, "seconds": round(seconds, 1),
                                        **({"options": options} if options is not None else {}),
                                        **({"outputs": outputs} if outputs is not None else {})}
        self.save()

    def forget(self, stages: list[str]) -> None:
        for stage in stages:
            self.record["stages"].pop(stage, None)
        self.save()

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.record_path, json.dumps(self.record, indent=1) + "\n")
