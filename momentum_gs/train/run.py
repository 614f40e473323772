"""What ``mgs train`` and ``mgs demo`` do around the :class:`Trainer`: configs, run folders, resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from momentum_gs.config import Config, load_config, schedule_warnings
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import alive, atomic_write_text, remove_stale_temporaries

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def prepare_config(config: str | None, data: str | None, out: str | None, overrides: list[str],
                   resume: bool) -> Config:
    """Resolve the config of a run: a resumed run starts from its saved ``config.yaml``."""
    if resume:
        if not out:
            raise UserError("--resume needs --out RUN_DIR (the run folder to continue)")
        saved = Path(out) / "config.yaml"
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
        cfg.blocks.partition = str(Path(cfg.blocks.partition).resolve())
    return cfg


def train(cfg: Config, resume: bool = False, viewer: tuple[str, int] | None = None, keep_viewer: bool = False,
          report: Callable[[dict], None] | None = None) -> dict:
    """Load the scene, train (continuing from the last checkpoint with ``resume``), return a summary.

    Under ``torchrun`` every process calls this; they join one process group and share the work
    (:mod:`momentum_gs.train.distributed`). ``summary["is_main"]`` is True on the process that reports.
    ``viewer`` (host, port) serves the live viewer of the training on rank 0 (:mod:`momentum_gs.view`);
    ``keep_viewer``: after a training that ran to its end, it serves the final model until Ctrl-C (the run's
    lock released, its summary written and given to ``report`` first).
    """
    from momentum_gs.data.sanity import scene_warnings
    from momentum_gs.data.scene import load_scene
    from momentum_gs.io.checkpoint import latest_checkpoint
    from momentum_gs.render.kernels import kernels_in_use
    from momentum_gs.train import distributed as D
    from momentum_gs.train.trainer import Trainer

    out_dir = Path(cfg.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; the run needs a folder")
    if not resume and latest_checkpoint(out_dir / "ckpt") is not None:
        raise UserError(f"{out_dir} already holds a trained run; use --resume to continue it or another --out")
    world, device = D.init_world(cfg.device, cfg.distributed.backend, cfg.distributed.timeout_s)
    lock, made_folder, live, kept = None, not out_dir.exists(), None, None
    if viewer is not None and world.is_main:  # a busy port or no viser: one line before anything is made
        from momentum_gs.view.server import check_port, import_viser

        check_port(*viewer)
        import_viser()
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot make the run folder {out_dir} ({exc.strerror or exc})")
        if world.is_main:
            lock = RunLock(out_dir)
            for folder in (out_dir, out_dir / "ckpt"):
                for stale in remove_stale_temporaries(folder):
                    print(f"removed {stale.name}, left by a write that was killed", flush=True)
        scene = load_scene(cfg.data)
        if world.is_main and not resume:
            for line in [*schedule_warnings(cfg), *scene_warnings(scene.train, scene.points, cfg.render.near)]:
                print(f"warning: {line}", file=sys.stderr, flush=True)
        trainer = Trainer(cfg, scene, out_dir, device, world)
        compositor = kernels_in_use(device)  # builds the C++ kernels on a machine's first CPU run
        if world.is_main:
            print(compositor, flush=True)
        if resume:
            checkpoint = trainer.resume()
            if checkpoint is None:
                raise UserError(f"cannot resume: {out_dir / 'ckpt'} holds no checkpoint")
            if world.is_main:
                print(f"resuming from {checkpoint} (step {trainer.step})", flush=True)
        if viewer is not None and world.is_main:
            try:
                live = start_live_viewer(trainer, *viewer)
            except Exception as exc:  # training never dies because of the viewer
                trainer.view = None
                print(f"viewer: could not start ({type(exc).__name__}: {exc}); training goes on without it",
                      file=sys.stderr, flush=True)
        with stop_on_signals(trainer, enabled=not world.distributed):
            summary = trainer.train()
        if live is not None and keep_viewer and not trainer.stop_requested:
            kept, live = live, None  # not closed below: it goes on serving the final model
    except BaseException:
        if lock is not None:
            lock.release()
            lock = None
        if made_folder and world.is_main and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise
    finally:
        if live is not None:
            with contextlib.suppress(Exception):  # a viewer that fails to stop does not fail the run
                live.close()
        if lock is not None:
            lock.release()
        D.close_world(world)
    summary["out"], summary["is_main"], summary["compositor"] = str(out_dir), world.is_main, compositor
    if world.is_main:
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
        if report is not None:
            report(summary)
    if kept is not None:
        from momentum_gs.view.server import serve_until_interrupted

        trainer.view.finished = True
        serve_until_interrupted(kept, f"training done: the viewer serves the final model at {kept.url} until Ctrl-C "
                                      "(--viewer-exit stops it with the training)")
    return summary


def start_live_viewer(trainer, host: str, port: int):
    """Serve the viewer of ``trainer``'s loaded blocks (:class:`~momentum_gs.view.server.Viewer`); its frames
    are rendered in their own thread, between the trainer's steps."""
    from tqdm import tqdm

    from momentum_gs.view.server import Viewer, warn_if_open
    from momentum_gs.view.sources import TrainingSource

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


