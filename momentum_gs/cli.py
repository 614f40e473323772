"""The ``mgs`` command: a table of the sub-commands, each a module of :mod:`momentum_gs.commands` with
``add_arguments(parser)`` and ``run(args)``: run, train, eval, export, render, distill, mesh, ortho, sfm, view, synth,
demo, partition, table, convert, config.

Only the module of the command given is imported (``mgs --help`` and a bad command line answer at once). Bad
input raises :class:`~momentum_gs.errors.UserError`; ``main`` prints it as one ``error:`` line and exits with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from types import ModuleType

from momentum_gs import __version__
from momentum_gs.errors import DataWarning, exit_status

COMMANDS = {  # name: what it does; its module is momentum_gs.commands.<name>
    "run": "photos to a site in one command: sfm, training (--time), evaluation, one bake for 3D Tiles, a web page "
           "and a PLY, and SITE/index.html with the city on the globe",
    "train": "train a model on a COLMAP scene",
    "eval": "render and score the held-out views of a run",
    "export": "write the trained scene as a standard 3DGS PLY (or .splat, .spz, SOG, a web page, 3D Tiles with "
              "levels of detail, or the Scaffold-GS anchors and decoder)",
    "render": "render a fly-through video (MP4) of a trained run along a camera path",
    "distill": "distil a trained run into a compact standard 3DGS PLY (a student taught by the model, a noisy and a "
               "dropout copy)",
    "mesh": "a coloured triangle mesh of a trained run: rendered depths fused into a TSDF block by block, stitched "
            "into one PLY (docs/surfaces.md)",
    "ortho": "a true orthophoto and a surface model of a trained run, splatted straight down, as Cloud-Optimized "
             "GeoTIFFs in the UTM zone of a georeferenced scene (docs/maps.md)",
    "sfm": "photos (or a video) to a training scene: COLMAP's SfM via pycolmap, georeferenced in level ENU metres "
           "when the photos carry GPS",
    "view": "a live web viewer of a trained run: fly through it, switch blocks on and off, see the cameras and the "
            "cells",
    "synth": "generate the synthetic aerial city (Mill-19 layout)",
    "demo": "synthesize a city, train, evaluate; prints the results.json path",
    "partition": "split a scene into blocks; writes the partition file and a map",
    "table": "tables (ours beside the paper's) and plots of evaluated runs",
    "convert": "bring a public dataset into the train/ + val/ COLMAP layout",
    "config": "print the resolved config (defaults, a file, overrides)",
}


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with a bad command line said in one ``error:`` line (argparse prints the usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def command_module(name: str) -> ModuleType:
    """The module of sub-command ``name`` (one of :data:`COMMANDS`)."""
    return importlib.import_module(f"momentum_gs.commands.{name}")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``mgs``: every sub-command's options when ``command`` is None, else only those of
    ``command`` (the others are listed, with their summary)."""
    parser = _Parser(prog="mgs", description="Momentum-GS large-scene Gaussian splatting.")
    parser.add_argument("--version", action="version", version=f"momentum_gs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub  # the sub-commands' parsers, by name (``sub.choices``)
    for name, summary in COMMANDS.items():
        one = sub.add_parser(name, help=summary, description=summary)
        if command is None or command == name:
            command_module(name).add_arguments(one)
    return parser


def _command_in(argv: list[str]) -> str:
    """The sub-command named in ``argv`` ("" when none is)."""
    return next((arg for arg in argv if not arg.startswith("-")), "") if argv else ""


def _one_line_warnings(fallback):
    """A ``warnings.showwarning`` that prints a :class:`DataWarning` (input read, but not as it was written) as one
    ``warning:`` line and passes other warnings to ``fallback``."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mgs``; returns the exit status."""
    try:
        argv = sys.argv[1:] if argv is None else argv
        parser = _parser(_command_in(argv))
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the sub-command's parser, which names its own --help
            parser.commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, or a bad command line (one line said already)
        return exc.code if isinstance(exc.code, int) else 2
    with warnings.catch_warnings():  # restores the warning printer after the command
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        return exit_status(lambda: command_module(args.command).run(args))


def entry() -> None:
    """``mgs`` as a program (the console script, ``python -m momentum_gs.cli``, ``torchrun -m momentum_gs.cli``): runs
    :func:`main` and ends with its status; a process that joined a process group ends without the interpreter's
    teardown (:func:`~momentum_gs.train.distributed.leave`)."""
    status = main()
    distributed = sys.modules.get("momentum_gs.train.distributed")  # imported only by what may have joined one
    if distributed is not None and distributed.joined():
        distributed.leave(status)
    sys.exit(status)


if __name__ == "__main__":
    entry()
