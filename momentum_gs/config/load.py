"""A config built from the defaults, a YAML file and dotted overrides; checked, and written back whole."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from momentum_gs.config.tree import (BACKEND_ALIASES, Config, OptimConfig)
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.ranges import (AT_LEAST_0, COUNT, FINITE, FRACTION, MAX_BLOCKS, MAX_WIDTH, POSITIVE, SEED,
                                 STEPS, Range, check_number)


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
        if type_ is bool:  # true/false (YAML's spellings), or 1/0; anything else is a slip ([1] is not true)
            text = value.lower() if isinstance(value, str) else value
            if text in ("true", "1", "yes", "on") or (type(value) is int and value == 1) or value is True:
                return True
            if text in ("false", "0", "no", "off") or (type(value) is int and value == 0) or value is False:
                return False
            raise ValueError
        if origin is tuple:
            items = yaml.safe_load(value) if isinstance(value, str) else value
            item_type = get_args(type_)[0]
            if len(items) != len(get_args(type_)):
                raise ValueError
            return tuple(_coerce(v, item_type, key) for v in items)
        if origin is Literal:
            text = str(value).lower() if isinstance(value, bool) else value  # YAML's true/false for auto|true|false
            if text not in get_args(type_):
                raise UserError(f"config key '{key}' must be one of {', '.join(get_args(type_))}, got {value!r}")
            return text
        if type_ in (int, float, str):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError  # true is not 1, and [1] or {a: 1} is not a name
            if type_ is int and isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
                value = float(value)  # "1e3": YAML reads exponents without a dot as text
            if type_ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = type_(value)
            if type_ is float and not math.isfinite(out):
                raise UserError(f"config key '{key}' must be a finite number, got {value!r}")
            return out
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"config key '{key}' expects {getattr(type_, '__name__', type_)}, got {value!r}")
    return value


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
}


def schedule_warnings(cfg: Config) -> list[str]:
    """One line per schedule key that lies past the end of the run (a config written for a longer run, cut
    with ``optim.steps``), with the value that keeps the default's proportion of the run."""
    steps, lines = cfg.optim.steps, []
    unused = {"weighting.warmup": not cfg.weighting.enabled,
              "geometry.depth_normal_from": not cfg.geometry.lambda_depth_normal}
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


def _apply(cfg: Any, key: str, value: Any, explicit: set[str] | None = None) -> None:
    """Set dotted ``key`` on the config tree, checking that it exists and converting its type; the keys set
    are added to ``explicit``."""
    if not isinstance(key, str) or not key:
        raise UserError(f"config key {key!r} is not a name; keys look like section.key (see `mgs config`)")
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        child = getattr(node, part, None)
        if not dataclasses.is_dataclass(child):
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if given), then ``key=value`` overrides, in that order."""
    cfg, explicit = Config(), set()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = _safe_load_unique(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not UTF-8 text")
        except yaml.YAMLError as exc:
            raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}")
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a mapping of keys, not {type(loaded).__name__}")
        for key, value in loaded.items():
            _apply(cfg, key, value, explicit)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like section.key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise UserError(f"override '{item}': the value is not valid YAML (quote it, or fix the brackets)")
        _apply(cfg, key.strip(), parsed, explicit)
    for key in SCALED_WITH_STEPS:
        if key not in explicit and cfg.optim.steps != DEFAULT_STEPS:
            section, name = key.split(".")
            default = getattr(type(getattr(cfg, section))(), name)
            setattr(getattr(cfg, section), name, round(default * cfg.optim.steps / DEFAULT_STEPS))
    return validate(cfg)


# The numbers' ranges: values outside would divide by zero, break a schedule, make the loss meaningless or ask
# for more than any machine has. Every number must also be finite; tuple keys give the range of each item.
_LEARNING_RATES = [f"optim.{f.name}" for f in dataclasses.fields(OptimConfig)
                   if f.name.endswith("_lr") or f.name.endswith("_lr_final")]
RANGES: dict[str, Range] = {
    "data.downsample": Range(1, MAX_WIDTH), "data.max_width": Range(0, MAX_WIDTH), "data.test_every": COUNT,
    "data.test_offset": COUNT, "data.prefetch": Range(0, 1024), "data.cache_bytes": Range(0, 2**62),
    "model.feat_dim": Range(1, 4096), "model.n_offsets": Range(1, 1024), "model.voxel_size": AT_LEAST_0,
    "model.hidden_dim": Range(1, 4096), "model.appearance_dim": Range(0, 4096), "model.max_points": COUNT,
    "optim.steps": STEPS, "optim.lr_max_steps": COUNT, **{key: POSITIVE for key in _LEARNING_RATES},
    "optim.lambda_dssim": FRACTION, "optim.lambda_scale": AT_LEAST_0,
    "strategy.start_stat": COUNT, "strategy.update_from": COUNT, "strategy.update_interval": STEPS,
    "strategy.update_until": COUNT, "strategy.init_factor": Range(1, 1 << 20),
    "strategy.hierarchy_factor": Range(1, 1 << 20), "strategy.levels": Range(0, 64),
    "strategy.grad_threshold": POSITIVE, "strategy.min_opacity": AT_LEAST_0, "strategy.success_threshold": FRACTION,
    "strategy.max_child_log_scale": FINITE,
    "blocks.active": Range(1, MAX_BLOCKS), "blocks.interval": STEPS,
    "teacher.momentum": FRACTION, "teacher.lambda_cons": AT_LEAST_0,
    "weighting.eval_interval": STEPS, "weighting.val_every": STEPS,
    "weighting.ema": Range(0, 1, open_high=True), "weighting.lam": AT_LEAST_0, "weighting.sigma": POSITIVE,
    "weighting.warmup": COUNT,
    "render.tile_size": Range(1, 1024), "render.background": FRACTION, "render.near": AT_LEAST_0,
    "geometry.lambda_flatten": AT_LEAST_0, "geometry.lambda_depth_normal": AT_LEAST_0,
    "geometry.depth_normal_from": COUNT,
    "log.progress_every": STEPS, "log.image_every": COUNT, "log.checkpoint_every": COUNT,
    "log.keep_checkpoints": COUNT,
    "partition.blocks": Range(0, MAX_BLOCKS), "partition.grid": Range(0, MAX_BLOCKS), "partition.box": FINITE,
    "partition.margin": AT_LEAST_0, "partition.coverage": FRACTION,
    "distributed.check_every": COUNT, "distributed.timeout_s": Range(1, 10**7), "seed": SEED,
    "threads": Range(0, 4096),
}


def _get(cfg: Config, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


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
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config; ``load_config(path)`` gives the same tree back."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
