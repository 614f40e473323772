"""A config built from the defaults, a YAML file and dotted overrides; checked, and written back whole."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from momentum_gs.config.shipped import find_config
from momentum_gs.config.tree import BACKEND_ALIASES, GEOMETRY_PRESETS, GEOMETRY_TERMS, Config, OptimConfig
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.schema import read_text
from momentum_gs.ranges import (ADAM_BETA, COORDINATE, COVERAGE, DOWNSAMPLE, EVERY, FIT_WIDTH, HOLDOUT, FLOAT32_MAX,
                                 FLOAT32_TINY, LEARNING_RATE, LOG_SCALE, MARGIN, MAX_BLOCKS, MAX_NDC_GRADIENT,
                                 MAX_STEPS, SEED, SSIM_MIX, STEP, STEPS, WEIGHT, Range, check_number, shown)


def to_dict(cfg: Any) -> dict:
    """The config tree as plain YAML-able dictionaries (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _coerce(value: Any, type_: Any, key: str) -> Any:
    """Turn a YAML/command-line value into the field's declared type, or raise a UserError."""
    origin = get_origin(type_)
    try:
        if type_ is bool:
            return _boolean(value)
        if origin is tuple:
            items = yaml.safe_load(value) if isinstance(value, str) else value
            item_type = get_args(type_)[0]
            if len(items) != len(get_args(type_)):
                raise ValueError
            return tuple(_coerce(v, item_type, key) for v in items)
        if origin is Literal:
            text = str(value).lower() if isinstance(value, bool) else value  # YAML's true/false for auto|true|false
            if text not in get_args(type_):
                raise UserError(f"config key '{key}' must be one of {', '.join(get_args(type_))}, got {shown(value)}")
            return text
        if type_ in (int, float, str):
            return _scalar(value, type_, key)
    except (TypeError, ValueError, OverflowError, yaml.YAMLError, RecursionError):
        raise UserError(f"config key '{key}' expects {getattr(type_, '__name__', type_)}, got {shown(value)}")
    return value


def _boolean(value: Any) -> bool:
    """A bool from YAML's true/false, 0/1 or the words true|false|yes|no|on|off; ValueError for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes", "on"):
            return True
        if value.lower() in ("false", "0", "no", "off"):
            return False
    raise ValueError


def _scalar(value: Any, type_: type, key: str) -> Any:
    """An int, float or str from a YAML scalar; ValueError for a list, a mapping, a bool where a number goes, or
    a number that is not one of ``type_``."""
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        raise ValueError  # true is not 1, and [1] or {a: 1} is not a name
    if type_ is int and isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        value = float(value)  # "1e3": YAML reads exponents without a dot as text
    if type_ is int and isinstance(value, float) and not value.is_integer():
        raise ValueError
    out = type_(value)
    if type_ is float and not math.isfinite(out):
        raise UserError(f"config key '{key}' must be a finite number, got {shown(value)}")
    return out


# Keys whose defaults are counted in steps of the default run (optim.steps = 30000): unless set, they follow
# optim.steps in the same proportion, so a shorter or longer run keeps Scaffold-GS's growth schedule.
DEFAULT_STEPS = 30_000
SCALED_WITH_STEPS = ("strategy.start_stat", "strategy.update_from", "strategy.update_until")


# Step counts of a block's schedule, and what happens when one lies past the block's last step (optim.steps).
SCHEDULE_KEYS = {
    "strategy.start_stat": "growth never gathers statistics",
    "strategy.update_from": "the anchors never grow",
    "strategy.update_until": "growth and pruning run to the last step, with no settling after them",
    "optim.lr_max_steps": "the learning rates stop part of the way down their decay",
    "weighting.warmup": "the blocks are never re-weighted",
    "geometry.depth_normal_from": "the depth-normal term never applies",
    "geometry.multiview_from": "the multi-view term never applies",
    "geometry.multiview_until": "the multi-view term applies to the last step",
}


# The intervals a schedule counts in steps (0 = off stays off): scaled with the points above before a run starts.
INTERVAL_KEYS = ("weighting.eval_interval", "log.image_every", "log.checkpoint_every", "blocks.interval")


def scale_schedules(cfg: Config, factor: float, since: int = 0, intervals: bool = True) -> None:
    """Scale ``cfg``'s schedules by ``factor`` in place: every point of :data:`SCHEDULE_KEYS` after step ``since``
    keeps its share of the steps after it (moved to since + (point − since) × factor, at least one step past
    ``since``); the caller sets ``optim.steps`` to the new end. With ``intervals`` the intervals of
    :data:`INTERVAL_KEYS` are scaled too (each at least 1; 0, off, stays off): a run not started yet; a run under
    way keeps its intervals. Used by ``--time``'s plan before the first step and by its re-plan during the run."""
    keys = (*SCHEDULE_KEYS, *(INTERVAL_KEYS if intervals else ()))
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value > since:
            setattr(getattr(cfg, section), name, since + max(1, round((value - since) * factor)))


def schedule_warnings(cfg: Config) -> list[str]:
    """One line per schedule key that lies past the end of the run (a config written for a longer run, cut
    with ``optim.steps``), with the value that keeps the default's proportion of the run."""
    steps, lines = cfg.optim.steps, []
    mv_off = not cfg.geometry.lambda_multiview
    unused = {"weighting.warmup": not cfg.weighting.enabled, "geometry.multiview_from": mv_off,
              "geometry.depth_normal_from": not cfg.geometry.lambda_depth_normal, "geometry.multiview_until": mv_off}
    for key, effect in SCHEDULE_KEYS.items():
        value = _get(cfg, key)
        if value <= steps or unused.get(key, False):  # a key of a part that is off schedules nothing
            continue
        section, name = key.split(".")
        default = getattr(type(getattr(cfg, section))(), name)
        proportional = 0 if key == "optim.lr_max_steps" else round(default * steps / DEFAULT_STEPS)
        lines.append(f"{key}={value} is past the run's last step (optim.steps={steps}): {effect}; for the default's "
                     f"share of the run give {key}={proportional}")
    return lines


_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)  # section.key: dotted Python names


