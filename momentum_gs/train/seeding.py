"""Seeds and random-generator states: what makes a CPU run repeat bit for bit, and a resume continue it."""

from __future__ import annotations

import random

import numpy as np
import torch

from momentum_gs.config import environment


def deterministic_kernels(setting: str, device: torch.device) -> bool:
    """The config's ``deterministic`` ("auto", "true" or "false") on ``device``: "auto" is on for the CPU only.

    On a GPU the gsplat backend's backward accumulates with atomic adds, so a run cannot repeat bit for bit
    whatever the other kernels do, and the deterministic ones (sorted index_add, no uninitialised memory)
    cost time.
    """
    if setting == "auto":
        return torch.device(device).type == "cpu"
    return setting == "true"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; with ``deterministic``, also ask for deterministic kernels.

    Seeds alone are not enough on a multi-core CPU: the backward of indexing accumulates with threads in
    whatever order they finish, so two runs drifted apart within a hundred steps. New tensors are not
    filled with NaN (PyTorch's debugging aid under deterministic mode): nothing here reads memory it did
    not write. cuBLAS gets the workspace setting its deterministic mode needs, unless one is set already.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.utils.deterministic.fill_uninitialized_memory = False
        environment.set_default("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def rng_state() -> dict:
    """The global torch (CPU), numpy and python generator states, for a checkpoint: tensors and plain values
    only, so the checkpoint loads without unpickling (numpy's key array travels as an int64 tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (also the numpy tuple that version-1 checkpoints hold)."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["name"], numpy_state["keys"].cpu().numpy().astype(np.uint32),
                       numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
    random.setstate(state["python"])
