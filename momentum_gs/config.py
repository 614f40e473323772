"""The typed config tree: dataclasses with defaults, YAML files for what differs, dotted overrides.

``load_config(path, overrides)`` builds a :class:`Config`; ``save_config`` writes the fully resolved tree,
which is itself a valid config file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

import yaml

from momentum_gs.errors import UserError
from momentum_gs.ranges import (AT_LEAST_0, COUNT, FINITE, FRACTION, MAX_BLOCKS, MAX_WIDTH, POSITIVE, SEED,
                                 STEPS, Range, check_number)

if TYPE_CHECKING:  # for the annotations: the functions that use torch import it themselves
    import torch


# Every key with a fixed set of values has a Literal type; the check and `mgs config --explain` read it.
# The two method switches (docs/decisions/0003): the first value of each is the paper's code.
Gradient = Literal["reference", "student", "decoder_only"]  # teacher.gradient
AnchorFilter = Literal["reference", "bound"]  # render.anchor_filter
CONSISTENCY_GRADIENTS, ANCHOR_FILTERS = get_args(Gradient), get_args(AnchorFilter)
Policy = Literal["round_robin", "random"]
Offload = Literal["memory", "disk"]
Backend = Literal["auto", "builtin", "gsplat"]
BACKEND_ALIASES = {"torch": "builtin"}  # render.backend's old names, still read (config files, the command line)
Kernels = Literal["auto", "cpp", "torch"]  # render.kernels
ProcessBackend = Literal["auto", "nccl", "gloo"]
WandbMode = Literal["offline", "online"]
Switch = Literal["auto", "true", "false"]


@dataclass
class DataConfig:
    """Where the scene is and how its images are loaded."""

    path: str = ""  # scene folder: images/ + sparse/0, or train/ + val/ (Mill-19 layout)
    downsample: int = 1  # integer factor; cached as images_<factor>
    max_width: int = 0  # if > 0, downsample so that width <= max_width (overrides `downsample`)
    test_every: int = 8  # single-folder layout: every n-th image (sorted by name) is held out
    test_offset: int = 0  # ... starting at this index (0: images 0, n, 2n, ... as Scaffold-GS/3DGS)
    prefetch: int = 4  # images decoded ahead of use by the background loader
    cache_images: bool = True  # keep decoded images in memory after first use, within cache_bytes
    cache_bytes: int = 0  # byte budget of that cache, least recently used out first (0: a quarter of the RAM)


@dataclass
class ModelConfig:
    """The Scaffold-GS anchor model and its decoder (SPEC §3.1)."""

    feat_dim: int = 32  # anchor feature size c
    n_offsets: int = 10  # neural Gaussians per anchor k
    voxel_size: float = 0.0  # anchor grid spacing in world units; <= 0: median 3-NN distance of the points
    hidden_dim: int = 32  # width of the decoder MLPs
    appearance_dim: int = 0  # per-image appearance embedding size (0 = off)
    add_distance: bool = False  # feed the camera distance to the decoder MLPs
    max_points: int = 0  # if > 0, subsample the SfM points to at most this many before voxelizing


@dataclass
class OptimConfig:
    """Steps, learning rates (Adam, eps 1e-15) and loss weights (SPEC §3.1)."""

    steps: int = 30_000  # training steps
    lr_max_steps: int = 30_000  # length of the log-linear learning-rate decays (0 = `steps`); flat after it
    offset_lr: float = 0.01  # → offset_lr_final, times the scene extent
    offset_lr_final: float = 0.0001
    feature_lr: float = 0.0075
    scaling_lr: float = 0.007
    mlp_opacity_lr: float = 0.002
    mlp_opacity_lr_final: float = 0.00002
    mlp_cov_lr: float = 0.004
    mlp_cov_lr_final: float = 0.004
    mlp_color_lr: float = 0.008
    mlp_color_lr_final: float = 0.00005
    appearance_lr: float = 0.05
    appearance_lr_final: float = 0.0005
    lambda_dssim: float = 0.2  # loss = (1 - l) L1 + l (1 - SSIM)
    lambda_scale: float = 0.01  # volume regulariser on child scales


@dataclass
class StrategyConfig:
    """Anchor growing and pruning; the defaults are Scaffold-GS's (SPEC §3.1)."""

    # The three step counts below scale with optim.steps unless a config file or override sets them: these
    # defaults are Scaffold-GS's for its 30k steps (1/60, 1/20 and 1/2 of the run), see SCALED_WITH_STEPS.
    start_stat: int = 500  # begin accumulating screen-space gradient statistics
    update_from: int = 1500  # first growing/pruning step
    update_interval: int = 100  # steps between growing/pruning (a window of views; never scaled)
    update_until: int = 15_000  # last growing/pruning step
    init_factor: int = 16  # coarsest growing cell = voxel_size * init_factor
    hierarchy_factor: int = 4  # cell shrink per level
    levels: int = 3  # growing levels
    grad_threshold: float = 0.0002  # mean NDC gradient to grow at level 0 (doubles per level)
    min_opacity: float = 0.005  # prune anchors whose mean summed opacity per visit is below this
    success_threshold: float = 0.8  # fraction of update_interval visits needed before a decision
    max_child_log_scale: float = 0.05  # clamp of the anchors' child log-scales (world units) after each adjustment
    reference_level_skip: bool = True  # Scaffold-GS: skip the finer levels of a round when level 0 grew nothing