def _apply(cfg: Any, key: str, value: Any, explicit: set[str] | None = None) -> None:
    """Set dotted ``key`` on the config tree, checking that it exists and converting its type; the keys set
    are added to ``explicit``."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise UserError(f"config key {shown(key)} is not a name; keys look like section.key (see `mgs config`)")
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        child = getattr(node, part, None)
        if not dataclasses.is_dataclass(child) or isinstance(child, type):  # a section, not a class (__class__)
            raise UserError(f"unknown config key '{key}' (see `mgs config` for the valid keys)")
        node = child
    names = {f.name for f in dataclasses.fields(node)}
    if leaf not in names:
        raise UserError(f"unknown config key '{key}' (see `mgs config` for the valid keys)")
    hint = get_type_hints(type(node))[leaf]
    if key == "render.backend" and isinstance(value, str):
        value = BACKEND_ALIASES.get(value, value)  # an old run folder's config.yaml says "torch"
    if dataclasses.is_dataclass(getattr(node, leaf)):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' is a section; give its fields, e.g. {key}.<field>=...")
        for sub_key, sub_value in value.items():
            _apply(cfg, f"{key}.{sub_key}" if isinstance(sub_key, str) else sub_key, sub_value, explicit)
        return
    setattr(node, leaf, _coerce(value, hint, key))
    if explicit is not None:
        explicit.add(key)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no objects, no code) that refuses a mapping with a key given twice, where PyYAML keeps
    the last value without a word."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue  # other keys are refused later, as not config keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (line {key_node.start_mark.line + 1}); keep one",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _safe_load_unique(text: str) -> Any:
    """``yaml.safe_load(text)``, with a key given twice in a mapping refused (:class:`_UniqueKeyLoader`)."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# A config file holds a few dozen keys (the fully resolved config is about 3 KB): a larger file is not one, and
# its YAML is not parsed (PyYAML keeps hundreds of bytes per node).
MAX_CONFIG_BYTES = 1 << 18
# Nor does it nest deeper than a section, its keys and their lists; PyYAML takes time quadratic in the depth.
MAX_CONFIG_NESTING = 64


