"""The config tree: one dataclass per section, each field with its default and a one-line comment, and a
``Literal`` type for every key with a fixed set of values (the check and ``mgs config --explain`` read it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args


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
ViewDeal = Literal["pairs", "sfm"]
WandbMode = Literal["offline", "online"]
Switch = Literal["auto", "true", "false"]
GeometryPreset = Literal["none", "maps"]  # geometry.preset
GEOMETRY_TERMS = ("flatten", "depth_normal", "sparse_depth", "multiview", "depth_smooth")  # geometry.lambda_*
# What each geometry.preset sets, for the keys a config does not give (docs/decisions/0023): "maps", the SfM points
# as depth anchors, an anchor grid bounded by the photos' pixels and the multi-view term on every third step
GEOMETRY_PRESETS: dict[str, dict[str, float | int]] = {
    "none": {}, "maps": {"geometry.lambda_sparse_depth": 0.2, "model.voxel_max_footprints": 6.0,
                         "geometry.lambda_multiview": 0.15, "geometry.multiview_every": 3}}


@dataclass
class DataConfig:
    """Where the scene is and how its images are loaded."""

    path: str = ""  # scene folder: images/ + sparse/0, or train/ + val/ (Mill-19 layout)
    downsample: int = 1  # integer factor; cached as images_<factor>
    # images wider than this (after `downsample`) are shrunk to it, as the 3DGS code does by default; 0 = off
    max_width: int = 1600
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
    # with voxel_size <= 0: the grid at most this many of the training photos' pixel footprints on what they see
    # (momentum_gs.model.anchors.photo_footprint); 0: no bound, the points' spacing alone
    voxel_max_footprints: float = 0.0
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
    adam_beta1: float = 0.9  # Adam's moment decays (torch's defaults, as the reference's)
    adam_beta2: float = 0.999
    lambda_dssim: float = 0.2  # loss = (1 - l) L1 + l (1 - SSIM)
    lambda_scale: float = 0.01  # volume regulariser on child scales
    # Compare each step's render composited over a random colour instead of render.background: a scene the
    # photos show opaque cannot let the background through (off: Scaffold-GS and the paper's code do not)
    random_background: bool = False


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
    # weight of the rendered depth's relative error at the SfM points each photo saw (momentum_gs.data.sparse_depth)
    lambda_sparse_depth: float = 0.0
    # every n-th SfM point (by its row in the model) kept out of those depths, to check the surface against (0: none)
    sparse_depth_holdout: int = 0
    # weight of the photos' disagreement where the rendered depth carries a pixel into a neighbouring photo
    # (momentum_gs.train.multiview): (1 − NCC) / 2 of grey windows of 14 × 14 pixels
    lambda_multiview: float = 0.0
    multiview_from: int = 500  # a block's step from which the multi-view term applies (a surface forms first)
    multiview_until: int = 0  # a block's step after which it no longer applies (0: to the last step)
    multiview_every: int = 1  # the term on every n-th step of a block only (each view's surface kept at every step)
    # weight of the rendered depth's steps between neighbouring pixels where the photo shows no edge there
    lambda_depth_smooth: float = 0.0
    # "none" (the reference) or "maps" (what `mgs run` trains with): the SfM points as depth anchors, an anchor grid
    # bounded by the photos' pixels and the multi-view term on every third step, where the config does not give them
    preset: GeometryPreset = "none"


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
    """Several processes: under ``torchrun``, or started by ``mgs train`` itself on a CPU."""

    # processes ``mgs train`` starts on a CPU (without torchrun) for blocks.active >= 2: 0 = auto (one per active
    # block, up to the physical cores, each with its share of them: faster than one process on as many threads,
    # docs/benchmarks/training.md), 1 = one process, N = N
    processes: int = 0
    # processes that train one block together, each on its own view of every step, their gradients averaged
    # (1 = the reference: one view a step; 0 = one per physical core on a CPU). With V views a step the run takes
    # 1/V of the steps, its schedules follow, and learning rates and Adam's decays follow the square-root rule
    # (momentum_gs.train.views; docs/decisions/0017-every-core.md). Only for a scene of one block.
    view_processes: int = 1
    # views each of those processes renders a step (with view_processes other than 1): its gradients summed before the
    # average, so a step takes view_processes x views_per_process views, planned as above. A step's views are dealt
    # to the processes by their cost (deal_by), so that they finish together; which views a step takes is the same
    # plain random walk (momentum_gs.train.scheduler.deal_by_cost)
    views_per_process: int = 1
    # what a view's cost is, to deal a step's views by: "pairs", the Gaussian x tile pairs of its last render that
    # every process was told of (the SfM points until each view has one), or "sfm", the SfM points it sees. Either way
    # a step takes the same views (momentum_gs.train.views.WorkDeal; docs/decisions/0017-every-core.md)
    deal_by: ViewDeal = "pairs"
    # the views a step this config's steps, schedules and rates are planned for: written by `mgs train` into the run's
    # config.yaml, so that a config taken from a run is planned again only for another count (1 = as given)
    planned_views: int = 1
    # with several views a step: pair each step's views by their cost (the SfM points each sees), so that no process
    # waits long for the others (momentum_gs.train.scheduler.balanced_walk; 3-6 % more views/s, but 0.2 dB less
    # held-out PSNR for the same time on brighton_beach: docs/benchmarks/training.md); false: a plain random walk
    balance_views: bool = False
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
    # intra-op CPU threads per process, PyTorch's and the C++ kernels': 0 = auto (on a CPU device the physical
    # cores this process may use, shared by torchrun's processes, unless OMP_NUM_THREADS is set; PyTorch's
    # default on a GPU), N = N threads
    threads: int = 0
    out: str = ""  # run folder (default: runs/<scene name>)
