"""Count the operations that read a tensor's values back to the host (a CUDA device would wait for them).

On a GPU each of these blocks the CPU until the GPU has caught up: reading a scalar (``.item()``,
``float(t)``, ``bool(t)``, ``.tolist()``), ``nonzero``, and indexing with a boolean mask (whose output
size depends on the data). Counted here on any device with a dispatch mode, so that a test on a CPU
machine can bound how often the training loop would stall a GPU.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

aten = torch.ops.aten

# ops whose output shape or value needs the input's data on the host
DATA_DEPENDENT = {
    aten._local_scalar_dense.default: "scalar read",  # .item(), float(t), int(t), bool(t), .tolist()
    aten.nonzero.default: "nonzero",
    aten.masked_select.default: "masked_select",
    aten.unique_consecutive.default: "unique",
    aten._unique2.default: "unique",
    aten.repeat_interleave.Tensor: "repeat_interleave",
}


def _has_mask(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices if i is not None)


class HostReads(TorchDispatchMode):
    """``with HostReads() as reads: ...`` then ``reads.total`` and ``reads.counts`` (by kind)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in DATA_DEPENDENT:
            self.counts[DATA_DEPENDENT[func]] += 1
        elif func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default) and _has_mask(args[1]):
            self.counts["boolean-mask index"] += 1
        return func(*args, **kwargs)


def uncounted(fn):
    """``fn`` run with counting paused (e.g. a stand-in for code that runs elsewhere on a GPU)."""

    def run(*args, **kwargs):
        with _disable_current_modes():
            return fn(*args, **kwargs)

    return run


class CudaSyncs:
    """``with CudaSyncs() as syncs: ...`` then ``syncs.sites``: where each synchronizing CUDA call came from.

    Uses ``torch.cuda.set_sync_debug_mode("warn")``, under which every operation that makes the host wait
    for the GPU (a read-back, a blocking copy, a stream synchronize) issues a warning. Each is attributed to
    the innermost frame of momentum_gs code on the stack (``"file.py:function"``), or to the library it
    happened in (``"gsplat"``) when no momentum_gs frame is closer. A sync inside a backward pass surfaces at
    the ``backward()`` call. Needs a CUDA device.
    """

    LIBRARIES = ("gsplat",)

    def __init__(self):
        self.sites: list[str] = []

    def __enter__(self):
        self._previous_mode = torch.cuda.get_sync_debug_mode()
        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self._show
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode(self._previous_mode)
        self._catcher.__exit__(*exc)
        return False

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        if "synchronizing" not in str(message):
            return
        for frame in reversed(traceback.extract_stack()[:-1]):
            path = Path(frame.filename)
            if "momentum_gs" in path.parts and "tests" not in path.parts:
                self.sites.append(f"{path.name}:{frame.name}")
                return
            library = next((name for name in self.LIBRARIES if name in path.parts), None)
            if library is not None:
                self.sites.append(library)
                return
        self.sites.append("elsewhere")


def plain_step_syncs(config, after: int = 1) -> list[list[str]]:
    """Train ``config`` on the GPU with the gsplat backend, logging progress every 8 steps, each step watched by
    :class:`CudaSyncs`; per plain step past step ``after`` (one that neither grows, prunes nor logs progress), where
    its synchronizing calls came from."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.train.trainer import Trainer

    config.device, config.render.backend = "cuda", "gsplat"
    config.log.progress_every = 8
    trainer = Trainer(config, load_scene(config.data), Path(config.out), torch.device("cuda"))
    steps, train_step = [], trainer.train_step

    def watched(views):
        with CudaSyncs() as syncs:
            out = train_step(views)
        steps.append(syncs.sites)
        return out

    trainer.train_step = watched
    trainer.train()
    strategy = trainer.blocks[0].strategy
    return [sites for s, sites in enumerate(steps, start=1)
            if s > after and not strategy.should_adjust(s) and s % config.log.progress_every]
