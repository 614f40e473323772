"""The declared shape of each JSON file the project reads, checked right after reading and before any work.

A schema is a tree of a few kinds: :class:`Number` (finite, in a :class:`~momentum_gs.ranges.Range`, whole or
not; booleans are not numbers), :class:`Text`, :class:`Flag`, :class:`Maybe` (null or a kind),
:class:`ListOf`, :class:`OneOf`, :class:`Obj` (named fields; unknown keys ignored or refused) and
:class:`FileName` (a path that stays inside the folder of the file naming it). :func:`read_json` reads a file
as UTF-8 JSON and checks it; the first thing wrong is one line naming the file, the key (``origin.lat``,
``camera_path[3].fov``) and what was expected, e.g.::

    the georeference DATA/georef.json: origin.lat is "45.1", expected a finite number in [-90, 90] (degrees)

Only what a schema declares is looked into, so a value nested a thousand levels deep is refused at the first
level; a file nested deeper than the JSON reader can follow is refused as such.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from momentum_gs.errors import UserError
from momentum_gs.ranges import FINITE, Range

MAX_JSON_BYTES = 64 << 20  # larger than any file these schemas describe (a 100,000-frame camera path is ~20 MB)


class _Mismatch(Exception):
    """``key`` holds ``value``, not ``expected``: turned into the one-line UserError by :func:`check`."""

    def __init__(self, key: str, value, expected: str):
        super().__init__(key)
        self.key, self.value, self.expected = key, value, expected

    def line(self, source: str) -> str:
        """The one-line message, ``source`` naming the file."""
        if self.value is _UNKNOWN:
            return f"{source}: {self.key} is not a key of this file ({self.expected})"
        return f"{source}: {self.key or 'the top level'} is {shown(self.value)}, expected {self.expected}"


_MISSING, _UNKNOWN = object(), object()  # a required key absent; a key the schema refuses


class Kind:
    """One kind of JSON value: :meth:`check` raises a mismatch at ``key`` unless ``value`` is of the kind."""

    expected = "a value"

    def check(self, value, key: str) -> None:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Kind):
    """A finite JSON number (not true/false) within ``allowed``; ``whole``: an integer value; ``unit`` is said."""

    allowed: Range = FINITE
    whole: bool = False
    unit: str = ""

    @property
    def expected(self) -> str:
        bounds = "" if str(self.allowed) == "finite" else f" {self.allowed}"
        unit = f" ({self.unit})" if self.unit else ""
        return f"a {'whole' if self.whole else 'finite'} number{bounds}{unit}"

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

    required: dict[str, Kind]
    optional: dict[str, Kind] = field(default_factory=dict)
    refuse_unknown: bool = False

    expected = "an object"

    def check(self, value, key: str) -> None:
        if not isinstance(value, dict):
            raise _Mismatch(key, value, self.expected)
        prefix = f"{key}." if key else ""
        for name, kind in self.required.items():
            if name not in value:
                raise _Mismatch(prefix + name, _MISSING, kind.expected)
            kind.check(value[name], prefix + name)
        for name, kind in self.optional.items():
            if name in value:
                kind.check(value[name], prefix + name)
        unknown = [name for name in value if name not in self.required and name not in self.optional]
        if self.refuse_unknown and unknown:
            known = ", ".join([*self.required, *self.optional])
            raise _Mismatch(prefix + unknown[0], _UNKNOWN, f"known: {known}")


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


def shown(value) -> str:
    """``value`` as a message shows it: scalars as JSON (``"45.1"``, ``NaN``, ``null``), at most 40 characters;
    lists and objects by their size."""
    if value is _MISSING:
        return "missing"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = json.dumps(value) if not isinstance(value, int) or isinstance(value, bool) else str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def check(data, schema: Kind, source: str, fix: str = ""):
    """``data`` when it has the shape of ``schema``; else a UserError ``<source>: <key> is <value>, expected
    <what>`` (``source`` names the file), followed by ``; <fix>`` when given."""
    try:
        schema.check(data, "")
    except _Mismatch as exc:
        raise UserError(exc.line(source) + (f"; {fix}" if fix else "")) from None
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


def read_json(path: str | Path, schema: Kind, what: str, fix: str = ""):
    """The JSON file ``path`` (``what`` it is, for messages) read as UTF-8 and checked against ``schema``; a
    UserError in one line names the file and, for a value of the wrong shape, its key and what was expected
    (then ``fix``, how to put it right)."""
    path = Path(path)
    source = f"{what} {path}"
    if path.is_dir():
        raise UserError(f"{source} is a folder, expected a JSON file")
    if not path.is_file():
        raise UserError(f"{source} does not exist")
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(f"{source} is {path.stat().st_size / 2**20:.0f} MB; a JSON file of at most "
                            f"{MAX_JSON_BYTES >> 20} MB is read")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source} is not UTF-8 text (byte {exc.start}), expected a JSON file") from None
    except OSError as exc:
        raise UserError(f"cannot read {source} ({exc.strerror or exc})") from None
    return check(parse_json(text, source), schema, source, fix)
