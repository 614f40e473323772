"""Folders of many files written whole: made beside their place and moved into it when complete.

A 3D Tiles export writes thousands of files. Killed midway, it must not leave them where the finished export goes:
a user uploads the folder as it is. :func:`written_whole` gives a hidden folder beside ``out`` to write into;
when the work ends it is marked as ours (:data:`MARK`) and put in ``out``'s place, the old ``out`` removed only
then; when the work fails it is removed, and a kill's leftovers are removed by the next write into ``out`` (their
process is gone). An ``out`` holding files that we did not write is refused, never mixed with new files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import alive, write_failed

MARK = ".momentum_gs"  # in every folder written whole: which export wrote it
PARTIAL = ".partial"  # a folder being written: ".<out name>.partial<pid>" beside it
OLD = ".old"  # the folder it replaces, for the moment of the swap: ".<out name>.old<pid>"


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove the folders that writes of ``out`` killed midway left beside it (their process gone); returns them."""
    stale = []
    for kind in (PARTIAL, OLD):
        for path in out.parent.glob(f".{out.name}{kind}*"):
            pid = path.name.rsplit(kind, 1)[-1]
            if path.is_dir() and pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                stale.append(path)
    return stale


def ours(out: Path, names: set[str]) -> bool:
    """Whether ``out`` may be replaced: absent, empty, marked by us, or holding only the ``names`` our writer
    makes (an export written before the mark)."""
    if not out.exists():
        return True
    entries = {path.name for path in out.iterdir()}
    return not entries or MARK in entries or entries <= names


def check_replaceable(out: Path, what: str, names: set[str] = frozenset()) -> None:
    """A UserError in one line when ``out`` is a file or a folder holding files that are not ours (:func:`ours`):
    for a command to check before its work what :func:`written_whole` checks before writing."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; {what} needs a folder (--out)")
    if not ours(out, names):
        raise UserError(f"{out} holds files that are not {what} (no {MARK} in it): give a new or empty folder, "
                        f"or remove them; an earlier export of ours there would be replaced whole")


@contextlib.contextmanager
def written_whole(out: str | Path, what: str, names: set[str]) -> Iterator[Path]:
    """Yield a new folder beside ``out`` to write ``what`` into (``names``: the entries it makes at its top);
    when the block ends it replaces ``out`` whole, when it fails it is removed. An ``out`` that is a file, or a
    folder holding other files (:func:`ours`), is refused in one line before anything is written."""
    out = Path(out)
    check_replaceable(out, what, names)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out)
        work = out.parent / f".{out.name}{PARTIAL}{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
    except OSError as exc:
        raise write_failed(out, exc)
    try:
        yield work
        (work / MARK).write_text(f"{what}, written whole by momentum_gs\n")
        old = out.parent / f".{out.name}{OLD}{os.getpid()}"
        if out.exists():
            out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
