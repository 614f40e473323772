"""Starting a training as ``mgs train`` does: the config resolved, an ``auto:N`` partition made in the run folder,
and on a CPU with several active blocks the training processes launched (:mod:`momentum_gs.train.launch`); used
by ``mgs train`` and ``mgs run``."""

from __future__ import annotations

import argparse
import os
import time

from momentum_gs.config import Config
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import latest_checkpoint
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.partition.run import partition_main
from momentum_gs.train.distributed import launched_by_torchrun, restart_count
from momentum_gs.train.launch import choose_processes, launch
from momentum_gs.train.launch import describe as describe_processes
from momentum_gs.train.run import describe, prepare_config, train

STARTED = "MGS_STARTED"  # the launching command's start (time.time()), which --time counts from
AUTO = "auto:"  # blocks.partition = "auto:N": N blocks made for the run, in RUN/partition.npz


def start(args: argparse.Namespace) -> None:
    """Train as ``mgs train`` with the options ``args`` (its parser's), and print the summary; on a CPU with several
    blocks trained at once, in several processes (:mod:`momentum_gs.train.launch`)."""
    viewer = (args.host, args.port) if args.viewer else None
    started = float(os.environ.get(STARTED, "") or time.time())  # a launched process counts from the launch
    if args.time is not None and args.resume:
        raise UserError("--time fits a new run's steps and schedules; a resumed run keeps its own (leave out --time, "
                        "or start a new run)")
    if not launched_by_torchrun():
        cfg = prepare_config(args.config, args.data, args.out, args.overrides, args.resume)
        processes, why = choose_processes(cfg)
        if processes > 1:
            if cfg.blocks.partition.startswith(AUTO):
                auto_partition_in_run(cfg)
            print(f"processes: {describe_processes(processes)} ({why})", flush=True)
            os.environ[STARTED] = repr(started)
            code = launch(processes, _process_argv(args, cfg))
            if code:
                raise SystemExit(code)
            return
    train_from_args(args.config, args.data, args.out, args.overrides, resume=args.resume, viewer=viewer,
                    keep_viewer=not args.viewer_exit, report=lambda summary: print(describe(summary)),
                    budget=args.time, started=started)


def _process_argv(args: argparse.Namespace, cfg: Config) -> list[str]:
    """The command line of each training process: this one's, with the scene, the run folder and the partition
    (made above for ``auto:N``) resolved."""
    argv = ["train", "--data", cfg.data.path, "--out", cfg.out, "--port", str(args.port), "--host", args.host]
    argv += ["--config", args.config] if args.config else []
    argv += ["--time", f"{args.time}s"] if args.time is not None else []
    argv += [flag for flag, on in (("--resume", args.resume), ("--viewer", args.viewer),
                                   ("--viewer-exit", args.viewer_exit)) if on]
    return argv + list(args.overrides) + [f"blocks.partition={cfg.blocks.partition}"]


def train_from_args(config, data, out, overrides, resume: bool = False, viewer: tuple[str, int] | None = None,
                    keep_viewer: bool = False, report=None, budget: float | None = None,
                    started: float | None = None) -> dict:
    """``mgs train``. After ``torchrun --max-restarts`` restarts a failed job, it resumes by itself. ``viewer``
    (host, port): serve the live viewer (rank 0); ``keep_viewer`` and ``report``: as
    :func:`~momentum_gs.train.run.train`."""
    if not resume and restart_count() > 0:
        folder = RunFolder(out or prepare_config(config, data, out, overrides, resume=False).out)
        resume = latest_checkpoint(folder.ckpt) is not None
    cfg = prepare_config(config, data, out, overrides, resume)
    if cfg.blocks.partition.startswith(AUTO):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError(f"blocks.partition={cfg.blocks.partition} is made by one process: run `mgs partition "
                            f"--data {cfg.data.path} --out PART.npz --blocks N` first and pass blocks.partition=PART.npz")
        auto_partition_in_run(cfg)
    return train(cfg, resume=resume, viewer=viewer, keep_viewer=keep_viewer, report=report, budget=budget,
                 started=started, plan=True)


def auto_partition_in_run(cfg: Config) -> None:
    """Resolve ``blocks.partition = "auto:N"``: partition the scene into N blocks as ``<out>/partition.npz`` (kept
    when it is already there, e.g. on resume) and point the config at it."""
    spec = cfg.blocks.partition[len(AUTO):]
    if not spec.isdigit() or int(spec) < 1:
        raise UserError(f"blocks.partition={cfg.blocks.partition}: after auto: comes a number of blocks, e.g. auto:4")
    path = RunFolder(cfg.out).partition.resolve()
    cfg.blocks.partition = str(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(partition_main(cfg.data, str(path), num_blocks=int(spec)))