@dataclass
class BlocksConfig:
    """Block-wise training (SPEC §3.3): n blocks from a partition file, k active at a time."""

    partition: str = ""  # partition file from `mgs partition` ("" = one block: plain Scaffold-GS)
    active: int = 1  # k, blocks trained at the same time (their decoder gradients are averaged)
    interval: int = 500  # steps between changes of the active set
    policy: Policy = "round_robin"  # "round_robin" or "random"
    offload: Offload = "memory"  # where inactive blocks wait: "memory" (CPU) or "disk" (atomic files in the run)
    shared_decoder: bool = True  # False: every block has its own decoder (independent blocks)


@dataclass
class TeacherConfig:
    """The momentum (EMA) teacher decoder and its consistency loss (SPEC §3.3)."""

    enabled: bool = False  # guide the online decoder with an EMA teacher
    momentum: float = 0.9  # θ_t ← m θ_t + (1 − m) θ_s before every step
    lambda_cons: float = 50.0  # weight of the consistency loss (100 for Rubble, Sci-Art)
    # which gradients the consistency loss sends (docs/decisions/0003): "reference" (the paper's code: also
    # through the frozen teacher into the anchor features and scales, nearly cancelling the student's pull on
    # the anchors), "student" (the teacher's outputs a constant target; the student decoder and, through it,
    # the anchors get the gradient), "decoder_only" (constant target, anchor inputs detached: only the decoder)
    gradient: Gradient = "reference"


@dataclass
class WeightingConfig:
    """Reconstruction-guided block weighting (SPEC §3.3)."""

    enabled: bool = False  # multiply each block's loss by its weight in [1, 2)
    eval_interval: int = 1000  # steps between validations of the active blocks
    val_every: int = 10  # every n-th training view of a block is one of its validation views
    ema: float = 0.9  # smoothing of PSNR and SSIM, once per evaluation
    lam: float = 100.0  # λ on δs²
    sigma: float = 9.0  # σ (Building, MatrixCity 9; Residence 10; Rubble 12; Sci-Art 13)
    warmup: int = 1000  # weights are 1 for these first steps


@dataclass
class GeometryConfig:
    """Surface regularisers for meshes and depth (docs/surfaces.md), all off by default: they change nothing
    in the paper's method (shared decoder, teacher and block weighting work the same with them on)."""

    lambda_flatten: float = 0.0  # weight of the mean smallest child scale (world units): discs, not blobs
    lambda_depth_normal: float = 0.0  # weight of α − n̄·N, rendered normals against the rendered depth's normals
    depth_normal_from: int = 0  # a block's step from which the depth-normal term applies (geometry forms first)


@dataclass
class RenderConfig:
    """Rasterizer backend and rendering settings (the environment variable ``MOMENTUM_GS_KERNELS`` overrides
    ``kernels``)."""

    # "builtin" (our tile rasterizer: PyTorch ops on any device, our C++ kernels on a CPU; "torch" is its old
    # name), "gsplat" (gsplat's CUDA rasterizer) or "auto" (gsplat on a CUDA device where it imports, else builtin)
    backend: Backend = "auto"
    tile_size: int = 8  # the builtin rasterizer's tile edge in pixels
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB in [0, 1]
    near: float = 0.2  # anchors closer than this (camera z, world units) are culled
    # which anchors are decoded for a view: "reference" (the paper's visible_filter: the anchor Gaussian's
    # EWA footprint touches a 16-px tile of the image) or "bound" (a circle that contains every footprint the
    # rasterizer could draw; never drops a drawn anchor, decodes more off-screen ones)
    anchor_filter: AnchorFilter = "reference"
    kernels: Kernels = "auto"  # "cpp": our C++ kernels on a CPU, "torch": PyTorch ops, "auto": cpp where they build


@dataclass
class LogConfig:
    """Progress, TensorBoard and checkpoints."""

    progress_every: int = 10  # progress-bar refresh interval in steps (and of logged scalars)
    tensorboard: bool = True  # write TensorBoard scalars and images into <out>/tb
    wandb: bool = False  # also log to Weights & Biases (pip install wandb)
    wandb_project: str = "momentum_gs"
    wandb_mode: WandbMode = "offline"  # offline: written to <out>/wandb, uploaded later with `wandb sync`; or online
    image_every: int = 1000  # steps between logged render | ground-truth images (0 = none)
    checkpoint_every: int = 2000  # global steps between checkpoints (0 = only at the end; Ctrl-C also writes one)
    keep_checkpoints: int = 3  # the newest checkpoints kept in <out>/ckpt (0 = all)


