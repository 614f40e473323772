"""What a file's nested dictionaries must hold, declared once and checked before anything is loaded from them.

A layout mirrors the file: a dictionary of the keys it must have (keys it does not name are left alone, so a
later version may add parts), a list with one layout per item, and at the leaves a :class:`Tensor` (dtype and
shape), a :class:`Whole` (a whole number in a range), a :class:`Number` (a finite number above a bound),
:class:`Maybe` (the part may be None or absent) or
:data:`NOTHING` (the part must be None or absent). :func:`check_layout` walks a loaded file along its layout
and stops at the first difference with one line: the file, the dotted name of the part, what was found and what
was expected (and from which setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from momentum_gs.errors import UserError


@dataclass(frozen=True)
class Tensor:
    """A tensor of ``dtype`` and ``shape`` (None: any size along that axis); ``source`` names what sets the
    shape (config keys), for the message."""

    dtype: torch.dtype
    shape: tuple[int | None, ...]
    source: str = ""

    def describe(self) -> str:
        shape = "(" + ", ".join("*" if n is None else str(n) for n in self.shape) + ("," * (len(self.shape) == 1)) + ")"
        return f"{str(self.dtype).removeprefix('torch.')} of shape {shape}"


@dataclass(frozen=True)
class Whole:
    """A whole number (an ``int``, not a bool) in [``low``, ``high``]; ``source`` says where the bound comes from."""

    low: int
    high: int
    source: str = ""


@dataclass(frozen=True)
class Number:
    """A finite number (an ``int`` or a ``float``, not a bool) above ``low``."""

    low: float = 0.0


@dataclass(frozen=True)
class Maybe:
    """``layout``, or None, or absent."""

    layout: Any


NOTHING = None  # a part that must be None or absent


def check_layout(obj: Any, layout: Any, path: str | Path, advice: str) -> None:
    """A UserError at the first part of ``obj`` (a loaded file, ``path``) that differs from ``layout``: "<path>:
    <part> has shape (3, 3), expected float32 of shape (32, 35) (<source>); <advice>"."""
    problem = layout_problem(obj, layout)
    if problem is not None:
        raise UserError(f"{path}: {problem}; {advice}")


def layout_problem(obj: Any, layout: Any, name: str = "") -> str | None:
    """The first difference of ``obj`` from ``layout``, in words ("blocks[0].anchors.features has shape (5, 16),
    expected float32 of shape (5, 32) (model.feat_dim=32)"), or None when it has none."""
    if isinstance(layout, Maybe):
        return None if obj is None else layout_problem(obj, layout.layout, name)
    problem = _problem(obj, layout)
    if problem is not None:
        return f"{name or 'the file'} {problem}"
    if isinstance(layout, dict):
        for key, part in layout.items():
            if key not in obj:
                if part is NOTHING or isinstance(part, Maybe):
                    continue
                return f"{_join(name, key)} is missing"
            problem = layout_problem(obj[key], part, _join(name, key))
            if problem is not None:
                return problem
    elif isinstance(layout, list):
        for i, (item, part) in enumerate(zip(obj, layout)):
            problem = layout_problem(item, part, f"{name}[{i}]")
            if problem is not None:
                return problem
    return None


def _problem(obj: Any, layout: Any) -> str | None:
    """What is wrong with ``obj`` itself (not its parts) against ``layout``, or None."""
    if layout is NOTHING:
        return None if obj is None else f"is a {type(obj).__name__}, expected none"
    if isinstance(layout, dict):
        return None if isinstance(obj, dict) else f"is a {type(obj).__name__}, expected a dictionary"
    if isinstance(layout, list):
        if not isinstance(obj, list):
            return f"is a {type(obj).__name__}, expected a list of {len(layout)}"
        return None if len(obj) == len(layout) else f"holds {len(obj)} items, expected {len(layout)}"
    if isinstance(layout, Whole):
        source = f" ({layout.source})" if layout.source else ""
        if type(obj) is not int:
            return f"is {obj!r} (a {type(obj).__name__}), expected a whole number from {layout.low} to {layout.high}{source}"
        return None if layout.low <= obj <= layout.high else (
            f"is {obj}, expected a whole number from {layout.low} to {layout.high}{source}")
    if isinstance(layout, Number):
        good = type(obj) in (int, float) and math.isfinite(obj) and obj > layout.low
        return None if good else f"is {obj!r}, expected a finite number above {layout.low:g}"
    if isinstance(layout, Tensor):
        return _tensor_problem(obj, layout)
    raise TypeError(f"not a layout: {layout!r}")


def _tensor_problem(obj: Any, layout: Tensor) -> str | None:
    """What is wrong with ``obj`` against the :class:`Tensor` ``layout``, or None."""
    expected = layout.describe() + (f" ({layout.source})" if layout.source else "")
    if not torch.is_tensor(obj):
        return f"is a {type(obj).__name__}, expected a tensor, {expected}"
    if obj.dtype != layout.dtype:
        return f"has dtype {str(obj.dtype).removeprefix('torch.')}, expected {expected}"
    shape = tuple(obj.shape)
    if len(shape) != len(layout.shape) or any(n is not None and n != m for n, m in zip(layout.shape, shape)):
        return f"has shape {shape}, expected {expected}"
    return None


def _join(name: str, key: Any) -> str:
    return f"{name}.{key}" if name else str(key)
