"""The plan of a training, said before its first step, and a time budget turned into a step count.

A short probe trains a throwaway copy of the run (the same scene, config, device and processes, in a temporary
folder) for a few steps and times them; the run itself then starts from step 0 with its own seeds, so the probe
changes no bit of it. The first model is the smallest the run will see: anchors grow while ``strategy``'s
window is open, and the steps slow with them. :data:`GROWTH` is that slowdown over a whole run, within the range
measured on brighton_beach and the demo city (docs/benchmarks/training.md, "The plan and --time"); a guess, since
the growth depends on the scene.

``--time`` (:func:`fit_to_budget`) picks the steps that fit the budget at that pace and scales every schedule of
the config to them (:func:`fit_to_steps`), so that growth, the learning-rate decays, the re-weighting, the
validations and the checkpoints keep their share of the run. Once the growth window has closed the run plans its
end again from its own pace (:mod:`momentum_gs.train.replan`).
"""

from __future__ import annotations

import copy
import gc
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from momentum_gs.config import Config
from momentum_gs.config.load import scale_schedules
from momentum_gs.data.scene import SceneData, load_scene
from momentum_gs.errors import UserError
from momentum_gs.train import distributed as D
from momentum_gs.train.trainer import Trainer

GROWTH = 1.35  # a whole run's mean step time over its first steps' (module docstring)
PROBE_WARMUP = 2  # steps that load the kernels and the first images, not timed
PROBE_SECONDS = 10.0  # about how long the timed steps take
PROBE_STEPS = (3, 20)  # the fewest and the most timed steps (a fixed 5 with several processes)
LONG_S = 3600.0  # past this, the plan names what shortens the run
RESERVE = (1.0, 0.01)  # seconds and share of the budget kept for the last checkpoint and the summary
MIN_STEPS = 30  # the fewest steps a budget may leave
SMALL_STEPS = 2000  # under this many steps (views) per block a budget shrinks the images (at most SHRINKS times)
SHRINKS = 2
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s?)?")


@dataclass
class Probe:
    """What the probe measured: seconds per global step of the first model, over ``steps`` steps, and the
    process's peak resident memory after them (None where it cannot be read)."""

    seconds_per_step: float
    steps: int
    peak_bytes: int | None
    blocks: int  # the run's blocks
    total_steps: int  # the run's global steps


def parse_duration(text: str) -> float:
    """Seconds of a duration: hours, minutes and seconds as ``1h30m``, ``2h`` or ``45m`` (``min`` and ``s`` too), or a bare
    number of seconds; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: give e.g. 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not 0 < total < 10**7:
        raise ValueError(f"{text!r}: a duration above 0 and below 10^7 s (four months)")
    return total


def duration(seconds: float) -> str:
    """Seconds in words: seconds below a minute and a half, minutes below an hour, else hours and minutes."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def probe(cfg: Config, scene: SceneData, device: torch.device, world: D.World = D.SINGLE) -> Probe:
    """Train a throwaway copy of the run for a few steps in a temporary folder (collective with several
    processes) and time them."""
    test = copy.deepcopy(cfg)
    test.log.tensorboard = test.log.wandb = False
    test.log.checkpoint_every = test.log.image_every = 0
    with tempfile.TemporaryDirectory(prefix="mgs-probe-") as folder:
        trainer = Trainer(test, scene, Path(folder), device, world)
        started = time.perf_counter()
        trainer.train(until=PROBE_WARMUP, quiet=True)
        warm = (time.perf_counter() - started) / PROBE_WARMUP
        low, high = PROBE_STEPS
        steps = 5 if world.distributed else max(low, min(high, math.floor(PROBE_SECONDS / max(warm, 1e-6))))
        steps = max(1, min(steps, trainer.total_steps - PROBE_WARMUP))
        _sync(device)
        started = time.perf_counter()
        trainer.train(until=PROBE_WARMUP + steps, quiet=True)
        _sync(device)
        seconds = (time.perf_counter() - started) / steps
        blocks, total = len(trainer.blocks), trainer.total_steps
        del trainer
        gc.collect()
    return Probe(seconds, steps, _peak_bytes(device), blocks, total)


def estimate_seconds(probe: Probe, total_steps: int) -> float:
    """The whole run's training time at the probe's pace, grown by :data:`GROWTH`."""
    return probe.seconds_per_step * GROWTH * total_steps


def image_bytes(scene: SceneData) -> int:
    """The decoded training images' bytes (uint8 RGB), what the image cache holds when they all fit."""
    return sum(camera.width * camera.height * 3 for camera in scene.train)


