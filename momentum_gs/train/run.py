"""A training run around the :class:`Trainer`: its config resolved, its folder made and locked, the scene
loaded, the live viewer, Ctrl-C, the summary."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from momentum_gs.config import Config, check_scene_scale, load_config, schedule_warnings, threads_in_use
from momentum_gs.data.sanity import scene_warnings
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from momentum_gs.io.checkpoint import latest_checkpoint
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.render.kernels import kernels_in_use
from momentum_gs.train import distributed as D
from momentum_gs.train import plan as P
from momentum_gs.train.lock import RunLock
from momentum_gs.train.replan import TimeBudget, replan_window
from momentum_gs.train.trainer import Trainer
from momentum_gs.view.server import Viewer
from momentum_gs.view.serving import check_port, import_viser, serve_until_interrupted, warn_if_open
from momentum_gs.view.sources import TrainingSource


def prepare_config(config: str | None, data: str | None, out: str | None, overrides: list[str],
                   resume: bool) -> Config:
    """Resolve the config of a run: a resumed run starts from its saved ``config.yaml``."""
    if resume:
        if not out:
            raise UserError("--resume needs --out RUN_DIR (the run folder to continue)")
        saved = RunFolder(out).config
        if not saved.is_file():
            raise UserError(f"cannot resume: {saved} does not exist (was the run started in {out}?)")
        config = str(saved)
    cfg = load_config(config, overrides)
    if resume:  # the same model.* overrides as the first start are fine (a torchrun restart repeats them)
        before = load_config(config).model
        changed = [f"model.{key}" for key, value in vars(before).items() if getattr(cfg.model, key) != value]
        if changed:
            raise UserError(f"cannot change the model shape of a trained run on resume ({changed[0]}: "
                            f"{getattr(before, changed[0][6:])!r} -> {getattr(cfg.model, changed[0][6:])!r}); "
                            "start a new run instead")
    if data:
        cfg.data.path = data
    if out:
        cfg.out = out
    if not cfg.data.path:
        raise UserError("no scene given: pass --data PATH (or set data.path in the config)")
    if not cfg.out:
        cfg.out = str(Path("runs") / Path(cfg.data.path).resolve().name)
    # The saved config.yaml names the scene and the partition; absolute, they hold from any folder
    # (`mgs eval RUN` run from elsewhere, a resumed run, another node).
    cfg.data.path = str(Path(cfg.data.path).resolve())
    if cfg.blocks.partition and not cfg.blocks.partition.startswith("auto:"):
        own = RunFolder(cfg.out).partition  # a resumed run uses its own copy (auto:N, or the one made at its start)
        if resume and own.is_file():
            cfg.blocks.partition = str(own)
        cfg.blocks.partition = str(Path(cfg.blocks.partition).resolve())
    return cfg


def train(cfg: Config, resume: bool = False, viewer: tuple[str, int] | None = None, keep_viewer: bool = False,
          report: Callable[[dict], None] | None = None, budget: float | None = None, started: float | None = None,
          plan: bool = False, rendezvous: D.Rendezvous | None = None) -> dict:
    """Load the scene, train (continuing from the last checkpoint with ``resume``), return a summary.

    Under ``torchrun``, or in the processes ``mgs train`` started (each with its ``rendezvous``), every process calls
    this; they join one process group and share the work (:mod:`momentum_gs.train.distributed`). ``summary["is_main"]`` is True on the process that reports.
    ``viewer`` (host, port) serves the live viewer of the training on rank 0 (:mod:`momentum_gs.view`);
    ``keep_viewer``: after a training that ran to its end, it serves the final model until Ctrl-C (the run's
    lock released, its summary written and given to ``report`` first).
    """
    folder = RunFolder(cfg.out)
    _refuse_folder(folder, resume)
    world, device = D.init_world(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s, rendezvous)
    if viewer is not None and world.is_main:  # a busy port or no viser: one line before anything is made
        check_port(*viewer)
        import_viser()
    lock, made_folder, live, kept, copied = None, not folder.root.exists(), None, None, False
    try:
        lock = _open_folder(folder, world.is_main)
        copied = not resume and keep_partition_in_run(cfg, folder)
        deadline = None if budget is None else (started or time.time()) + budget
        trainer, compositor = _trainer(cfg, folder, device, world, resume, plan, deadline, budget)
        if viewer is not None and world.is_main:
            live = _try_live_viewer(trainer, *viewer)
        with stop_on_signals(trainer, enabled=not world.distributed):
            summary = trainer.train()
        if live is not None and keep_viewer and not trainer.stop_requested:
            kept, live = live, None  # not closed below: it goes on serving the final model
    except BaseException:
        if lock is not None:
            lock.release()
            lock = None
        if copied and latest_checkpoint(folder.ckpt) is None:  # a start that failed: nothing refers to the copy
            folder.partition.unlink(missing_ok=True)
        if made_folder and world.is_main and folder.root.is_dir() and not any(folder.root.iterdir()):
            folder.root.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise
    finally:
        if live is not None:
            with contextlib.suppress(Exception):  # a viewer that fails to stop does not fail the run
                live.close()
        if lock is not None:
            lock.release()
        D.close_world(world)
    summary["out"], summary["is_main"], summary["compositor"] = str(folder.root), world.is_main, compositor
    if budget is not None:
        summary["budget_s"], summary["wall_s"] = budget, time.time() - (started or time.time())
    if world.is_main:
        atomic_write_text(folder.summary, json.dumps(summary, indent=1) + "\n")
        if report is not None:
            report(summary)
    if kept is not None:
        trainer.view.finished = True
        serve_until_interrupted(kept, f"training done: the viewer serves the final model at {kept.url} until Ctrl-C "
                                      "(--viewer-exit stops it with the training)")
    return summary


def keep_partition_in_run(cfg: Config, folder: RunFolder) -> bool:
    """Copy a partition file that lies outside the run folder into it, as ``RUN/partition.npz`` (atomically), and
    point ``cfg`` at the copy: the checkpoints then record it relative to the run, so a moved or copied run finds
    the partition it was trained with. True when this call wrote the copy; a different partition already there
    is refused in one line (a missing file is said when the trainer loads it)."""
    source = Path(cfg.blocks.partition) if cfg.blocks.partition else None
    if source is None or not source.is_file() or folder.relative(source) is not None:
        return False
    own, data = folder.partition, source.read_bytes()
    wrote = not own.is_file()
    if wrote:
        atomic_write_bytes(own, data)
    elif own.read_bytes() != data:
        raise UserError(f"{own} holds another partition than blocks.partition={source}; the run keeps its "
                        "partition there: remove it, or train into another folder")
    cfg.blocks.partition = str(own.resolve())
    return wrote


def _refuse_folder(folder: RunFolder, resume: bool) -> None:
    """One line when ``--out`` is a file, or holds a trained run and this is not a resume."""
    if folder.root.exists() and not folder.root.is_dir():
        raise UserError(f"--out {folder.root} is a file; the run needs a folder")
    if not resume and latest_checkpoint(folder.ckpt) is not None:
        raise UserError(f"{folder.root} already holds a trained run; use --resume to continue it or another --out")


def _open_folder(folder: RunFolder, is_main: bool) -> RunLock | None:
    """Make the run folder; on the main process lock it and remove what killed writes left (the lock, held)."""
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot make the run folder {folder.root} ({exc.strerror or exc})")
    if not is_main:
        return None
    lock = RunLock(folder.root)
    try:
        for where in (folder.root, folder.ckpt):
            for stale in remove_stale_temporaries(where):
                print(f"removed {stale.name}, left by a write that was killed", flush=True)
    except BaseException:
        lock.release()
        raise
    return lock


def _trainer(cfg: Config, folder: RunFolder, device, world, resume: bool, plan: bool = False,
             deadline: float | None = None, budget: float | None = None) -> tuple[Trainer, str]:
    """The scene loaded (its warnings said), the run probed and fitted to its budget (its plan said), the trainer
    made (resumed) and the kernels in use, in words."""
    scene = load_scene(cfg.data, observations=cfg.geometry.lambda_sparse_depth > 0)
    check_scene_scale(cfg, scene.points, [cam.center.tolist() for cam in scene.train])  # before any warning of units
    measured, fitted = None, ""
    if (plan or deadline is not None) and not resume:
        measured = P.probe(cfg, scene, device, world)
        if deadline is not None:
            scene, measured, fitted = P.fit_to_budget(cfg, scene, device, world, measured, deadline, budget)
    trainer = Trainer(cfg, scene, folder.root, device, world)  # its blocks check an automatic voxel size
    if deadline is not None:  # a pace slower than the probe's says ends at the budget, with its checkpoint; planned
        # again once the growth window has closed (momentum_gs.train.replan)
        window = None if resume else replan_window(cfg, trainer.total_steps, len(trainer.blocks),
                                                   trainer.scheduler.num_active)
        trainer.budget = TimeBudget(deadline - P.reserve_seconds(budget), window, world)
    if world.is_main and not resume:
        for line in [*schedule_warnings(cfg), *scene_warnings(scene.train, scene.points, cfg.render.near)]:
            print(f"warning: {line}", file=sys.stderr, flush=True)
    compositor = kernels_in_use(device)  # builds the C++ kernels on a machine's first CPU run
    if world.is_main:
        print(compositor, flush=True)
        if not resume:
            threads = threads_in_use().split(" (")[0] + (f" in each of {world.size} processes" if world.distributed else "")
            lines = P.plan_lines(cfg, scene, trainer.total_steps, len(trainer.blocks), threads, measured,
                                 trainer.loader.cache.capacity_bytes)
            for line in ([fitted] if fitted else []) + lines:
                print(line, flush=True)
    if resume:
        checkpoint = trainer.resume()
        if checkpoint is None:
            raise UserError(f"cannot resume: {folder.ckpt} holds no checkpoint")
        if world.is_main:
            print(f"resuming from {checkpoint} (step {trainer.step})", flush=True)
    return trainer, compositor


def _try_live_viewer(trainer: Trainer, host: str, port: int):
    """The live viewer of the training, or None (said in one line) when it does not start: training never
    dies because of the viewer."""
    try:
        return start_live_viewer(trainer, host, port)
    except Exception as exc:
        trainer.view = None
        print(f"viewer: could not start ({type(exc).__name__}: {exc}); training goes on without it",
              file=sys.stderr, flush=True)
        return None


def start_live_viewer(trainer, host: str, port: int):
    """Serve the viewer of ``trainer``'s loaded blocks (:class:`~momentum_gs.view.server.Viewer`); its frames
    are rendered in their own thread, between the trainer's steps."""
    trainer.view = TrainingSource(trainer)
    viewer = Viewer(trainer.view, host, port, log=lambda line: tqdm.write(line, file=sys.stderr))  # above the bar
    warn_if_open(host)
    print(f"viewer of the training at {viewer.url}", flush=True)
    return viewer


@contextlib.contextmanager
def stop_on_signals(trainer, enabled: bool = True):
    """While training, the first Ctrl-C (SIGINT) or SIGTERM asks the trainer to write a checkpoint after the
    current step and stop; a second Ctrl-C stops at once. Only a single process in the main thread: under
    torchrun every process would have to agree on the step (torchrun's restarts resume from checkpoints)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: writing a checkpoint after this step, then stopping "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def describe(summary: dict) -> str:
    """One line summing up a training run."""
    anchors = (f"{summary['num_anchors']} anchors" if summary.get("num_blocks", 1) == 1 else
               f"{summary['num_anchors']} anchors trained over the {summary['num_blocks']} blocks with their "
               "margins (`mgs eval` counts the merged model, each block cropped to its cell)")
    views = summary.get("views_per_step", 1)
    pace = f"{summary['steps_per_second']:.2f} steps/s" + (f", {views} views a step" if views > 1 else "")
    pace += f", {summary.get('views_per_second', summary['steps_per_second']):.2f} views/s"
    line = f"trained {summary['steps']} steps in {summary['seconds']:.0f} s ({pace}), {anchors} -> {summary['out']}"
    if summary.get("budget_s"):
        line += (f"; {P.duration(summary['wall_s'])} from the command's start, against a budget of "
                 f"{P.duration(summary['budget_s'])}")
    if summary.get("stopped_at_deadline") and summary.get("replanned"):
        line += (f"\nstopped at the budget {summary['replanned']['steps'] - summary['steps']} steps before the planned "
                 "last step: the last steps went slower than those before")
    elif summary.get("stopped_at_deadline"):
        line += ("\nstopped at the budget before the planned last step: the steps went slower than the probe's pace "
                 "as the anchors grew (the learning rates had not finished their decay)")
    if summary.get("replanned"):
        again = summary["replanned"]
        line += (f"\nplanned again from step {again['at_step']} on, once the anchors had stopped growing "
                 f"({again['times']} times, at last {again['seconds_per_step']:.3g} s a step): {again['steps']} steps "
                 f"instead of {again['planned_steps']}")
    peak = summary.get("peak_loaded", {})
    next_step = f"\nnext: mgs eval {summary['out']}"
    if summary.get("processes", 1) > 1:
        line += (f"\n{summary['processes']} processes; process 0 had at most {peak['anchors']} anchors on its "
                 f"device at once; {summary['allreduce_bytes_per_step']} bytes all-reduced per step")
    elif summary.get("num_blocks", 1) > 1 and peak.get("total_anchors"):
        line += (f"\nat most {peak['anchors']} of {peak['total_anchors']} anchors "
                 f"({100 * peak['anchors'] / peak['total_anchors']:.0f} %) were on the device at once; "
                 f"{peak['offloaded_bytes'] / 2**20:.1f} MB of blocks parked off it")
    return line + next_step
