"""The declared shape of each file the project reads, checked right after reading and before any work.

One mechanism for every file type: the JSON files (georef.json, scene.json, camera paths, the partition
file's header, a run's summary) and the nested dictionaries of a checkpoint or an exported decoder. A schema is
a tree of a few kinds: :class:`Number` (finite, in a :class:`~momentum_gs.ranges.Range`, whole or not;
booleans are not numbers), :class:`Text`, :class:`Flag`, :class:`Maybe` (null or a kind), :data:`NOTHING`
(null only), :class:`ListOf`, :class:`Items` (a list of one kind per position), :class:`OneOf`, :class:`Obj`
(named fields, required or optional; unknown keys ignored or refused), :class:`FileName` (a path that stays
inside the folder of the file naming it) and :class:`Tensor` (a dtype and a shape, any size along an axis given
as None). An optional key may be absent; a required one whose kind is :class:`Maybe` must be there.

:func:`read_json` reads a file as UTF-8 JSON and checks it; :func:`check` checks a value already read (a loaded
checkpoint); the first thing wrong is one line naming the file, the key (``origin.lat``,
``camera_path[3].fov``, ``blocks[0].anchors.features``) and what was expected, e.g.::

    the georeference DATA/georef.json: origin.lat is "45.1", expected a finite number in [-90, 90] (degrees)
    RUN/ckpt/step_30.pt: decoder.mlp_cov.2.weight has shape (35, 32), expected float32 of shape (70, 32) (...)

Only what a schema declares is looked into, so a value nested a thousand levels deep is refused at the first
level; a file nested deeper than the JSON reader can follow is refused as such.

The module imports no torch (reading a JSON file stays light); a tensor can only exist once torch is loaded, so
:class:`Tensor` finds it among the loaded modules.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from momentum_gs.errors import UserError
from momentum_gs.ranges import FINITE, Range

MAX_JSON_BYTES = 64 << 20  # larger than any file these schemas describe (a 100,000-frame camera path is ~20 MB)


class _Mismatch(Exception):
    """``key`` holds ``value``, not ``expected``: turned into the one-line UserError by :func:`check`. ``found``
    says what is wrong when "is <value>" would not (``has shape (3, 3)``)."""

    def __init__(self, key: str, value, expected: str, found: str = ""):
        super().__init__(key)
        self.key, self.value, self.expected, self.found = key, value, expected, found

    def words(self) -> str:
        """What is wrong, without the file: ``origin.lat is "45.1", expected a finite number``."""
        if self.value is _UNKNOWN:
            return f"{self.key} is not a key of this file ({self.expected})"
        return f"{self.key or 'the top level'} {self.found or 'is ' + shown(self.value)}, expected {self.expected}"


_MISSING, _UNKNOWN = object(), object()  # a required key absent; a key the schema refuses


class Kind:
    """One kind of JSON value: :meth:`check` raises a mismatch at ``key`` unless ``value`` is of the kind."""

    expected = "a value"

    def check(self, value, key: str) -> None:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Kind):
    """A finite number (not true/false) within ``allowed``; ``whole``: an integer value; ``note`` is said in
    brackets after what is expected (the unit, or the setting the bound comes from)."""

    allowed: Range = FINITE
    whole: bool = False
    note: str = ""

    @property
    def expected(self) -> str:
        bounds = "" if str(self.allowed) == "finite" else f" {self.allowed}"
        return f"a {'whole' if self.whole else 'finite'} number{bounds}{_note(self.note)}"

    def check(self, value, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch(key, value, self.expected)
        try:
            number = float(value)  # a 400-digit integer is too large for a float: refused below
        except OverflowError:
            number = math.inf
        if not self.allowed.holds(number) or (self.whole and not number.is_integer()):
            raise _Mismatch(key, value, self.expected)


@dataclass(frozen=True)
class Text(Kind):
    """A string; with ``choices``, one of them."""

    choices: tuple[str, ...] = ()

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(map(json.dumps, self.choices)) if self.choices else "a string"

    def check(self, value, key: str) -> None:
        if not isinstance(value, str) or (self.choices and value not in self.choices):
            raise _Mismatch(key, value, self.expected)


@dataclass(frozen=True)
class Flag(Kind):
    """true or false."""

    expected = "true or false"

    def check(self, value, key: str) -> None:
        if not isinstance(value, bool):
            raise _Mismatch(key, value, self.expected)


@dataclass(frozen=True)
class Maybe(Kind):
    """null, or a value of ``kind``."""

    kind: Kind

    @property
    def expected(self) -> str:
        return f"null or {self.kind.expected}"

    def check(self, value, key: str) -> None:
        if value is not None:
            self.kind.check(value, key)


@dataclass(frozen=True)
class Nothing(Kind):
    """null (None) only, or, as an optional key of an :class:`Obj`, absent: a part a file of these settings does
    not have (``note`` says which setting)."""

    note: str = ""

    @property
    def expected(self) -> str:
        return "none" + _note(self.note)

    def check(self, value, key: str) -> None:
        if value is not None:
            raise _Mismatch(key, value, self.expected)


NOTHING = Nothing()


@dataclass(frozen=True)
class ListOf(Kind):
    """A list of ``least`` to ``most`` (None: any number of) values of ``item``."""

    item: Kind
    least: int = 0
    most: int | None = None

    @property
    def expected(self) -> str:
        if self.most == self.least:
            count = str(self.least)
        else:
            count = f"{self.least} or more" if self.most is None else f"{self.least} to {self.most}"
        return f"a list of {count} ({self.item.expected})"

    def check(self, value, key: str) -> None:
        if not isinstance(value, list) or len(value) < self.least or (self.most is not None and len(value) > self.most):
            raise _Mismatch(key, value, self.expected)
        for i, item in enumerate(value):
            self.item.check(item, f"{key}[{i}]")


@dataclass(frozen=True)
class Items(Kind):
    """A list of exactly ``len(kinds)`` values, the i-th of ``kinds[i]`` (a checkpoint's blocks, each with its own
    number of anchors)."""

    kinds: tuple[Kind, ...]

    @property
    def expected(self) -> str:
        return f"a list of {len(self.kinds)}"

    def check(self, value, key: str) -> None:
        if not isinstance(value, list) or len(value) != len(self.kinds):
            raise _Mismatch(key, value, self.expected)
        for i, (item, kind) in enumerate(zip(value, self.kinds)):
            kind.check(item, f"{key}[{i}]")


@dataclass(frozen=True)
class OneOf(Kind):
    """A value of the first of ``kinds`` that fits (said at ``key`` itself when none does, in the words of
    ``said`` where given)."""

    kinds: tuple[Kind, ...]
    said: str = ""

    @property
    def expected(self) -> str:
        return self.said or " or ".join(kind.expected for kind in self.kinds)

    def check(self, value, key: str) -> None:
        for kind in self.kinds:
            try:
                return kind.check(value, key)
            except _Mismatch:
                continue
        raise _Mismatch(key, value, self.expected)


@dataclass(frozen=True)
class Obj(Kind):
    """An object with every key of ``required``, any of ``optional``; other keys are ignored, or refused with
    ``refuse_unknown`` (a format that names its version and changes it with its keys)."""

    required: dict[Any, Kind]
    optional: dict[Any, Kind] = field(default_factory=dict)
    refuse_unknown: bool = False

    expected = "an object"

    def check(self, value, key: str) -> None:
        if not isinstance(value, dict):
            raise _Mismatch(key, value, self.expected)
        prefix = f"{key}." if key else ""
        for name, kind in self.required.items():
            if name not in value:
                raise _Mismatch(f"{prefix}{name}", _MISSING, kind.expected)
            kind.check(value[name], f"{prefix}{name}")
        for name, kind in self.optional.items():
            if name in value:
                kind.check(value[name], f"{prefix}{name}")
        unknown = [name for name in value if name not in self.required and name not in self.optional]
        if self.refuse_unknown and unknown:
            known = ", ".join(map(str, [*self.required, *self.optional]))
            raise _Mismatch(f"{prefix}{unknown[0]}", _UNKNOWN, f"known: {known}")


@dataclass(frozen=True)
class FileName(Kind):
    """A relative path that stays inside ``folder`` (that of the file naming it: no ``..``, not absolute), so a
    file cannot point the reader at another file elsewhere on the machine."""

    folder: str = "the file's own folder"

    @property
    def expected(self) -> str:
        return f"a path inside {self.folder} (relative, without '..')"

    def check(self, value, key: str) -> None:
        if not isinstance(value, str) or not value.strip() or "\\" in value or "\0" in value:
            raise _Mismatch(key, value, self.expected)
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
            raise _Mismatch(key, value, self.expected)


@dataclass(frozen=True)
class Tensor(Kind):
    """A tensor of ``dtype`` (a ``torch.dtype``) and ``shape`` (None: any size along that axis); ``note`` says
    which settings give the sizes (``model.feat_dim=32``)."""

    dtype: Any
    shape: tuple[int | None, ...]
    note: str = ""

    @property
    def expected(self) -> str:
        sizes = ", ".join("*" if n is None else str(n) for n in self.shape) + "," * (len(self.shape) == 1)
        return f"{_dtype(self.dtype)} of shape ({sizes}){_note(self.note)}"

    def check(self, value, key: str) -> None:
        if not _is_tensor(value):
            raise _Mismatch(key, value, "a tensor, " + self.expected)
        if value.dtype != self.dtype:
            raise _Mismatch(key, value, self.expected, f"has dtype {_dtype(value.dtype)}")
        shape = tuple(value.shape)
        if len(shape) != len(self.shape) or any(n is not None and n != m for n, m in zip(self.shape, shape)):
            raise _Mismatch(key, value, self.expected, f"has shape {shape}")


def _is_tensor(value) -> bool:
    """Whether ``value`` is a torch tensor (none can exist before torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(value)


def _dtype(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _note(note: str) -> str:
    return f" ({note})" if note else ""


def shown(value) -> str:
    """``value`` as a message shows it: scalars as JSON (``"45.1"``, ``NaN``, ``null``), at most 40 characters;
    lists and objects by their size, tensors by their dtype and shape, other values by their type."""
    if value is _MISSING:
        return "missing"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if _is_tensor(value):
        return f"a {_dtype(value.dtype)} tensor of shape {tuple(value.shape)}"
    if type(value) is int:
        text = str(value)
    elif value is None or isinstance(value, (bool, float, str)):
        text = json.dumps(value)
    else:
        return f"of type {type(value).__name__}"
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def problem(data, schema: Kind) -> str | None:
    """The first thing in ``data`` that does not fit ``schema``, in words (``blocks[0].steps is 40, expected a
    whole number in [0, 30] (...)``), or None when it fits."""
    try:
        schema.check(data, "")
    except _Mismatch as exc:
        return exc.words()
    return None


def check(data, schema: Kind, source: str, fix: str = ""):
    """``data`` when it has the shape of ``schema``; else a UserError ``<source>: <key> is <value>, expected
    <what>`` (``source`` names the file), followed by ``; <fix>`` when given."""
    wrong = problem(data, schema)
    if wrong is not None:
        raise UserError(f"{source}: {wrong}" + (f"; {fix}" if fix else ""))
    return data


def parse_json(text: str, source: str):
    """The JSON value of ``text``; a UserError naming ``source`` when it is not JSON or is nested too deeply."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UserError(f"{source} is nested too deeply to be read as JSON") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{source} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise UserError(f"{source} is not valid JSON ({str(exc).splitlines()[0][:80]})") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB" if n >= 2**10 else f"{n} bytes"


def read_text(path: str | Path, source: str, max_bytes: int, expected: str) -> str:
    """The UTF-8 text of the file at ``path`` (``source`` names it in messages, ``expected`` says what it should
    be: "a JSON file"); a one-line UserError for a folder, a missing or unreadable file, one larger than
    ``max_bytes`` or not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{source} is a folder, expected {expected}")
    if not path.is_file():
        raise UserError(f"{source} does not exist")
    try:
        if path.stat().st_size > max_bytes:
            raise UserError(f"{source} is {_size(path.stat().st_size)}; {expected} of at most {_size(max_bytes)} "
                            "is read: is it the right file?")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source} is not UTF-8 text (byte {exc.start}), expected {expected}") from None
    except OSError as exc:
        raise UserError(f"cannot read {source} ({exc.strerror or exc})") from None


def read_json(path: str | Path, schema: Kind, what: str, fix: str = ""):
    """The JSON file ``path`` (``what`` it is, for messages) read as UTF-8 and checked against ``schema``; a
    UserError in one line names the file and, for a value of the wrong shape, its key and what was expected
    (then ``fix``, how to put it right)."""
    source = f"{what} {path}"
    return check(parse_json(read_text(path, source, MAX_JSON_BYTES, "a JSON file"), source), schema, source, fix)
