"""The typed config tree: dataclasses with defaults (``tree``), YAML files for what differs and dotted overrides
(``load``), its lengths against a scene's size (``scale``), ``mgs config --explain`` (``explain``), the device and
threads a config asks for (``device``), the config files shipped in ``momentum_gs/configs/`` and ``--config``
read as a path or as one of their names (``shipped``).

``load_config(path, overrides)`` builds a :class:`Config`; ``save_config`` writes the fully resolved tree,
which is itself a valid config file. The names below are the package's public face.
"""

from momentum_gs.config.device import kernel_threads, resolve_device, threads_in_use, use_threads
from momentum_gs.config.explain import explain
from momentum_gs.config.load import RANGES, load_config, save_config, schedule_warnings, to_dict, validate
from momentum_gs.config.scale import check_anchor_grid, check_scene_scale
from momentum_gs.config.shipped import SHIPPED, find_config, shipped_names
from momentum_gs.config.tree import (ANCHOR_FILTERS, BACKEND_ALIASES, CONSISTENCY_GRADIENTS, BlocksConfig, Config,
                                     DataConfig, DistributedConfig, GeometryConfig, Kernels, LogConfig, MetricsConfig,
                                     ModelConfig, OptimConfig, PartitionConfig, RenderConfig, StrategyConfig,
                                     TeacherConfig, WeightingConfig)

__all__ = ["ANCHOR_FILTERS", "BACKEND_ALIASES", "CONSISTENCY_GRADIENTS", "RANGES", "SHIPPED", "BlocksConfig",
           "Config", "DataConfig", "DistributedConfig", "GeometryConfig", "Kernels", "LogConfig", "MetricsConfig",
           "ModelConfig", "OptimConfig", "PartitionConfig", "RenderConfig", "StrategyConfig", "TeacherConfig",
           "WeightingConfig", "check_anchor_grid", "check_scene_scale", "explain", "find_config", "kernel_threads",
           "load_config", "resolve_device", "save_config", "schedule_warnings", "shipped_names", "threads_in_use",
           "to_dict", "use_threads", "validate"]
