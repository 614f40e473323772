"""Reading files that other programs wrote (PLY, .splat): no count in a header is believed beyond what the file's
size can hold, and no value that is not finite gets through.

A PLY header says how many vertices follow; :func:`read_ply_vertices` compares that with the bytes after the
header before anything is allocated: a binary row is exactly the sum of its properties' sizes, an ASCII row at
least two characters per property (a digit and a separator). :func:`require_finite_fields` counts NaN and inf in
each floating-point field of the records read, and names the first field that holds any.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData

from momentum_gs.errors import UserError
from momentum_gs.io.finite import require_finite

MAX_HEADER = 1 << 20  # bytes: a PLY header is a few kB; a file without end_header within this is not a PLY
SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
         "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def ply_header(path: Path, what: str) -> tuple[str, int, list[tuple[str, int, int]]]:
    """(format, header bytes, [(element, count, smallest bytes of one row)]) of the PLY file at ``path``."""
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER)
    end = head.find(b"end_header")
    newline = head.find(b"\n", end)
    if not head.startswith(b"ply") or end < 0 or newline < 0:
        raise UserError(f"{path} is not a {what}: no PLY header (ply ... end_header) in its first {MAX_HEADER} bytes")
    fmt, elements = "", []
    for line in head[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "format":
            fmt = words[1]
        elif len(words) == 3 and words[0] == "element":
            if not words[2].isdigit():
                raise UserError(f"{path} is not a {what}: its header counts element {words[1]} as {words[2]!r}")
            elements.append([words[1], int(words[2]), 0])
        elif len(words) >= 3 and words[0] == "property" and elements:
            ascii_row = 2  # one character and one separator, a list's length included
            binary_row = SIZES.get(words[2] if words[1] == "list" else words[1], 1)
            elements[-1][2] += ascii_row if fmt == "ascii" else binary_row
    return fmt, newline + 1, [tuple(e) for e in elements]


def read_ply_vertices(path: str | Path, what: str) -> np.ndarray:
    """The structured array of the ``vertex`` element of the PLY file at ``path`` (``what`` it should be, for
    messages), read once its header's counts are found to fit the file's size: a header announcing more rows
    than the file holds is a UserError before anything is allocated."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    require_counts_fit(path, what)
    try:
        return PlyData.read(str(path))["vertex"].data
    except Exception as exc:  # plyfile raises several types for a damaged or foreign file
        raise UserError(f"cannot read the {what} {path}: {exc}")


def require_counts_fit(path: Path, what: str) -> None:
    """A UserError unless the element counts of the PLY header at ``path`` fit the bytes after it (each row at its
    smallest: a binary row the sum of its properties' sizes, a list's length only, an ASCII row 2 characters per
    property), so that no reader allocates for rows the file cannot hold."""
    fmt, header, elements = ply_header(path, what)
    need, have = sum(count * row for _, count, row in elements), path.stat().st_size - header
    if need > have:
        counts = ", ".join(f"{count} {name}" for name, count, _ in elements)
        raise UserError(f"{path}: its header announces {counts}, at least {need} bytes of {fmt or 'PLY'} data, but "
                        f"the file holds {have} bytes after it; the file is truncated or its header is wrong")


def require_finite_fields(records: np.ndarray, path: str | Path, what: str) -> None:
    """A UserError naming the first floating-point field of ``records`` (a structured array read from ``path``)
    that holds NaN or inf, how many of its values do, and how many other fields hold some
    (:func:`momentum_gs.io.finite.require_finite`)."""
    require_finite({name: records[name] for name in records.dtype.names}, f"{what} {path}",
                   "it was written from a model that diverged or it is damaged: export it again from a good model",
                   "attribute")
