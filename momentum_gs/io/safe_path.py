"""Writing only where the user asked: no write goes through a symbolic link that leads out of the folder the user
named, and no file replaces a link.

A run folder, an export folder or an image cache may hold links that nobody meant to write through: a run
folder copied from elsewhere with ``ckpt -> /home/me/.ssh``, a dataset whose ``images_2`` links to another
dataset's. Writers check each path they write with :func:`inside` (from the folder the user named down to the
file, no link may lead outside that folder) and a write that replaces its file (an atomic write) refuses a link
there at all (:func:`not_a_link`), as the link would silently become a file. The folder the user named may
itself be a link: the user chose it. Links that stay inside it are followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from momentum_gs.errors import UserError


def inside(path: str | Path, root: str | Path) -> Path:
    """``path`` (a file or folder at or below ``root``), once checked that no link among its folders below
    ``root``, nor ``path`` itself, leads outside ``root``; a UserError names the link and where it leads.

    Paths that do not exist yet are fine: what does not exist cannot be a link.
    """
    path, root = Path(path), Path(root)
    parts = path.relative_to(root).parts  # a ValueError: a caller's mistake, not the user's
    if ".." in parts:
        raise UserError(f"{path} leads outside {root}; nothing is written there")
    base, current = _resolved(root), root
    for part in parts:
        current = current / part
        if not os.path.lexists(current):
            break  # nothing below exists either
        if current.is_symlink():
            target = _resolved(current)
            if target is None or base is None or not target.is_relative_to(base):
                raise UserError(f"{current} is a link to {os.readlink(current)}, outside {root}: nothing is written "
                                f"through it; replace the link with a folder or file of its own, or choose another "
                                f"folder")
    return path


def not_a_link(path: str | Path) -> Path:
    """``path``, once checked that it is not a symbolic link: a write that replaces the file (write beside it,
    then rename) would turn the link into a file without a word, and a write through it would land elsewhere."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{path} is a link to {os.readlink(path)}; it is not replaced or written through: remove the "
                        f"link (or write elsewhere)")
    return path


def _resolved(path: Path) -> Path | None:
    """``path`` with every link resolved, or None when a link goes round in a loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop of links (Python before 3.13)
        return None