class RunLock:
    """``RUN/.lock`` holding the owner's host and pid while a run trains, so a second ``mgs train`` into the
    same folder stops with one line; a lock whose process is gone (killed) is taken over with a note."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / ".lock"
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


def describe(summary: dict) -> str:
    """One line summing up a training run."""
    anchors = (f"{summary['num_anchors']} anchors" if summary.get("num_blocks", 1) == 1 else
               f"{summary['num_anchors']} anchors trained over the {summary['num_blocks']} blocks with their "
               "margins (`mgs eval` counts the merged model, each block cropped to its cell)")
    line = (f"trained {summary['steps']} steps in {summary['seconds']:.0f} s "
            f"({summary['steps_per_second']:.2f} steps/s), {anchors} -> {summary['out']}")
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


def train_from_args(config, data, out, overrides, resume: bool = False, viewer: tuple[str, int] | None = None,
                    keep_viewer: bool = False, report: Callable[[dict], None] | None = None) -> dict:
    """``mgs train``. After ``torchrun --max-restarts`` restarts a failed job, it resumes by itself. ``viewer``
    (host, port): serve the live viewer (rank 0); ``keep_viewer`` and ``report``: as :func:`train`."""
    from momentum_gs.io.checkpoint import latest_checkpoint
    from momentum_gs.train.distributed import restart_count

    if not resume and restart_count() > 0:
        folder = Path(out or prepare_config(config, data, out, overrides, resume=False).out)
        resume = latest_checkpoint(folder / "ckpt") is not None
    cfg = prepare_config(config, data, out, overrides, resume)
    if cfg.blocks.partition.startswith("auto:"):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError(f"blocks.partition={cfg.blocks.partition} is made by one process: run `mgs partition "
                            f"--data {cfg.data.path} --out PART.npz --blocks N` first and pass blocks.partition=PART.npz")
        auto_partition_in_run(cfg)
    return train(cfg, resume=resume, viewer=viewer, keep_viewer=keep_viewer, report=report)


def auto_partition_in_run(cfg: Config) -> None:
    """Resolve ``blocks.partition = "auto:N"``: partition the scene into N blocks as ``<out>/partition.npz`` (kept
    when it is already there, e.g. on resume) and point the config at it."""
    from momentum_gs.partition.run import partition_main

    spec = cfg.blocks.partition.split(":", 1)[1]
    if not spec.isdigit() or int(spec) < 1:
        raise UserError(f"blocks.partition={cfg.blocks.partition}: after auto: comes a number of blocks, e.g. auto:4")
    path = (Path(cfg.out) / "partition.npz").resolve()
    cfg.blocks.partition = str(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(partition_main(cfg.data, str(path), num_blocks=int(spec)))


def demo(data_dir: Path, out_dir: Path, overrides: list[str], config_name: str = "demo.yaml",
         preset: str = "demo") -> Path:
    """``mgs demo``: make the synthetic city if missing, partition it when the config trains blocks, train,
    evaluate; returns the path of results.json (the strip of held-out views and the map lie beside it)."""
    from momentum_gs.data.synthetic import make_synthetic_scene
    from momentum_gs.eval.evaluate import evaluate_run, summary_lines

    config = REPO_CONFIGS / config_name
    if not config.is_file():
        raise UserError(f"demo config {config} not found; run the demo from a source checkout of momentum_gs")
    if (out_dir / "ckpt").is_dir():
        raise UserError(f"{out_dir} already holds a run; remove it or pass --out for a new one")
    if not (data_dir / "train").is_dir():
        from momentum_gs.train.progress import counter_bar

        print(f"generating the synthetic {preset} city in {data_dir}")
        make_synthetic_scene(data_dir, preset, seed=0, progress=counter_bar(f"synth {preset}", "view"))
    cfg = prepare_config(str(config), str(data_dir), str(out_dir), overrides, resume=False)
    if cfg.blocks.partition.startswith("auto:"):  # "auto:N": partition into N blocks inside the run folder
        auto_partition_in_run(cfg)
    summary = train(cfg)
    print(describe(summary))
    results = evaluate_run(out_dir)
    print("\n".join(summary_lines(results, out_dir)[:-1]))
    return out_dir / "eval" / "results.json"