def plan_lines(cfg: Config, scene: SceneData, total_steps: int, blocks: int, threads: str,
               probe: Probe | None, cache_bytes: int) -> list[str]:
    """The plan, in lines: what is trained and how, then (with a probe) how long and how much memory (the probe's
    peak and ``cache_bytes``, what the image cache will hold), and past :data:`LONG_S` on a CPU what shortens
    it."""
    width, height = max(((c.width, c.height) for c in scene.train), default=(0, 0))
    size = f"{width}×{height}"
    source_w, source_h = scene.source_size
    if source_w > width:
        why = (f"data.max_width={cfg.data.max_width}; data.max_width=0 trains at full size"
               if cfg.data.max_width and source_w / max(cfg.data.downsample, 1) > cfg.data.max_width
               else f"data.downsample={cfg.data.downsample}")
        size += f" (from {source_w}×{source_h}: {why})"
    per_block = f"{cfg.optim.steps} steps" + (f" per block, {total_steps} in all, {blocks} blocks "
                                              f"({cfg.blocks.active} at a time)" if blocks > 1 else "")
    lines = [f"plan: {len(scene.train)} training photos at {size}, {per_block}, {threads}"]
    if probe is None:
        return lines
    seconds = estimate_seconds(probe, total_steps)
    memory = ""
    if probe.peak_bytes is not None:
        memory = f", at most about {(probe.peak_bytes + cache_bytes) / 2**30:.1f} GiB of memory"
    lines.append(f"plan: about {duration(seconds)}{memory} ({probe.seconds_per_step:.3g} s a step over {probe.steps} "
                 f"probe steps of the first model, ×{GROWTH} for the anchors' growth)")
    if seconds > LONG_S and cfg.device != "cuda" and not str(cfg.device).startswith("cuda"):
        half = max(1, cfg.optim.steps // 4)
        lines.append(f"plan: over an hour on a CPU; shorter: --time 30m (fits the steps to 30 min), "
                     f"optim.steps={half} (about {duration(seconds / 4)}), or data.max_width={max(1, width // 2)} "
                     f"(a quarter of the pixels, about {duration(seconds / 3)})")
    return lines


def fit_to_budget(cfg: Config, scene: SceneData, device: torch.device, world: D.World, measured: Probe,
                  deadline: float, budget: float) -> tuple[SceneData, Probe, str]:
    """Fit ``cfg`` to end by ``deadline`` (``time.time()``; ``budget`` seconds from the command's start): the steps
    that fit at ``measured``'s pace, every schedule scaled to them (:func:`fit_to_steps`); with fewer than
    :data:`SMALL_STEPS` views per block, the images halved (up to :data:`SHRINKS` times, each probed again). Rank 0
    decides for every process. Returns the scene and probe it ends with and the line that says the fit."""
    shrinks = 0
    while True:
        steps = D.agreed(world, steps_for_budget(cfg, measured, deadline - time.time()))
        width = max(camera.width for camera in scene.train)
        views = cfg.distributed.planned_views  # views a step (momentum_gs.train.views)
        if steps * views >= SMALL_STEPS or shrinks == SHRINKS or width < 200:
            break
        shrinks += 1
        cfg.data.max_width = width // 2
        if world.is_main:
            print(f"time: {steps} steps at {width} px wide fit {duration(budget)}; halving the images to "
                  f"data.max_width={cfg.data.max_width} and probing again", flush=True)
        scene = load_scene(cfg.data, observations=bool(scene.observed))
        measured = probe(cfg, scene, device, world)
    least = min(cfg.optim.steps, MIN_STEPS)
    if steps < least:
        need = least * measured.blocks / cfg.blocks.active * measured.seconds_per_step * GROWTH
        raise UserError(f"--time {duration(budget)} leaves time for {steps} steps at {measured.seconds_per_step:.3g} s "
                        f"a step; give more time (about {duration(need + budget)} for {least} steps), or smaller "
                        "images (data.max_width)")
    before = cfg.optim.steps
    fit_to_steps(cfg, steps)
    return scene, measured, (f"time: {steps} steps fit the {duration(budget)} budget (instead of {before}); every "
                             f"schedule scaled by {steps / before:.3g}")


def reserve_seconds(budget: float) -> float:
    """Seconds of a budget kept for the last checkpoint and the summary (:data:`RESERVE`)."""
    fixed, share = RESERVE
    return fixed + share * budget


def steps_for_budget(cfg: Config, probe: Probe, seconds_left: float) -> int:
    """Steps per block (``optim.steps``) that fit ``seconds_left`` at the probe's pace, after the reserve."""
    fixed, share = RESERVE
    usable = seconds_left * (1 - share) - fixed
    global_steps = math.floor(usable / (probe.seconds_per_step * GROWTH)) if usable > 0 else 0
    return global_steps * cfg.blocks.active // max(probe.blocks, 1)


def fit_to_steps(cfg: Config, steps: int) -> None:
    """Set ``optim.steps`` to ``steps`` and scale every schedule by the same factor (:func:`~momentum_gs.config.load
    .scale_schedules`), so that each keeps its share of the run; the growth window keeps at least two of its
    intervals."""
    scale_schedules(cfg, steps / cfg.optim.steps)
    cfg.optim.steps = steps
    strategy = cfg.strategy
    window = strategy.update_until - strategy.update_from
    if window > 0 and strategy.update_interval * 2 > window:
        strategy.update_interval = max(1, window // 2)
        strategy.start_stat = min(strategy.start_stat, strategy.update_from)


def setting(cfg: Config, key: str):
    """The value of dotted ``key`` ("section.name") in ``cfg``."""
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _peak_bytes(device: torch.device) -> int | None:
    """The process's peak resident memory (the GPU's peak allocation on a GPU), None where not known."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux
