"""``mgs config --explain``: each key with its type, allowed values, default and meaning."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Literal, get_args, get_origin, get_type_hints

from momentum_gs.config.load import RANGES
from momentum_gs.config.tree import Config
from momentum_gs.errors import UserError


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in ``cls``'s source: the one after it on its line, else the lines just above."""

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
