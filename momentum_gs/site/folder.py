"""A site's folders (``mgs run --out SITE``) and its record of finished stages, ``SITE/stages.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.schema import parse_json


@dataclass
class Site:
    """The folders of a site and its record of finished stages."""

    root: Path
    record: dict = field(default_factory=dict)

    @property
    def scene(self) -> Path:
        return self.root / "scene"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def maps(self) -> Path:
        return self.root / "maps"

    @property
    def page(self) -> Path:
        return self.root / "index.html"

    @property
    def record_path(self) -> Path:
        return self.root / "stages.json"

    def load(self) -> "Site":
        """Read ``stages.json`` (an empty record when there is none)."""
        if self.record_path.is_file():
            record = parse_json(self.record_path.read_text(errors="replace"), str(self.record_path))
            self.record = record if isinstance(record, dict) else {}
        self.record.setdefault("stages", {})
        return self

    def done(self, stage: str) -> bool:
        return bool(self.record["stages"].get(stage, {}).get("done"))

    def mark(self, stage: str, seconds: float, options: dict | None = None) -> None:
        """Record ``stage`` as done in ``seconds``, with the ``options`` of ``mgs run`` it ran with."""
        self.record["stages"][stage] = {"done": True, "seconds": round(seconds, 1),
                                        **({"options": options} if options is not None else {})}
        self.save()

    def forget(self, stages: list[str]) -> None:
        for stage in stages:
            self.record["stages"].pop(stage, None)
        self.save()

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.record_path, json.dumps(self.record, indent=1) + "\n")
