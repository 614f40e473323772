"""``mgs config``: print the resolved config (defaults, a file, overrides), or explain its keys."""

from __future__ import annotations

import argparse

import yaml

from momentum_gs.config import explain, load_config, to_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs config``."""
    parser.add_argument("--config", help="a YAML config file, or the name of a shipped one (demo, brighton_beach, "
                        "ablation/f_full8, ...)")
    parser.add_argument("--explain", nargs="?", const="", metavar="KEY",
                        help="each key (or those of KEY, a key or a section) with its type, allowed values, default "
                             "and meaning")
    parser.add_argument("overrides", nargs="*")


def run(args: argparse.Namespace) -> None:
    """Print the config, or the explanation of its keys."""
    if args.explain is not None:
        print(explain(args.explain))
        return
    print(yaml.safe_dump(to_dict(load_config(args.config, args.overrides)), sort_keys=False), end="")
