"""The fused CPU rasterizer: ``pair_coefficients``, the per-pair gathers and ``CompositeTiles`` as one C++
loop per tile, forward and backward (``composite_gaussians``; ``FusedCompositeTiles`` keeps the per-pair
interface for benchmarks); the projection, forward and backward, as one loop per Gaussian (``project``); the
tile lists as one counting pass and a radix sort by depth (``intersect``); for the loss, the mean SSIM and
its gradient (``FusedMeanSSIM``, ``csrc/ssim.cpp``, with the semantics of ``losses._MeanSSIM``); and, for the
model, the kept neural Gaussians of the visible anchors (``FusedChildren``, ``csrc/children.cpp``, with the
semantics of ``neural.kept_children``).

``csrc/composite.cpp`` walks each tile's pairs front to back over the tile's pixels (vectorised, early
exit once every pixel is done) on torch's intra-op threads, one tile per thread at a time, and its backward
recomputes α and T the same way instead of keeping them: no [tiles, P, L] temporaries, no padding. It
supports float32 and float64 and any number of colour channels, and matches ``composite.CompositeTiles``
(the reference, and the fallback) to rounding.

``csrc/projection.cpp`` does the projection and the tile lists with the semantics of
``projection.project_gaussians`` and ``tiles.intersect_tiles`` (the references, and the fallbacks): the same
values to rounding, the same gradients, the same pairs in the same order.

It is compiled by ``make setup``, else at first use, by ``torch.utils.cpp_extension.load`` (needs ninja and a
C++ compiler; 1 to 5 minutes on 2 cores, said before it starts), for the target ``MOMENTUM_GS_MARCH`` names
(a ``-march`` value; default ``native``, this CPU, so the extension's name carries a digest of the CPU's
features; ``x86-64-v3`` builds for AVX2 on any x86-64 machine that has it), and cached under
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) in a folder named after the target, the
sources' location and their text, one per install: later processes load it in milliseconds. The vector
width follows the target (``csrc/simd.h``), and the build reports which it got (``Build.target``: "avx2,
32-byte vectors"). The environment variable ``MOMENTUM_GS_COMPOSITOR`` picks the kernels of CPU renders:
``auto`` (default: fused when it builds, else the torch one), ``fused`` (an error if it does not build) or
``torch``. GPU tensors always take the torch compositor.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import platform
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from momentum_gs.errors import UserError
from momentum_gs.render.composite import _LOG_ALPHA_SKIP, ALPHA_MAX, TRANS_MIN, CompositeTiles, pair_coefficients
from momentum_gs.render.projection import ALPHA_REACH, FRUSTUM_MARGIN, Projection, project_gaussians
from momentum_gs.render.tiles import ALPHA_MIN, TilePlan, intersect_tiles

MODE_VARIABLE = "MOMENTUM_GS_COMPOSITOR"
MODES = ("auto", "fused", "torch")
MARCH_VARIABLE = "MOMENTUM_GS_MARCH"
CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / name for name in ("composite.cpp", "projection.cpp", "ssim.cpp", "children.cpp")]
HEADERS = [CSRC / "simd.h"]
FLAGS = ["-O3", "-ffp-contract=fast", "-fopenmp"]
# composite.py's constants, in the order the C++ side reads them.
_LIMITS = [ALPHA_MIN, math.log(ALPHA_MAX), _LOG_ALPHA_SKIP, TRANS_MIN]


@dataclass(frozen=True)
class Build:
    """The outcome of loading the extension: ``ops`` (``torch.ops.momentum_gs``) or None and why not."""

    ops: object | None
    note: str  # "ready in 9.1 s" (compiled, or loaded from the cache), or the first line of the error
    seconds: float
    march: str = "native"  # the -march it was compiled with
    target: str = ""  # what the compiled code says it is: "avx2, 32-byte vectors" (empty when not built)


class ModeError(UserError, ValueError):
    """A ``MOMENTUM_GS_COMPOSITOR`` value that is not one of ``MODES``: one line on the command line, a
    ValueError to code that calls ``render``."""


def compositor_mode() -> str:
    """``MOMENTUM_GS_COMPOSITOR`` (``auto`` when unset); ``ModeError`` for another value."""
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ModeError(f"{MODE_VARIABLE}={mode!r}; expected one of {', '.join(MODES)}")
    return mode


def march() -> str:
    """The ``-march`` the kernels are built for: ``MOMENTUM_GS_MARCH``, else ``native``."""
    value = os.environ.get(MARCH_VARIABLE, "").strip() or "native"
    if not all(c.isalnum() or c in "-_.+" for c in value):
        raise UserError(f"{MARCH_VARIABLE}={value!r} is not a -march value (e.g. native, x86-64-v3, armv8-a)")
    return value


@functools.lru_cache(maxsize=None)
def build() -> Build:
    """Compile (first time in this install, for this target) or load the extension, once per process; raises
    only for a bad ``MOMENTUM_GS_MARCH`` (a failed build is a ``Build`` without ops, said in one line). A
    compile says so before it starts and shows its elapsed time while it runs."""
    start = time.perf_counter()
    target = march()
    try:
        _put_pip_ninja_on_path()
        from torch.utils.cpp_extension import load

        name = f"momentum_gs_kernels_{_build_digest(target)}"
        with _build_lock(name) as folder, _announce(name, folder, target):
            load(name=name, sources=[str(path) for path in SOURCES], extra_cflags=[*FLAGS, f"-march={target}"],
                 extra_include_paths=[str(CSRC)], extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
        ops = torch.ops.momentum_gs
        # noqa below: fails here, not mid-render, if an op is absent
        ops.composite_forward, ops.composite_backward, ops.gaussians_forward, ops.gaussians_backward  # noqa: B018
        ops.project_forward, ops.project_backward, ops.intersect_tiles, ops.reference_visible  # noqa: B018
        ops.ssim_forward, ops.ssim_backward, ops.children_forward, ops.children_backward, ops.untile  # noqa: B018
        built_for = ops.build_target()
    except Exception as exc:  # no compiler, no ninja, a compile error: the torch compositor takes over
        failed = Build(None, _first_error(exc), time.perf_counter() - start, target)
        print(f"the CPU kernels did not build ({failed.note}): CPU renders take the slower PyTorch path",
              file=sys.stderr, flush=True)
        return failed
    seconds = time.perf_counter() - start
    return Build(ops, f"ready in {seconds:.2f} s", seconds, target, built_for)


BUILD_SECONDS = "build_seconds"  # in a build's folder: how long its compile took, for the next estimate


def _estimate(root: Path) -> str:
    """How long a compile will take: the last one in ``root`` (any target), else what 2 cores take."""
    times = sorted(((path.stat().st_mtime, path.read_text().strip()) for path in root.glob(f"*/{BUILD_SECONDS}")),
                   reverse=True)
    return f"about {float(times[0][1]):.0f} s, as the last one here" if times else "1 to 5 minutes on 2 cores"


@contextlib.contextmanager
def _announce(name: str, folder: Path | None, target: str):
    """Around torch's load: when there is no build to load, one line before the compile and its elapsed time
    while it runs (a bar on standard error); the compile's time is kept for the next estimate."""
    if folder is None or (folder / f"{name}.so").exists():
        yield
        return
    print(f"building the CPU kernels for -march={target} (once per install and target, "
          f"{_estimate(folder.parent)}) in {folder}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with _ticking("building the CPU kernels"):
        yield
    if (folder / f"{name}.so").exists():
        (folder / BUILD_SECONDS).write_text(f"{time.perf_counter() - start:.1f}\n")


@contextlib.contextmanager
def _ticking(label: str):
    """A bar without a total on standard error, its elapsed time refreshed every second while the block runs."""
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(desc=label, bar_format="{desc}: {elapsed}", file=sys.stderr) as bar:
        def tick() -> None:
            while not done.wait(1.0):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _checked_build(mode: str) -> Build:
    """``build()``, raising when ``mode`` is "fused" and it did not build."""
    built = build()
    if built.ops is None and mode == "fused":
        raise RuntimeError(f"{MODE_VARIABLE}=fused but the fused compositor did not build: {built.note}")
    return built


def use_fused(tensor: Tensor) -> bool:
    """Whether a render of ``tensor``'s device and dtype composites with the fused compositor."""
    mode = compositor_mode()
    if mode == "torch" or tensor.device.type != "cpu" or tensor.dtype not in (torch.float32, torch.float64):
        return False
    return _checked_build(mode).ops is not None


def compositor_in_use(device: torch.device | str = "cpu") -> str:
    """One line naming the compositor that renders on ``device`` take, and why (builds the extension)."""
    mode = compositor_mode()
    if torch.device(device).type != "cpu":
        return f"compositor: torch ({torch.device(device).type} tensors)"
    if mode == "torch":
        return f"compositor: torch ({MODE_VARIABLE}=torch)"
    built = _checked_build(mode)
    if built.ops is None:
        return f"compositor: torch (the fused one did not build: {built.note})"
    names = " + ".join(path.name for path in SOURCES)
    return (f"compositor: fused C++ ({names}; {built.target} for -march={built.march}; {built.note}, "
            f"{torch.get_num_threads()} thread(s))")


def project(means: Tensor, quats: Tensor, scales: Tensor, world_to_cam: Tensor, K: Tensor, width: int,
            height: int, near: float = 0.01, far: float = 1e10, eps2d: float = 0.3) -> Projection:
    """``projection.project_gaussians`` (same arguments and result), as one C++ loop per Gaussian where
    ``use_fused`` and the camera needs no gradient (``FusedProjection``); else that function itself."""
    tensors = (means, quats, scales, world_to_cam, K)
    if (not use_fused(means) or any(t.dtype != means.dtype for t in tensors)
            or world_to_cam.requires_grad or K.requires_grad):
        return project_gaussians(means, quats, scales, world_to_cam, K, width, height, near, far, eps2d)
    settings = [float(width), float(height), near, far, eps2d, FRUSTUM_MARGIN, ALPHA_REACH]
    means2d, covars2d, conics, depths, radii = FusedProjection.apply(means, quats, scales, world_to_cam, K, settings)
    return Projection(means2d, covars2d, conics, depths, radii)


class FusedProjection(torch.autograd.Function):
    """(means [N, 3], quats [N, 4], scales [N, 3], world_to_cam, K, settings) -> (means2d, covars2d, conics,
    depths, radii) as ``project_gaussians``; gradients reach means, quats and scales from means2d, conics and
    depths (covars2d and radii are not differentiable). Keeps only its inputs: the backward recomputes."""

    @staticmethod
    def forward(ctx, means, quats, scales, world_to_cam, K, settings):
        inputs = [t.contiguous() for t in (means, quats, scales, world_to_cam, K)]
        num = means.shape[0]
        means2d, conics = means.new_empty(num, 2), means.new_empty(num, 3)
        covars2d, depths = means.new_empty(num, 2, 2), means.new_empty(num)
        radii = torch.empty(num, dtype=torch.int32)
        build().ops.project_forward(*inputs, settings, means2d, covars2d, conics, depths, radii)
        ctx.mark_non_differentiable(covars2d, radii)
        ctx.settings = settings
        ctx.save_for_backward(*inputs)
        return means2d, covars2d, conics, depths, radii

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_means2d, grad_covars2d, grad_conics, grad_depths, grad_radii):
        inputs = ctx.saved_tensors
        means = inputs[0]
        outputs = [g.contiguous() if g is not None else means.new_zeros(shape)
                   for g, shape in ((grad_means2d, (len(means), 2)), (grad_conics, (len(means), 3)),
                                    (grad_depths, (len(means),)))]
        grads = [torch.empty_like(t) for t in inputs[:3]]
        build().ops.project_backward(*inputs, ctx.settings, *outputs, *grads)
        return *grads, None, None, None


