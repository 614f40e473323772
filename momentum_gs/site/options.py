"""The options of ``mgs run`` and the first stage each one changes: a site reruns from there when one changed.

Each finished stage records the options it ran with in ``SITE/stages.json``. Running again with an option changed
redoes the first stage that option affects and every stage after it, and says so in one line; with the same options
a rerun skips what is done. (OpenDroneMap keeps the same kind of table of its options and stages.)

| option | first stage it changes | why |
|---|---|---|
| ``--time`` | train | the steps and every schedule are fitted to it; the export's refinement takes a share of it |
| ``--blocks`` | train | the partition the run is trained in |
| ``--gcp``, ``--check`` | sfm | the ground control the scene is placed and adjusted on; the points it is measured on |

The photos are not an option of this table: a site made from other photos is refused unless ``--from sfm`` says to
start again (:func:`~momentum_gs.site.stages.run_stages`).
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.train.plan import duration

AFFECTS = {"time": "train", "blocks": "train", "gcp": "sfm", "check": "sfm"}  # option: the first stage it changes


def options_of(budget: float | None, blocks: str, gcp: Path | None = None, check: Path | None = None) -> dict:
    """The options of one ``mgs run``, as recorded in ``stages.json`` (the control files by their full paths)."""
    return {"time": budget, "blocks": blocks, "gcp": None if gcp is None else str(Path(gcp).resolve()),
            "check": None if check is None else str(Path(check).resolve())}


def said(option: str, value) -> str:
    """An option's value in words, as the command line gives it (a duration, a number of blocks, auto)."""
    if option == "time":
        return "none (the config's steps)" if value is None else duration(float(value))
    if option in ("gcp", "check"):
        return "none" if value is None else str(value)
    return str(value)


def first_changed(stages: tuple[str, ...], record: dict, options: dict) -> tuple[str, str] | None:
    """(stage, why): the first stage of ``stages`` done with other ``options`` than these, and the line that says
    which option changed; None when every done stage ran with the same options (or recorded none)."""
    for stage in stages:
        entry = record.get("stages", {}).get(stage, {})
        ran_with = entry.get("options") if entry.get("done") else None
        if not isinstance(ran_with, dict):
            continue
        changed = [option for option, first in AFFECTS.items()
                   if stages.index(first) <= stages.index(stage) and option in ran_with
                   and ran_with[option] != options.get(option)]
        if changed:
            first = min((AFFECTS[option] for option in changed), key=stages.index)
            words = "; ".join(f"--{option} was {said(option, ran_with[option])}, now {said(option, options[option])}"
                              for option in changed)
            return first, f"{words}: redoing {first} and the stages after it"
    return None