def _nesting(text: str) -> int:
    """An upper bound of the YAML nesting depth of ``text``: its deepest brackets (quotes not told apart) or its
    deepest block indentation (a level per two columns of leading spaces, dashes, colons and question marks)."""
    depth = deepest = 0
    for bracket in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    indent = max((len(line) - len(line.lstrip(" -?:")) for line in text.splitlines()), default=0)
    return max(deepest, (indent + 1) // 2)


def read_config_file(path: str | Path) -> dict:
    """The mapping of a YAML config file, a path or the name of a shipped one (:func:`find_config`), or a one-line
    UserError: missing, too large, not UTF-8, not YAML, a key given twice, not a mapping."""
    path = find_config(path)
    text = read_text(path, f"config file {path}", MAX_CONFIG_BYTES, "a YAML config file")
    if _nesting(text) > MAX_CONFIG_NESTING:
        raise UserError(f"config file {path} nests {_nesting(text)} levels deep; a config file holds sections of "
                        f"keys with flat lists (at most {MAX_CONFIG_NESTING} levels are read)")
    try:
        loaded = _safe_load_unique(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {(str(exc).splitlines() or [''])[0]}")
    except (ValueError, OverflowError) as exc:  # a tagged scalar PyYAML cannot build (a date 2001-02-30, !!int x)
        raise UserError(f"config file {path} is not valid YAML: {(str(exc).splitlines() or [''])[0]}")
    except RecursionError:
        raise UserError(f"config file {path} is not valid YAML: nested too deeply")
    if not isinstance(loaded, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, not {type(loaded).__name__}")
    return loaded


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file ``path`` (if given; a path, or the name of a shipped config), then
    ``key=value`` overrides, in that order."""
    cfg, explicit = Config(), set()
    if path is not None:
        for key, value in read_config_file(path).items():
            _apply(cfg, key, value, explicit)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like section.key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
            raise UserError(f"override '{item}': the value is not valid YAML (quote it, or fix the brackets)")
        _apply(cfg, key.strip(), parsed, explicit)
    for key, value in GEOMETRY_PRESETS[cfg.geometry.preset].items():
        if key not in explicit:  # a key the config gives wins over the preset
            _apply(cfg, key, value)
    reason = check_number(cfg.optim.steps, RANGES["optim.steps"])
    if reason:  # before the scaling below divides by it (10^400 steps overflow a float)
        raise UserError(f"config key 'optim.steps' {reason}")
    for key in SCALED_WITH_STEPS:
        if key not in explicit and cfg.optim.steps != DEFAULT_STEPS:
            section, name = key.split(".")
            default = getattr(type(getattr(cfg, section))(), name)
            setattr(getattr(cfg, section), name, round(default * cfg.optim.steps / DEFAULT_STEPS))
    return validate(cfg)


# The numbers' ranges: values outside would divide by zero, break a schedule, make the loss meaningless, leave
# float32 or ask for more than any machine has. Every number must also be finite; tuple keys give the range of
# each item. The bounds that depend on the scene (its extent and coordinates) are checked by config.scale.
# the optimizer's learning rates: every optim key named *_lr or *_lr_final
LEARNING_RATES = [f.name for f in dataclasses.fields(OptimConfig) if f.name.endswith(("_lr", "_lr_final"))]
_FLOAT32 = "float32's largest number; the renderer's positions and depths are float32"
RANGES: dict[str, Range] = {
    "data.downsample": DOWNSAMPLE, "data.max_width": FIT_WIDTH,
    "data.test_every": Range(0, MAX_STEPS, why="every n-th image is held out, 0 for none; no scene holds 10^9 images"),
    "data.test_offset": Range(0, MAX_STEPS, why="an image's index in the scene; no scene holds 10^9 images"),
    "data.prefetch": Range(0, 1024, why="images decoded ahead, each waiting in memory: 1024 full-size photos already "
                           "take tens of GB"),
    "data.cache_bytes": Range(0, 2**62, why="bytes, 0 for a quarter of the RAM; 2^62 bytes is more than any machine "
                              "addresses"),
    "model.feat_dim": Range(1, 4096, why="floats per anchor feature: at least one, and 4096 (128x the paper's 32) "
                            "take 16 KB an anchor, past any GPU at a city's million anchors"),
    "model.n_offsets": Range(1, 1024, why="Gaussians per anchor: at least one, and 1024 (100x the paper's 10) "
                             "multiply every frame's Gaussians past what any renderer draws"),
    "model.voxel_size": Range(0, FLOAT32_MAX, why=f"0 is automatic; at most {_FLOAT32}"),
    "model.voxel_max_footprints": Range(0, 1e6, why="pixels' footprints, 0 for no bound; a million is past any scene"),
    "model.hidden_dim": Range(1, 4096, why="the decoder MLPs' width: at least one, and at 4096 (128x the paper's 32) "
                              "each Gaussian costs 16 M multiply-adds a layer"),
    "model.appearance_dim": Range(0, 4096, why="floats per image's appearance code, 0 for none; the MLPs reading it "
                                  "are at most 4096 wide"),
    "model.max_points": Range(0, MAX_STEPS, why="SfM points kept, 0 for all; no reconstruction holds 10^9"),
    "optim.steps": STEPS, "optim.lr_max_steps": Range(0, MAX_STEPS, why="the steps the learning rates decay over, "
                                                      "0 for optim.steps; runs stop at 10^9 steps"),
    **{f"optim.{key}": LEARNING_RATE for key in LEARNING_RATES},
    "optim.lambda_dssim": SSIM_MIX, "optim.lambda_scale": WEIGHT,
    "strategy.start_stat": STEP, "strategy.update_from": STEP, "strategy.update_interval": STEPS,
    "strategy.update_until": STEP,
    "strategy.init_factor": Range(1, 1 << 20, why="the coarsest growing cell in voxels: below 1 it is finer than the "
                                  "anchors' own grid, and 2^20 voxels span more than float32 resolves at a voxel"),
    "strategy.hierarchy_factor": Range(1, 1 << 20, why="how much finer each growing level's cell is: below 1 the "
                                       "levels would grow coarser, and 2^20 leaves float32 within two levels"),
    "strategy.levels": Range(0, 64, why="growing levels, 0 for none; level l waits for a gradient 2^l times the "
                             "threshold, out of reach long before 64"),
    "strategy.grad_threshold": Range(0, MAX_NDC_GRADIENT, open_low=True, why=(
        "a mean NDC gradient above it is out of reach (one Gaussian's is at most about 2.5, measured ones stay "
        "below 0.05), so the anchors would never grow; strategy.levels=0 turns growing off")),
    "strategy.min_opacity": Range(0, 1024, why="it bounds the opacity summed over an anchor's model.n_offsets "
                                  "children, each below 1"),
    "strategy.success_threshold": Range(0, 1, why="a fraction of the steps between updates in which an anchor was "
                                        "seen"),
    "strategy.max_child_log_scale": LOG_SCALE,
    "blocks.active": Range(1, MAX_BLOCKS, why="blocks in memory at once: at least one, and no partition has more "
                           f"than {MAX_BLOCKS}"),
    "blocks.interval": STEPS,
    "teacher.momentum": Range(0, 1, why="the teacher becomes m x teacher + (1 - m) x student: outside [0, 1] it "
                              "overshoots both and diverges"),
    "teacher.lambda_cons": WEIGHT,
    "optim.adam_beta1": ADAM_BETA, "optim.adam_beta2": ADAM_BETA,
    "weighting.eval_interval": STEPS, "weighting.val_every": STEPS,
    "weighting.ema": Range(0, 1, open_high=True, why="a PSNR is smoothed as e x old + (1 - e) x new: at 1 it never "
                           "takes a new value, outside [0, 1] it diverges"),
    "weighting.lam": WEIGHT,
    "weighting.sigma": Range(0.01, 1000, why="a PSNR gap in dB: below 0.01 dB every block but the best weighs 2, "
                             "above 1000 dB (past any gap float32 images give) every block weighs 1"),
    "weighting.warmup": STEP,
    "render.tile_size": Range(1, 1024, why="pixels on a side of the rasteriser's tiles: at least one, and a tile of "
                              "1024 is as large as the images, so tiling stops sorting anything out"),
    "render.background": Range(0, 1, why="a colour's channels, in [0, 1] like the images'"),
    "render.near": Range(0, FLOAT32_MAX, why=f"camera depths in world units, at most {_FLOAT32}"),
    **{f"geometry.lambda_{term}": WEIGHT for term in GEOMETRY_TERMS},
    "geometry.sparse_depth_holdout": HOLDOUT, "geometry.depth_normal_from": STEP, "geometry.multiview_from": STEP,
    "geometry.multiview_until": STEP, "geometry.multiview_every": STEPS,
    "log.progress_every": STEPS, "log.image_every": EVERY, "log.checkpoint_every": EVERY,
    "log.keep_checkpoints": Range(0, MAX_STEPS, why="checkpoints kept, 0 for all; a run writes fewer than 10^9"),
    "partition.blocks": Range(0, MAX_BLOCKS, why=f"0 picks the count from the scene; a partition has at most "
                              f"{MAX_BLOCKS} blocks, each trained in turn or on its own GPU"),
    "partition.grid": Range(0, MAX_BLOCKS, why=f"cells along an axis, 0 to pick them; a partition has at most "
                            f"{MAX_BLOCKS} blocks"),
    "partition.box": COORDINATE, "partition.margin": MARGIN, "partition.coverage": COVERAGE,
    "distributed.check_every": EVERY,
    "distributed.processes": Range(0, 4096, why="0 picks the count; no machine has 4096 cores, so more is a typing "
                                   "slip"),
    "distributed.view_processes": Range(0, 4096, why="0 is one per physical core; no machine has 4096 cores, so more "
                                        "is a typing slip"),
    "distributed.views_per_process": Range(1, 64, why="views a process renders a step: one or more, 64 at most"),
    "distributed.planned_views": Range(1, 4096, why="the views a step a config is planned for, as `mgs train` writes "
                                       "it: at least one, and one a process"),
    "distributed.timeout_s": Range(1, 10**7, why="seconds a process waits for the others: at least one, and 10^7 s "
                                   "(four months) is past any run"),
    "seed": SEED, "threads": Range(0, 4096, why="0 is every core; no machine has 4096 cores, so more is a typing slip"),
}


def _get(cfg: Config, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), cfg)


def validate(cfg: Config) -> Config:
    """Raise a UserError for values that cannot work (e.g. ``strategy.update_interval=0``, a NaN weight,
    ``optim.steps=1e30``): every key in :data:`RANGES`, each item of a tuple key."""
    for key, allowed in RANGES.items():
        value = _get(cfg, key)
        for item in value if isinstance(value, tuple) else (value,):
            reason = check_number(item, allowed)
            if reason:
                shown = f"each item of config key '{key}'" if isinstance(value, tuple) else f"config key '{key}'"
                raise UserError(f"{shown} {reason}")
    _check_together(cfg)
    return cfg


def _check_together(cfg: Config) -> None:
    """The bounds that one key puts on another: a voxel float32 can hold, growing levels whose thresholds a
    gradient can reach, a pruning bound the anchors' children can pass."""
    voxel, strategy = cfg.model.voxel_size, cfg.strategy
    if 0 < voxel < FLOAT32_TINY:
        raise UserError(f"config key 'model.voxel_size' must be 0 (automatic) or at least {FLOAT32_TINY:.3g}, got "
                        f"{voxel!r} (float32's smallest normal number: the anchor grid is float32)")
    top = strategy.grad_threshold * 2.0 ** (strategy.levels - 1)
    if strategy.levels > 1 and top > MAX_NDC_GRADIENT:
        useful = 1 + int(math.floor(math.log2(MAX_NDC_GRADIENT / strategy.grad_threshold)))
        raise UserError(f"config key 'strategy.levels' is {strategy.levels}, but level l grows where the mean NDC "
                        f"gradient passes strategy.grad_threshold x 2^l, and from level {useful} on that is above "
                        f"{MAX_NDC_GRADIENT:g}, out of any gradient's reach; give strategy.levels={useful} at most")
    if strategy.min_opacity >= cfg.model.n_offsets:
        raise UserError(f"config key 'strategy.min_opacity' is {strategy.min_opacity!r}, but an anchor's "
                        f"model.n_offsets={cfg.model.n_offsets} children sum to less than {cfg.model.n_offsets} "
                        "(each opacity is below 1): every anchor would be pruned")


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config; ``load_config(path)`` gives the same tree back."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