def reference_visible(positions: Tensor, scales: Tensor, world_to_cam: Tensor, K: Tensor, width: int, height: int,
                       near: float, ray_reach: float, blur: float, tile: int) -> Tensor:
    """bool [N]: the paper's anchor pre-filter (``neural.reference_visible_anchors``, the reference, whose
    arguments and constants these are) in one C++ loop over the anchors; CPU float tensors only."""
    world_to_cam, K = world_to_cam.to(positions).contiguous(), K.to(positions).contiguous()
    out = torch.empty(positions.shape[0], dtype=torch.bool)
    settings = [float(width), float(height), near, ray_reach, blur, float(tile)]
    build().ops.reference_visible(positions.contiguous(), scales.contiguous(), world_to_cam, K, settings, out)
    return out


class FusedChildren(torch.autograd.Function):
    """(positions [N, 3], offsets [N, k, 3], scalings [N, 6], anchor_index [V], opacity [V, k], cov [V, k, 7],
    color [V, k, 3], kept [M]) -> the kept children's (means, quats, scales, opacities, colors), as the last
    step of ``neural.generate_gaussians`` (see csrc/children.cpp); gradients reach the six float inputs.
    CPU tensors of one float dtype; keeps only its inputs (the backward recomputes)."""

    @staticmethod
    def forward(ctx, positions, offsets, scalings, anchor_index, opacity, cov, color, kept):
        inputs = [t.contiguous() for t in (positions, offsets, scalings, anchor_index, opacity, cov, color, kept)]
        num = kept.shape[0]
        outputs = [positions.new_empty(shape) for shape in ((num, 3), (num, 4), (num, 3), (num,), (num, 3))]
        build().ops.children_forward(*inputs, *outputs)
        ctx.save_for_backward(*inputs)
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        inputs = ctx.saved_tensors
        grads = [torch.zeros_like(inputs[i]) for i in (0, 1, 2, 4, 5, 6)]
        build().ops.children_backward(*inputs, *(g.contiguous() for g in grad_outputs), *grads)
        grad_positions, grad_offsets, grad_scalings, grad_opacity, grad_cov, grad_color = grads
        return grad_positions, grad_offsets, grad_scalings, None, grad_opacity, grad_cov, grad_color, None


