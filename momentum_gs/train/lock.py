"""The lock of a run folder while it trains: a second ``mgs train`` into the same folder stops with one line."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import alive
from momentum_gs.io.run_folder import RunFolder


class RunLock:
    """``RUN/.lock`` holding the owner's host and pid while a run trains, so a second ``mgs train`` into the
    same folder stops with one line; a lock whose process is gone (killed) is taken over with a note."""

    def __init__(self, out_dir: Path):
        self.path = RunFolder(out_dir).lock
        if self.path.is_dir() and not self.path.is_symlink():
            raise UserError(f"{self.path} is a folder, not a run's lock file; remove it (if no training uses "
                            f"{out_dir}) and start again")
        mine = f"{socket.gethostname()} {os.getpid()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                host, pid = _lock_owner(self.path)
                if host == socket.gethostname() and pid is not None and alive(pid):
                    raise UserError(f"{out_dir} is in use by another training process (pid {pid}); wait for it "
                                    "to finish or choose another --out")
                if host not in (None, socket.gethostname()):
                    raise UserError(f"{out_dir} is locked by a process on host {host} (pid {pid}); if it is gone, "
                                    f"delete {self.path}")
                print(f"taking over {self.path}: its process ({pid}) is gone", flush=True)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            return
        raise UserError(f"cannot lock {out_dir}: another process keeps taking {self.path}")

    def release(self) -> None:
        """Remove the lock if this process still owns it."""
        if _lock_owner(self.path) == (socket.gethostname(), os.getpid()):
            self.path.unlink(missing_ok=True)


def _lock_owner(path: Path) -> tuple[str | None, int | None]:
    """(host, pid) written in a lock file; (None, None) when it is unreadable or empty."""
    try:
        host, pid = path.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None, None
