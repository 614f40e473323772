"""Fuzzing the file readers: Hypothesis strategies for broken files, and the check every reader must pass.

A fuzzed file is random bytes, or a valid sample file (from a reader's own tiny generated data) mutated: bytes
flipped, inserted, deleted or cut off, binary words overwritten with edge values, numbers in the text replaced
by NaN, infinities, huge or negative numbers and values of the wrong type, or nesting thousands of levels deep.

:func:`check_read` is the contract: the reader returns, or raises ``UserError`` with one non-empty line; any
other exception (a numpy ``RuntimeWarning`` included, turned into one) escapes and is a failure. Its peak of
Python-traced memory (``tracemalloc``: Python objects and numpy buffers) must stay within
``reader.memory_factor`` x the input's size + :data:`MEMORY_CONSTANT`.
"""

from __future__ import annotations

import re
import struct
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from momentum_gs.errors import UserError

# The allowance every read has beyond its factor x the input's size: the reader's own small objects (a parser,
# a few arrays, the message of its error).
MEMORY_CONSTANT = 2 << 20
MAX_RANDOM_BYTES = 2048
MAX_NESTING = 3000  # past Python's recursion limit (1000), quick to parse

# What a number in a text file becomes: not numbers, non-finite, out of every range, other types, other syntax.
TEXT_NUMBERS = ("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e300", "-1e300", "1e-320",
                "-1", "0", "-0", "0.5", "-2147483649", "4294967296", "18446744073709551616", "9" * 400, "0x1F",
                "1_0", "x", '"7"', "[]", "{}", "null", "true", "", " ", "\t", "#", "\u00e9", "\x00")
YAML_NUMBERS = (".nan", ".inf", "-.inf", "~", "!!binary x", "2001-02-30", "&a [*a]", "*missing", "!!int x",
                "{a: [1, {b: 2}]}", "0b102", "0o8", "? [1]", "'", '"\\x"', "- a", ": b")
# What a binary word becomes: zeros, all ones, sign bits, NaN, infinities and huge doubles, a 2^32 count.
BINARY_WORDS = (b"\0" * 8, b"\xff" * 8, struct.pack("<q", -1), struct.pack("<Q", 1 << 63), struct.pack("<Q", 1 << 32),
                struct.pack("<d", float("nan")), struct.pack("<d", float("inf")), struct.pack("<d", -1e300),
                struct.pack("<d", 1e-320), struct.pack("<I", 1 << 31), struct.pack("<i", -1), struct.pack("<I", 17))
# Openers (and closers) of nested structures: JSON and YAML flow lists and mappings, YAML block mappings and lists.
NESTINGS = ((b"[", b"]"), (b"{", b"}"), (b'{"a":', b"}"), (b"a:\n ", b""), (b"- ", b""))
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Reader:
    """One file reader under fuzzing.

    Attributes:
        name: what the report calls it ("colmap cameras.bin").
        sample: a valid file's bytes from tiny data generated with the given numpy generator.
        read: reads the bytes through the real reader (writing them into the given work folder first when the
            reader takes a path); returns anything, raises ``UserError`` for a bad file.
        text: the file is text (numbers in it are replaced as text, nesting is added), else binary.
        memory_factor: the bound on traced memory per input byte, beyond :data:`MEMORY_CONSTANT`.
        skip: why it is not fuzzed yet (None: it is).
    """

    name: str
    sample: Callable[[np.random.Generator], bytes]
    read: Callable[[bytes, Path], object]
    text: bool = False
    memory_factor: float = 64.0
    skip: str | None = None


@dataclass
class Stats:
    """What a fuzzing run of one reader found."""

    examples: int = 0
    escapes: list[str] = field(default_factory=list)  # "ExceptionType: message | input" per escape
    max_memory_ratio: float = 0.0  # max over inputs of peak traced memory / the bound (<= 1 within it)


def _flip(data: bytearray, at: int, payload: bytes) -> None:
    if data:
        data[at % len(data)] ^= 1 << (payload[0] % 8 if payload else 0)


def _insert(data: bytearray, at: int, payload: bytes) -> None:
    data[at % (len(data) + 1):at % (len(data) + 1)] = payload


def _delete(data: bytearray, at: int, payload: bytes) -> None:
    start = at % (len(data) + 1)
    del data[start:start + 1 + len(payload)]


def _truncate(data: bytearray, at: int, payload: bytes) -> None:
    del data[at % (len(data) + 1):]


def _duplicate(data: bytearray, at: int, payload: bytes) -> None:
    start = at % (len(data) + 1)
    data[start:start] = data[start:start + 1 + 8 * len(payload)]