def intersect(means2d: Tensor, extents: Tensor, depths: Tensor, tiles_x: int, tiles_y: int,
              tile_size: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """``tiles.intersect_tiles`` (same arguments; the same pairs in the same order) and the tiles' offsets
    into them, in one C++ pass where ``use_fused``; else that function and None for the offsets."""
    if not use_fused(means2d) or not means2d.dtype == extents.dtype == depths.dtype:
        return *intersect_tiles(means2d, extents, depths, tiles_x, tiles_y, tile_size), None
    rows = [t.detach().contiguous() for t in (means2d, extents, depths)]
    return tuple(build().ops.intersect_tiles(*rows, tiles_x, tiles_y, tile_size))


def composite_gaussians(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan,
                        for_backward: bool = False) -> Tensor:
    """Per tile [T, D+1, P] composited colour and alpha of the pairs in ``plan``, from per-Gaussian rows:
    means2d [N, 2] pixels, conics [N, 3], opacities [N], colors [N, D]. Where ``use_fused``, one C++ pass
    that makes each pair's coefficients and reads its Gaussian's rows inside the tile loop
    (``FusedGaussianTiles``); else ``pair_coefficients``, the per-pair gathers and ``CompositeTiles``."""
    if use_fused(means2d) and means2d.dtype == conics.dtype == opacities.dtype == colors.dtype:
        return FusedGaussianTiles.apply(means2d, conics, opacities, colors, plan)
    coefs = pair_coefficients(means2d, conics, plan)
    return CompositeTiles.apply(coefs, opacities[plan.gauss_ids], colors[plan.gauss_ids], plan, for_backward)


def _gaussian_tiles(inputs: list[Tensor], plan: TilePlan, out: Tensor) -> None:
    """Composite the pairs of ``plan`` from per-Gaussian rows ``inputs`` (means2d, conics, opacities, colors,
    contiguous) into ``out`` [T, D+1, P] (any values on entry), in C++."""
    build().ops.gaussians_forward(*inputs, plan.gauss_ids.contiguous(), plan.tile_offsets, plan.tiles_x,
                                  plan.tile_size, _LIMITS, out)


_workspace = threading.local()  # per thread: the tiles buffer of the last render without gradients


def composite_image(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan,
                    background: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """(image [H, W, D], rest [H, W, C − D]) of a render nobody differentiates, D = ``background``'s length:
    ``FusedGaussianTiles``'s tiles, then image = colour + (1 − alpha)·background and rest the other channels
    (alpha last), cropped to ``width`` × ``height``, in one C++ pass (``untile``). The same values as the
    differentiable path's untiling, crop and background ops (three roundings each, as those ops).

    The tiles are composited into a buffer kept per thread and reused while the size stays: a full-resolution
    view's tiles (34 MB at 1949×1093) are above glibc's mmap threshold, so a fresh one is new pages that the
    kernel faults in one by one on every render. CPU tensors, ``use_fused`` true, no gradients."""
    inputs = [t.detach().contiguous() for t in (means2d, conics, opacities, colors)]
    shape = (plan.num_tiles, colors.shape[1] + 1, plan.tile_size * plan.tile_size)
    tiles = getattr(_workspace, "tiles", None)
    if tiles is None or tuple(tiles.shape) != shape or tiles.dtype != means2d.dtype:
        _workspace.tiles = tiles = None  # the old buffer is freed before the new one is made
        _workspace.tiles = tiles = means2d.new_empty(shape)
    _gaussian_tiles(inputs, plan, tiles)
    depth = background.numel()
    image = means2d.new_empty(height, width, depth)
    rest = means2d.new_empty(height, width, shape[1] - depth)
    build().ops.untile(tiles, background.to(tiles).contiguous(), plan.tiles_x, image, rest)
    return image, rest


class FusedGaussianTiles(torch.autograd.Function):
    """(means2d [N, 2], conics [N, 3], opacities [N], colors [N, D], plan) -> per tile [T, D+1, P], as
    ``pair_coefficients`` + gathers + ``CompositeTiles``; the backward returns per-Gaussian gradients summed
    over each Gaussian's pairs in pair order (the same bits at any thread count). CPU tensors only."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan) -> Tensor:
        inputs = [t.contiguous() for t in (means2d, conics, opacities, colors)]
        out = means2d.new_empty(plan.num_tiles, colors.shape[1] + 1, plan.tile_size * plan.tile_size)
        _gaussian_tiles(inputs, plan, out)
        ctx.plan = plan
        ctx.save_for_backward(*inputs, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        *inputs, out = ctx.saved_tensors
        plan = ctx.plan
        grads = [torch.zeros_like(t) for t in inputs]
        build().ops.gaussians_backward(*inputs, plan.gauss_ids.contiguous(), plan.tile_offsets, plan.tiles_x,
                                       plan.tile_size, _LIMITS, out, grad_out.contiguous(), *grads)
        return *grads, None


class FusedCompositeTiles(torch.autograd.Function):
    """(coefs [M, 6], opacities [M], colors [M, D], plan) -> per tile [T, D+1, P], as ``CompositeTiles``.

    Keeps only its inputs and output for the backward (which recomputes α and T); CPU tensors only.
    """

    @staticmethod
    def forward(ctx, coefs: Tensor, opacities: Tensor, colors: Tensor, plan: TilePlan) -> Tensor:
        coefs, opacities, colors = coefs.contiguous(), opacities.contiguous(), colors.contiguous()
        out = coefs.new_empty(plan.num_tiles, colors.shape[1] + 1, plan.tile_size * plan.tile_size)
        build().ops.composite_forward(coefs, opacities, colors, plan.tile_offsets, plan.tile_size, _LIMITS, out)
        ctx.plan = plan
        ctx.save_for_backward(coefs, opacities, colors, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        coefs, opacities, colors, out = ctx.saved_tensors
        grads = torch.zeros_like(coefs), torch.zeros_like(opacities), torch.zeros_like(colors)
        build().ops.composite_backward(coefs, opacities, colors, ctx.plan.tile_offsets, ctx.plan.tile_size,
                                       _LIMITS, out, grad_out.contiguous(), *grads)
        return *grads, None


class FusedMeanSSIM(torch.autograd.Function):
    """(x, y [B, H, W, C] CPU images, window [K], c1, c2) -> mean SSIM (scalar), as ``losses._MeanSSIM`` on
    the same images; keeps four maps [4, B, H, W, C] for the backward."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float) -> Tensor:
        x, y, window = x.contiguous(), y.contiguous(), window.contiguous()
        maps = x.new_empty((4,) + tuple(x.shape))
        total = build().ops.ssim_forward(x, y, window, c1, c2, maps)
        ctx.save_for_backward(x, y, window, maps)
        return x.new_tensor(total / max(x.numel(), 1))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, y, window, maps = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        grad_x, grad_y = (torch.empty_like(t) if need else t.new_empty(0) for t, need in ((x, need_x), (y, need_y)))
        scale = grad.to(torch.float64) / max(x.numel(), 1)  # a CPU scalar: read inside the kernel
        build().ops.ssim_backward(x, y, window, maps, scale, need_x, need_y, grad_x, grad_y)
        return grad_x if need_x else None, grad_y if need_y else None, None, None, None


def _first_error(exc: Exception) -> str:
    """The compiler's first error line in a failed build's message (which starts with the command), else its
    first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    picked = next((line for line in lines if "error" in line.lower() and not line.startswith("[")), lines[0])
    return f"{type(exc).__name__}: {picked[:200]}"


# The instruction-set extensions a speed figure depends on, in the order they are named.
_ISA_FLAGS = ("avx512f", "avx2", "fma", "avx", "sse4_2", "asimd", "sve")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` ("model name", "flags", ...; empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def describe_cpu() -> str:
    """One line naming this CPU and the vector extensions it has, for benchmark tables: "AMD EPYC (x86_64,
    family 25 model 1; avx2 fma avx sse4_2; no avx512f)". A speed figure holds for the ISA it ran on."""
    fields = _cpuinfo()
    name = fields.get("model name") or fields.get("Hardware") or platform.processor() or "unknown CPU"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    where = [platform.machine()]
    if "cpu family" in fields:
        where.append(f"family {fields['cpu family']} model {fields.get('model', '?')}")
    elif "CPU part" in fields:
        where.append(f"implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}")
    has = [flag for flag in _ISA_FLAGS if flag in flags]
    isa = " ".join(has) or "no vector-extension flags read"
    if platform.machine() in ("x86_64", "AMD64") and "avx512f" not in flags:
        isa += "; no avx512f"
    return f"{name} ({', '.join(where)}; {isa})"


def _build_digest(target: str) -> str:
    """8 hex digits naming the build: its -march, the flags, where the sources are and their text (so that two
    checkouts or environments sharing torch's cache never rebuild or load each other's build) and, for
    ``native``, this CPU's instruction set, so that a shared cache never loads a -march=native build on
    another kind of CPU."""
    # "build.lock": builds take _build_lock; a folder shared with builds that did not could lose a live lock
    identity = " ".join([platform.machine(), target, "build.lock", *FLAGS, str(CSRC.resolve()),
                         *(path.read_text() for path in [*HEADERS, *SOURCES])])
    if target == "native":
        cpu = _cpuinfo()
        identity += platform.processor() + " ".join(cpu.get(key, "") for key in ("flags", "Features", "model name"))
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


@contextlib.contextmanager
def _build_lock(name: str):
    """Holds a lock around torch's build of extension ``name`` that the kernel releases when the process ends;
    yields the build's folder (None where there is no ``flock``: Windows).

    torch's own lock is a file that a killed build (Ctrl-C during the first build, the OOM killer) leaves behind,
    and every later build then waits for it for ever. Under this lock (``flock``), no other build of ours is
    running, so torch's file can only be such a leftover, and it is removed. Waiting for another process's
    build is said, with the time waited."""
    try:
        import fcntl
        from torch.utils.cpp_extension import _get_build_directory

        folder = Path(_get_build_directory(name, False))
    except Exception:  # noqa: BLE001 - no fcntl, or torch's layout changed: its own lock alone
        yield None
        return
    with open(folder / "build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process's build of the CPU kernels ({folder})", file=sys.stderr, flush=True)
            with _ticking("waiting for the CPU kernels"):
                fcntl.flock(handle, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield folder


def _put_pip_ninja_on_path() -> None:
    """cpp_extension runs ``ninja`` from PATH; the one the ``ninja`` wheel installs may not be on it."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
