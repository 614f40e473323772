"""Writing files so that a kill or a full disk never leaves half of one: a temporary file beside the target,
then a rename (a result of several files is made in a working folder beside it, :func:`work_folder_beside`,
then moved into place). Temporary files are named ``.<name>.tmp<pid>`` and made anew by this process (never
opened through a link left there); :func:`remove_stale_temporaries` clears those that a killed write left
behind. A target that is a symbolic link is refused (:func:`momentum_gs.io.safe_path.not_a_link`): the rename
would replace the link with a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from momentum_gs.errors import UserError
from momentum_gs.io.safe_path import not_a_link


def temporary_path(path: Path) -> Path:
    """The temporary file that a write of ``path`` by this process goes through."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def new_temporary(path: Path) -> Path:
    """:func:`temporary_path` of ``path``, created empty by this call (one left by a killed write of a process
    with the same id is removed first; creating it fails rather than follow a link put there); its folder must
    exist."""
    tmp = temporary_path(path)
    tmp.unlink(missing_ok=True)
    with open(tmp, "xb"):
        pass
    return tmp


def write_failed(path: Path, exc: BaseException) -> UserError:
    """The one line for a write that failed (a full disk, a read-only folder)."""
    text = str(exc).strip().splitlines()
    reason = getattr(exc, "strerror", None) or (text[0][:100] if text else type(exc).__name__)
    return UserError(f"cannot write {path} ({reason}); free some disk space or choose another folder")


def atomic_write_bytes(path: str | Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (``sync``: on the disk before the
    rename); on failure the temporary file is removed and a UserError names the file. A ``path`` that is a
    symbolic link is refused."""
    path = not_a_link(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temporary(path)
        with open(tmp, "r+b") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def work_folder_beside(out: Path) -> Path:
    """A new hidden working folder in ``out``'s folder (made if needed), where a result is made before it is
    moved into place; a one-line UserError when it cannot be made."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise write_failed(out, exc)


def remove_stale_temporaries(folder: str | Path, name: str = "*") -> list[Path]:
    """Delete the temporary files (``.<name>.tmp<pid>``, or ``.<name>.tmp<pid>.<suffix>``) that writes killed
    midway left in ``folder`` (only those whose process is gone; ``name``: only those of that file); returns them."""
    stale = []
    for p in Path(folder).glob(f".{name}.tmp*"):
        pid = p.name.rsplit(".tmp", 1)[-1].split(".", 1)[0]  # a suffix may follow (a video's container)
        if p.is_file() and pid.isdigit() and not alive(int(pid)):
            p.unlink(missing_ok=True)
            stale.append(p)
    return stale


def alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