def _overwrite(data: bytearray, at: int, payload: bytes) -> None:
    word = BINARY_WORDS[payload[0] % len(BINARY_WORDS)] if payload else BINARY_WORDS[0]
    start = (at % (len(data) + 1)) & ~3  # aligned on 4 bytes: most fields of the binary formats are
    data[start:start + len(word)] = word


BYTE_EDITS = (_flip, _insert, _delete, _truncate, _duplicate, _overwrite)


@st.composite
def byte_mutations(draw, valid: bytes) -> bytes:
    """``valid`` with 1 to 4 byte edits: a bit flipped, bytes inserted or deleted, cut off, a chunk repeated, a
    4-byte-aligned word overwritten with an edge value."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(BYTE_EDITS))
        edit(data, draw(st.integers(0, 1 << 20)), draw(st.binary(min_size=0, max_size=16)))
    return bytes(data)


@st.composite
def number_mutations(draw, valid: bytes, yaml_words: bool = False) -> bytes:
    """``valid`` (text) with 1 to 3 of its numbers replaced by NaN, infinities, huge, negative, other types."""
    spans = [m.span() for m in _NUMBER.finditer(valid)]
    if not spans:
        return valid
    words = TEXT_NUMBERS + (YAML_NUMBERS if yaml_words else ())
    data = valid
    for _ in range(draw(st.integers(1, 3))):
        start, end = draw(st.sampled_from(spans))
        if end <= len(data):
            data = data[:start] + draw(st.sampled_from(words)).encode() + data[end:]
        spans = [m.span() for m in _NUMBER.finditer(data)] or [(0, 0)]
    return data


@st.composite
def deep_nesting(draw, valid: bytes) -> bytes:
    """``valid`` (text) with brackets or braces opened (and maybe closed) thousands deep at one place."""
    depth = draw(st.integers(50, MAX_NESTING))
    opener, closer = draw(st.sampled_from(NESTINGS))
    closed = draw(st.booleans())
    at = draw(st.integers(0, len(valid)))
    return valid[:at] + opener * depth + (closer * depth if closed else b"") + valid[at:]


@st.composite
def fuzzed(draw, reader: Reader) -> bytes:
    """A broken (or, now and then, intact) file for ``reader``: random bytes, or its valid sample mutated."""
    valid = reader.sample(np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    how = draw(st.sampled_from(["valid", "random", "bytes", "bytes", "numbers", "numbers", "nesting"]
                               if reader.text else ["valid", "random", "bytes", "bytes", "bytes"]))
    if how == "random":
        return draw(st.binary(max_size=MAX_RANDOM_BYTES))
    if how == "bytes":
        return draw(byte_mutations(valid))
    if how == "numbers":
        return draw(number_mutations(valid, yaml_words="yaml" in reader.name))
    if how == "nesting":
        return draw(deep_nesting(valid))
    return valid


def memory_bound(reader: Reader, size: int) -> float:
    """The most traced memory, in bytes, a read of ``size`` input bytes may peak at."""
    return reader.memory_factor * size + MEMORY_CONSTANT


def check_read(reader: Reader, data: bytes, workdir: Path) -> float:
    """Read ``data`` with ``reader``: it must return or raise a one-line ``UserError``, within its memory bound.

    Returns:
        The peak traced memory over the bound (at most 1). Raises AssertionError for anything else that
        escapes, a message of several lines, or a peak past the bound.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow and invalid-value warnings
            reader.read(data, workdir)
    except UserError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] - before
        if started:
            tracemalloc.stop()
    ratio = peak / memory_bound(reader, len(data))
    assert ratio <= 1, f"peak traced memory {peak} bytes for {len(data)} input bytes, past the bound"
    return ratio


def fuzz_reader(reader: Reader, workdir: Path, examples: int, derandomize: bool = True, seed: int | None = None,
                stop_at_first: bool = True) -> Stats:
    """Run ``examples`` fuzzed inputs through ``reader`` (a warm-up read of a valid sample first, so that lazy
    imports are not counted); returns what was found. ``stop_at_first``: stop at the first escape."""
    stats = Stats()
    reader.read(reader.sample(np.random.default_rng(0)), workdir)

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(data=fuzzed(reader))
    def one(data: bytes) -> None:
        stats.examples += 1
        try:
            stats.max_memory_ratio = max(stats.max_memory_ratio, check_read(reader, data, workdir))
        except AssertionError as exc:
            stats.escapes.append(f"{exc} | input {data[:120]!r}{'...' if len(data) > 120 else ''}")
            if stop_at_first:
                raise

    if seed is not None:
        one = hypothesis_seed(seed)(one)
    try:
        one()
    except AssertionError:
        if not stats.escapes:
            raise
    return stats
