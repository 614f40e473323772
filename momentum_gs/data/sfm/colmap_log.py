"""COLMAP's log, read while it runs: the one place that says how far matching has got.

pycolmap logs through glog, which buffers its log files for up to 30 s but writes standard error at once.
:func:`follow` points file descriptor 2 at a pipe for the length of a block, hands every COLMAP line to a
callback and to a log file, and passes everything else through to the real standard error unchanged.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

GLOG_LINE = re.compile(r"^[IWEF]\d{8} ")  # glog's prefix: severity, then yyyymmdd
BLOCK = re.compile(r"Processing block \[(\d+)/(\d+)\]")  # a block of imported pairs starts


def blocks_done(line: str) -> tuple[int, int] | None:
    """(blocks finished, blocks in all) when ``line`` is COLMAP starting a block of pairs, else None."""
    found = BLOCK.search(line)
    return (int(found[1]) - 1, int(found[2])) if found else None


@contextmanager
def follow(pycolmap, on_line: Callable[[str], None], log_path: Path) -> Iterator[TextIO]:
    """Inside the block, COLMAP logs at INFO and each of its lines goes to ``on_line`` (in a reader thread)
    and to ``log_path``; other writes to file descriptor 2 are passed through. Yields a text stream on the real
    standard error, for progress bars."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    real = os.fdopen(os.dup(saved), "w", buffering=1)

    def pump() -> None:
        with open(read_end, "rb") as pipe, open(log_path, "a", encoding="utf-8", buffering=1) as log:
            for raw in pipe:
                line = raw.decode("utf-8", "replace")
                if GLOG_LINE.match(line):
                    log.write(line)
                    on_line(line)
                else:
                    os.write(saved, raw)

    reader = threading.Thread(target=pump, name="colmap-log", daemon=True)
    settings = pycolmap.logging.minloglevel, pycolmap.logging.logtostderr
    os.dup2(write_end, 2)
    os.close(write_end)
    reader.start()
    pycolmap.logging.minloglevel, pycolmap.logging.logtostderr = 0, True  # stderr only: no glog files
    try:
        yield real
    finally:
        pycolmap.logging.minloglevel, pycolmap.logging.logtostderr = settings
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the reader reads to the end and stops
        reader.join()
        os.close(saved)
        real.close()
