"""A run's ``train.log`` (and ``logs/rank<r>.log``): one JSON object per line, ``{"step": N, "psnr": ..., ...}``.

Training appends a line at every step it shows; a resume drops the lines after its checkpoint's step, and
``mgs table`` draws the training PSNR from them. Each line is checked against :data:`LOG_LINE`, which declares
only what those readers use (the step, the training PSNR); the other metrics are not looked into.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.errors import UserError
from momentum_gs.io.schema import Number, Obj, check, parse_json
from momentum_gs.ranges import MAX_STEPS, Range

LOG_LINE = Obj({"step": Number(Range(0, MAX_STEPS), whole=True, note="the global step")},
               {"psnr": Number(note="dB, the training view's PSNR")})


def log_entry(line: str, source: str) -> dict:
    """The object of one log line checked against :data:`LOG_LINE`; a UserError names ``source`` (the file and
    line number), the key and what was expected, or says that the line is not JSON."""
    return check(parse_json(line, source), LOG_LINE, source)


def read_log(path: Path) -> tuple[list[dict], list[str]]:
    """The entries of the JSON-lines log at ``path`` that fit :data:`LOG_LINE`, and one line per line dropped
    (``RUN/train.log line 7: psnr is "x", expected ...``). A last line that is not JSON (cut short by a kill) is
    dropped without a word. An absent file has no entries."""
    entries, wrong = [], []
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(log_entry(line, f"{path} line {number}"))
        except UserError as exc:
            if number < len(lines) or "is not valid JSON" not in str(exc):
                wrong.append(str(exc))
    return entries, wrong
