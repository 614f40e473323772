"""Checkpoints: named, versioned dictionaries written atomically, read without unpickling code.

A checkpoint is ``{"format": "momentum_gs.checkpoint", "version": 2, "step": int, "checksum": str, ...named
parts}``; each part is itself a dictionary (a module's state dict, an optimizer's, random-generator states)
of tensors and plain Python values. Nothing is positional, so a later version can add parts without breaking
old files.

Every file is read with ``torch.load(weights_only=True)``: only tensors, containers and plain values can come
out of it, never an object whose unpickling runs code. Version 1 files held numpy's generator state as a numpy
array; the three numpy globals that rebuild a plain array are allowed, nothing else, so that such a file is
read far enough to be refused by its version.

``checksum`` is a SHA-256 over every value in the file (keys, dtypes, shapes and tensor bytes), checked on
load: a file changed after it was written (flipped bits, a partial copy) is refused with one line instead of
resuming into different results. No version skips it: a file of version 1 (before the checksum) is refused with
a line saying how to make it again, as writing an old version number would otherwise let any change through.
See docs/decisions/0007-trust.md.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from momentum_gs.errors import UserError, one_line
from momentum_gs.io.atomic import new_temporary, temporary_path, write_failed
from momentum_gs.io.safe_path import not_a_link
from momentum_gs.ranges import MAX_BLOCKS, MAX_STEPS

FORMAT = "momentum_gs.checkpoint"
VERSION = 2
CHECKSUM = "checksum"
FIRST_CHECKSUMMED = 2  # the first version of every verified format (checkpoints, exported decoders)
# The most global steps any valid config schedules: optim.steps per block (at most MAX_STEPS) times the blocks
# (at most MAX_BLOCKS), one active at a time. A run's own config bounds its steps far lower (trained.py).
MAX_STEP = MAX_STEPS * MAX_BLOCKS
REMAKE = ("no command converts a checkpoint that old: train the run again with this version of momentum_gs "
          "(`mgs train`)")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file and a rename, so a crash never leaves half a file; a full disk
    is one line, and the temporary file is removed. A ``path`` that is a symbolic link is refused."""
    path = not_a_link(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temporary(path)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk reaches torch.save's zip writer as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc)


def checksum(obj: Any) -> str:
    """SHA-256 over a nested structure of dicts, lists, tuples, tensors and plain values, in their order:
    keys, types, tensor dtypes, shapes and bytes. The same content always gives the same digest."""
    h = hashlib.sha256()
    _digest(obj, h)
    return h.hexdigest()


def _digest(obj: Any, h: Any) -> None:
    if torch.is_tensor(obj):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            h.update(f"K{key!r}".encode())
            _digest(value, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for value in obj:
            _digest(value, h)
    elif isinstance(obj, np.ndarray):
        h.update(f"N{obj.dtype.str}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


def save_verified(path: str | Path, header: dict[str, Any], parts: dict[str, Any]) -> None:
    """Write ``header`` (format, version, …) and ``parts`` with a checksum over both, atomically."""
    body = {**header, **parts}
    atomic_save({**body, CHECKSUM: checksum(body)}, path)


def _numpy_globals() -> list:
    """What rebuilds a plain numpy array in a pickle (version 1 checkpoints held numpy's generator state)."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


ZIP_MAGIC = b"PK\x03\x04"  # how every file torch.save writes (its zip layout, the default since torch 1.6) starts


def load_verified(path: str | Path, fmt: str, version: int, what: str,
                  remake: str = "write it again with this version of momentum_gs") -> dict[str, Any]:
    """Read a file written by :func:`save_verified` onto the CPU, without running code from it; a missing,
    unreadable, foreign, newer, older-than-the-checksum or altered file is a UserError (``remake`` says how to
    make the file again, for one written before files carried a checksum)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:  # torch's older, non-zip layout can announce sizes the file does not hold
            raise UserError(f"{what} {path} is not a zip archive as torch.save writes; it is damaged or not a {what}")
    try:
        # Read onto the CPU first: a file written on a GPU must open on a machine without one.
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} holds objects other than tensors and plain values, and loading it could run "
                        f"code; refused ({one_line(exc, 100).split('. ')[0][:120]}). Use a {what} written by momentum_gs")
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            OverflowError, struct.error) as exc:  # struct.error: a pickle cut short inside a number
        raise UserError(f"{what} {path} is unreadable ({one_line(exc, 100)}); it is damaged or not a {what}")
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise UserError(f"{path} is not a momentum_gs {what}")
    found = obj.get("version")
    if type(found) is not int or found < 1:
        raise UserError(f"{what} {path} has no valid version ({found!r}); it is damaged or not a {what}")
    if found > version:
        raise UserError(f"{path} has {what} version {found}; this momentum_gs reads up to {version}")
    if found < FIRST_CHECKSUMMED:  # no version skips the checksum: an old number would let any change through
        raise UserError(f"{what} {path} is of version {found}, written before files carried a checksum, so it "
                        f"cannot be checked and is not loaded; {remake}")
    stored = obj.pop(CHECKSUM, None)
    if stored != checksum(obj):
        raise UserError(f"{what} {path} does not match its checksum: the file changed after it was written "
                        "(disk or copy error); use another copy" + (" or an older checkpoint" if
                                                                    fmt == FORMAT else ""))
    return obj


def save_checkpoint(path: str | Path, step: int, parts: dict[str, Any]) -> None:
    """Write ``parts`` (name → state) with the format header, the step and a checksum."""
    save_verified(path, {"format": FORMAT, "version": VERSION, "step": step}, parts)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, or raise a UserError saying what is wrong; its
    step is a whole number in [0, :data:`MAX_STEP`]. What its parts must hold for a given config is
    :func:`momentum_gs.trained.checkpoint_problem`'s business."""
    ckpt = load_verified(path, FORMAT, VERSION, "checkpoint", REMAKE)
    step = ckpt.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise UserError(f"checkpoint {path} stores step {step!r} ({type(step).__name__}); a step is a whole number "
                        f"from 0 to {MAX_STEP}: the file was not written by momentum_gs; use another checkpoint")
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


def checkpoint_step(path: Path) -> int | None:
    """N of a file named ``step_<N>.pt`` (N ≥ 0), else None."""
    stem = path.stem
    if path.suffix != ".pt" or not stem.startswith("step_") or not stem[5:].isdigit():
        return None
    return int(stem[5:])


def checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoints in ``folder`` (files ``step_<N>.pt``) by increasing step; other files there
    (``step_final.pt``, notes) are ignored."""
    files = [(step, p) for p in Path(folder).glob("step_*.pt") if (step := checkpoint_step(p)) is not None]
    return [p for _, p in sorted(files)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or None (see :func:`checkpoints`)."""
    files = checkpoints(folder)
    return files[-1] if files else None
