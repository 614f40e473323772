"""Checkpoints: named, versioned dictionaries written atomically.

A checkpoint is ``{"format": "momentum_gs.checkpoint", "version": 1, "step": int, ...named parts}``; each
part is itself a dictionary (a module's state dict, an optimizer's, random-generator states). Nothing is
positional, so a later version can add parts without breaking old files.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import torch

from momentum_gs.errors import UserError

FORMAT = "momentum_gs.checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, step: int, parts: dict[str, Any]) -> None:
    """Write ``parts`` (name → state) with the format header and the step."""
    atomic_save({"format": FORMAT, "version": VERSION, "step": step, **parts}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, or raise a UserError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        # Read onto the CPU first: a checkpoint written on a GPU must open on a machine without one.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:80]}); "
                        "resume from an older one")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a momentum_gs checkpoint")
    if ckpt.get("version", 0) > VERSION:
        raise UserError(f"{path} has checkpoint version {ckpt['version']}; this momentum_gs reads up to {VERSION}")
    device = torch.device(map_location)
    return map_tensors(ckpt, lambda t: t.to(device))


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``obj`` with ``fn`` applied to every tensor in its nested dicts, lists and tuples."""
    if torch.is_tensor(obj):
        return fn(obj)
    if isinstance(obj, dict):
        return {key: map_tensors(value, fn) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(value, fn) for value in obj)
    return obj


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``folder`` (files ``step_<N>.pt``), or None."""
    files = sorted(Path(folder).glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    return files[-1] if files else None
