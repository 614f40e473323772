"""Count the operations that read a tensor's values back to the host (a CUDA device would wait for them).

On a GPU each of these blocks the CPU until the GPU has caught up: reading a scalar (``.item()``,
``float(t)``, ``bool(t)``, ``.tolist()``), ``nonzero``, and indexing with a boolean mask (whose output
size depends on the data). Counted here on any device with a dispatch mode, so that a test on a CPU
machine can bound how often the training loop would stall a GPU.
"""

from __future__ import annotations

from collections import Counter

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
