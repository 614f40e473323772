"""Starting a training as ``mgs train`` does: the config resolved, an ``auto:N`` partition made in the run folder,
and on a CPU with several active blocks the training processes launched (:mod:`momentum_gs.train.launch`); used
by ``mgs train`` and ``mgs run``, each with a :class:`~momentum_gs.train.request.TrainRequest`."""

from __future__ import annotations

from momentum_gs.config import Config, environment
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import latest_checkpoint
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.partition.run import partition_main
from momentum_gs.train.distributed import launched_by_torchrun, restart_count
from momentum_gs.train.launch import choose_processes, launch
from momentum_gs.train.launch import describe as describe_processes
from momentum_gs.train.request import TrainRequest
from momentum_gs.train.run import describe, prepare_config, train
from momentum_gs.train.views import per_view_rule, views_per_step

AUTO = "auto:"  # blocks.partition = "auto:N": N blocks made for the run, in RUN/partition.npz


def start(request: TrainRequest) -> dict | None:
    """Train as ``request`` asks, and print the summary; on a CPU with several blocks trained at once, in several
    processes (:mod:`momentum_gs.train.launch`). Returns the summary (None when processes trained)."""
    if request.budget is not None and request.resume:
        raise UserError("--time fits a new run's steps and schedules; a resumed run keeps its own (leave out --time, "
                        "or start a new run)")
    if not launched_by_torchrun():
        cfg = prepare_config(request.config, request.data, request.out, list(request.overrides), request.resume)
        processes, why = choose_processes(cfg)
        if not request.resume:  # a resumed run's config is planned already
            per_view_rule(cfg, views_per_step(cfg, processes if cfg.distributed.view_processes != 1 else 1))
            if cfg.distributed.view_processes != 1:
                cfg.distributed.view_processes = processes  # resolved: a resumed run starts as many
        if processes > 1:
            if cfg.blocks.partition.startswith(AUTO):
                auto_partition_in_run(cfg)
            print(f"processes: {describe_processes(processes)} ({why})", flush=True)
            code = launch(processes, cfg, request)
            if code:
                raise SystemExit(code)
            return None
    return train_request(request, report=lambda summary: print(describe(summary)))


def train_request(request: TrainRequest, report=None) -> dict:
    """Train as ``request`` asks in this process (every process under ``torchrun``). After ``torchrun
    --max-restarts`` restarts a failed job, it resumes by itself. ``report``: as :func:`~momentum_gs.train.run.train`."""
    resume = request.resume
    if not resume and restart_count() > 0:
        folder = RunFolder(request.out or prepare_config(request.config, request.data, request.out,
                                                         list(request.overrides), resume=False).out)
        resume = latest_checkpoint(folder.ckpt) is not None
    cfg = prepare_config(request.config, request.data, request.out, list(request.overrides), resume)
    if cfg.blocks.partition.startswith(AUTO):
        if (torchrun := environment.torchrun_world()) is not None and torchrun.size > 1:
            raise UserError(f"blocks.partition={cfg.blocks.partition} is made by one process: run `mgs partition "
                            f"--data {cfg.data.path} --out PART.npz --blocks N` first and pass blocks.partition=PART.npz")
        auto_partition_in_run(cfg)
    return train(cfg, resume=resume, viewer=request.viewer, keep_viewer=request.keep_viewer, report=report,
                 budget=request.budget, started=request.started, plan=True)


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
