"""``mgs table``: tables (ours beside the paper's) and plots of evaluated runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from momentum_gs.errors import UserError
from momentum_gs.eval.table import PAPER_ABLATION, table_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs table``."""
    parser.add_argument("run_dirs", nargs="+", help="run folders, each evaluated by `mgs eval`")
    parser.add_argument("--out", required=True, help="folder for results.md/.csv and the PNG plots")
    parser.add_argument("--ablation", action="store_true", help="also the ablation table of the runs a..f")
    parser.add_argument("--label", action="append", default=[], metavar="RUN=ROW",
                        help="ablation row of a run folder whose name does not start with it, e.g. full=f")


def run(args: argparse.Namespace) -> None:
    """Write the tables and plots; print them and where they went."""
    labels = {}
    for item in args.label:
        run_name, _, row = item.partition("=")
        if row.lower() not in PAPER_ABLATION:
            raise UserError(f"--label {item!r} must look like RUN=ROW with ROW one of a..f")
        labels[Path(run_name).name] = row.lower()
    print(table_main(args.run_dirs, args.out, ablation=args.ablation, labels=labels))