@dataclass
class PartitionConfig:
    """How ``mgs partition`` splits a scene into blocks (its command-line flags take precedence)."""

    blocks: int = 0  # number of blocks, automatic box and balanced grid (0: use ``grid``)
    grid: tuple[int, int, int] = (0, 0, 0)  # cells along x, y, z of the scene box
    # scene box xmin ymin zmin xmax ymax zmax (all zeros: automatic, from the cameras)
    box: tuple[float, float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    margin: float = 0.5  # extra points around a cell, as a fraction of its size (partition.DEFAULT_MARGIN)
    coverage: float = 0.1  # a camera joins a block owning at least this fraction of its view


@dataclass
class MetricsConfig:
    """What ``mgs eval`` reports besides PSNR and SSIM (SPEC §3.5)."""

    lpips_backbone: str = ""  # vgg16-397923af.pth ("" = look in the torch hub cache)
    lpips_heads: str = ""  # the lpips package's v0.1 vgg.pth ("" = <torch hub>/checkpoints/lpips_vgg_v0.1.pth)
    lpips_download: bool = False  # fetch the backbone through torch hub when it is missing (needs the network)
    colour_correction: bool = False  # also report scores after a per-image quadratic colour map (*_cc)


@dataclass
class DistributedConfig:
    """Several processes under ``torchrun`` (ignored by a single process)."""

    backend: ProcessBackend = "auto"  # "auto" (nccl on GPUs, gloo on CPUs), "nccl" or "gloo"
    check_every: int = 0  # steps between checks that the decoder and teacher are identical everywhere (0 = off)
    timeout_s: float = 1800.0  # a collective waiting longer than this fails the job (torchrun may restart it)


@dataclass
class Config:
    """The whole tree; ``mgs config`` prints it resolved."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    blocks: BlocksConfig = field(default_factory=BlocksConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    log: LogConfig = field(default_factory=LogConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0  # seeds torch, numpy and python's random
    # deterministic kernels: "auto" (on for CPU runs, which then repeat bit for bit at no measured cost; off on
    # GPUs, where gsplat's backward adds with atomics anyway and deterministic kernels cost time), "true", "false"
    deterministic: Switch = "auto"
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    # intra-op CPU threads per process: 0 = auto (1 on a CPU device, which trained fastest on a 2-core machine,
    # unless OMP_NUM_THREADS is set; PyTorch's default on a GPU), N = N threads
    threads: int = 0
    out: str = ""  # run folder (default: runs/<scene name>)


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
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
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
            if type_ is not str and not isinstance(value, (int, float, str)):
                raise ValueError
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


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in ``cls``'s source: the one after it on its line, else the lines just above."""
    import inspect
    import re

    out, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+): [^=]+=.*?(?:\s#\s*(.*))?$", stripped)
        if match:
            out[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    return out


def _type_text(type_: Any) -> str:
    if get_origin(type_) is Literal:
        return "one of " + "|".join(get_args(type_))
    if get_origin(type_) is tuple:
        return f"{len(get_args(type_))} × {get_args(type_)[0].__name__}"
    return getattr(type_, "__name__", str(type_))


def explain(key: str = "") -> str:
    """Every config key under ``key`` ("" = all; a section or one key): type, allowed values, default and the
    one-line meaning from this file's comments. ``mgs config --explain [KEY]`` prints it."""
    lines, found = [], False

    def walk(node: Any, prefix: str) -> None:
        nonlocal found
        hints, comments = get_type_hints(type(node)), _comments(type(node))
        for f in dataclasses.fields(node):
            name, value = f"{prefix}{f.name}", getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{name}.")
                continue
            if key and name != key and not name.startswith(key + "."):
                continue
            found = True
            kind = _type_text(hints[f.name])
            if name in RANGES:
                kind += f" {RANGES[name]}"
            default = list(value) if isinstance(value, tuple) else value
            lines.append(f"{name} ({kind}; default {default!r}): {comments.get(f.name, '')}".rstrip(": "))

    walk(Config(), "")
    if not found:
        raise UserError(f"unknown config key or section '{key}' (`mgs config --explain` lists them all)")
    return "\n".join(lines)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config; ``load_config(path)`` gives the same tree back."""
    from momentum_gs.io.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def use_threads(setting: int, device: "torch.device") -> int:
    """Set the process's intra-op thread count from the config's ``threads``; returns the count in use.

    0 (auto) is 1 thread on a CPU device unless ``OMP_NUM_THREADS`` says otherwise. On the 2-core machine one
    thread trained faster than two everywhere it was measured (the demo city 1.6×, brighton_beach at 1/8
    1.4×, at 1/16 the same; docs/benchmarks.md): the kernels of a step are small, and two threads pay for
    their synchronisation and, on a shared machine, wait for each other. On a GPU the host's work is light
    and PyTorch's default stays.
    """
    import os

    import torch

    if setting > 0:
        torch.set_num_threads(setting)
    elif torch.device(device).type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def resolve_device(name: str) -> "torch.device":
    """``"auto"`` → cuda if available else cpu; anything else is passed to ``torch.device``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UserError(f"device '{name}' is not available here ({count} CUDA devices); use device=cpu or auto")
    return device
