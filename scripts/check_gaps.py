"""Run a command and fail when it is silent for too long: the longest stretch without output (a new line or a
progress bar's redraw) must stay under ``--limit`` seconds.

    python scripts/check_gaps.py [--limit 10] -- make demo

Prints the command's output as it comes, then the three longest silent stretches with the text before each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def silent_stretches(command: list[str]) -> tuple[int, list[tuple[float, str]]]:
    """(exit code, [(seconds without output, the output just before)]) of ``command``, its stdout and stderr
    read together, byte by byte as they come."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stretches, last, tail = [], time.perf_counter(), b""
    while chunk := os.read(process.stdout.fileno(), 4096):
        now = time.perf_counter()
        stretches.append((now - last, tail.decode("utf-8", "replace").replace("\r", "\n").strip().splitlines()[-1:]))
        last, tail = now, (tail + chunk)[-300:]
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    code = process.wait()
    stretches.append((time.perf_counter() - last, tail.decode("utf-8", "replace").strip().splitlines()[-1:]))
    return code, [(seconds, before[0] if before else "(the start)") for seconds, before in stretches]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=10.0, help="seconds of silence allowed (default 10)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    code, stretches = silent_stretches(command)
    longest = sorted(stretches, reverse=True)[:3]
    print("\nlongest silent stretches:")
    for seconds, before in longest:
        print(f"  {seconds:6.1f} s after: {before[:150]}")
    if code != 0:
        print(f"the command failed (exit {code})")
        return code
    if longest and longest[0][0] > args.limit:
        print(f"FAIL: silent for {longest[0][0]:.1f} s (limit {args.limit:.0f} s)")
        return 1
    print(f"ok: never silent for more than {args.limit:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
