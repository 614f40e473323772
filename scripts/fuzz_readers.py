"""Fuzz the file readers long: the readers of ``tests/helpers/fuzz_registry.py`` (the ones ``tests/test_fuzz.py``
runs briefly), each fed ``--examples`` random and mutated files through Hypothesis.

For every reader it prints the examples run, the escapes (an exception other than the one-line ``UserError``,
or a read past its memory bound: peak traced memory <= factor x input bytes + a constant) and the largest share
of that bound an input used. Readers still to be hardened are left out unless ``--all``. Exits 1 on any escape.

    nice python scripts/fuzz_readers.py --examples 10000
    python scripts/fuzz_readers.py --only "config yaml" --examples 500 --seed 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests.helpers and momentum_gs

from tests.helpers.fuzz import MEMORY_CONSTANT, fuzz_reader  # noqa: E402
from tests.helpers.fuzz_registry import READERS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzing and print one line per reader (and each escape found, at most ``--show`` per reader)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="fuzzed files per reader (10000)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis's seed, for a run that repeats (0)")
    parser.add_argument("--only", action="append", help="a reader's name (repeatable); default: every one")
    parser.add_argument("--all", action="store_true", help="also the readers still to be hardened")
    parser.add_argument("--show", type=int, default=3, help="escapes printed per reader (3)")
    args = parser.parse_args(argv)
    readers = [r for r in READERS if (args.only is None or r.name in args.only) and (args.all or not r.skip)]
    if not readers:
        parser.error(f"no such reader; the readers: {', '.join(r.name for r in READERS)}")
    print(f"{'reader':24s} {'examples':>8s} {'escapes':>7s} {'max memory ratio':>16s} {'seconds':>7s}  "
          f"(memory bound: factor x input bytes + {MEMORY_CONSTANT >> 20} MiB)")
    total = 0
    for reader in readers:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as workdir:
            stats = fuzz_reader(reader, Path(workdir), args.examples, derandomize=False, seed=args.seed,
                                stop_at_first=False)
        total += len(stats.escapes)
        print(f"{reader.name:24s} {stats.examples:8d} {len(stats.escapes):7d} {stats.max_memory_ratio:16.3f} "
              f"{time.perf_counter() - started:7.0f}  (factor {reader.memory_factor:g})", flush=True)
        for escape in stats.escapes[: args.show]:
            print(f"    {escape}", flush=True)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
