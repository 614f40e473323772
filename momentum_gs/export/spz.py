"""The ``.spz`` file of Niantic's spz library, read by most web splat viewers: about a tenth of the PLY's size.

The file is one gzip stream. Inside, a 16-byte little-endian header — magic ``0x5053474e`` ("NGSP"), version
(uint32), number of points (uint32), SH degree, fractional bits, flags, reserved (one byte each) — and then
each attribute for all Gaussians in turn, in this order:
- position: 3 × 24-bit signed fixed point, ``round(x · 2^fractional_bits)``;
- alpha: 1 byte, ``round(opacity · 255)``;
- colour: 3 bytes, the SH DC term as ``round(dc · 0.15 · 255 + 127.5)`` (0.15 rather than C0 leaves room for
  colours a little outside [0, 1] that higher bands bring back);
- scale: 3 bytes, ``round((log scale + 10) · 16)``;
- rotation: version 3 packs the unit quaternion (x, y, z, w) into 32 bits: the index of its largest component
  (2 bits, that component made positive and left out) and the other three in index order (10 bits each: a sign
  bit, then ``round(|q| / √½ · 511)``), the first of them in the highest bits; version 2 stores
  ``round(q · 127.5 + 127.5)`` for x, y, z with w ≥ 0 and derives w;
- SH beyond the DC term: ``3 · ((degree + 1)² − 1)`` bytes, coefficient-major with the colour channel inner,
  ``round(c · 128) + 128``, which a writer may keep to fewer significant bits (multiples of 2^(8 − bits)) for
  gzip to pack better; readers need not know how many.
Every byte is clamped to [0, 255]; so an SH coefficient beyond about ±1, a scale outside [e^-10, e^5.9] or a DC
colour term beyond ±3.3 is clipped.

Our choices, where the format leaves one:
- the frame: the file stores right-up-back axes (three.js, OpenGL), the frame in which viewers draw it, while
  a 3DGS PLY is read as right-down-front (OpenCV/COLMAP), our world frame; so we turn the scene half a turn
  about x on writing (y and z negated, the quaternion's y and z negated, each SH coefficient times the sign its
  basis function takes under that turn) and back on reading, as the spz library does converting a PLY;
- version 3 (smallest three: 4-byte rotations, steps 5× finer than version 2's), the current one and what
  the spz library writes; ``version=2`` writes the older layout for viewers that predate it. Both are read;
  version 4 (a zstd container with a 32-byte header) is refused with a message;
- fractional bits: 12, as the spz library writes (2^-12 units, 2.4 mm on the demo city whose unit is 10 m),
  fewer where the scene reaches beyond ±2048 units so that no coordinate wraps around; on the demo city the
  most bits that fit (18) made the file larger and its held-out PSNR no higher (docs/benchmarks/export.md);
- SH bits: all 8 by default; the spz library's default of 5 bits for degree 1 and 4 above (``sh_bits=(5, 4)``)
  rounds the small coefficients that baking fits (|c| < 0.05 on the demo city) to 0 and with them all view
  dependence, which costs held-out PSNR (docs/benchmarks/export.md);
- flags 0 (the Gaussians are drawn the classic 3DGS way, without mip-splatting's anti-aliasing); on reading,
  the anti-aliasing flag is accepted and ignored, any other flag (such as header extensions) refused;
- the Gaussians keep their order; gzip at zlib's default level 6, as the spz library (level 9 made the file
  a little smaller and took far longer: docs/benchmarks/export.md), with a zero timestamp, so the same scene
  gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.budget import require_memory
from momentum_gs.model.standard import StandardGaussians, sh_basis

MAGIC = 0x5053474E
HEADER = struct.Struct("<IIIBBBB")  # magic, version, points, SH degree, fractional bits, flags, reserved
VERSIONS = (2, 3)
ANTIALIASED = 0x1
COLOUR_SCALE = 0.15
SMALLEST_SCALE = math.exp(-10.0)  # byte 0 of a log scale: a flattened axis (scale 0) is stored as this
ROOT_HALF = math.sqrt(0.5)
OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])  # the three smallest, per largest index
FLIP = np.array([1.0, -1.0, -1.0])  # right-down-front ↔ right-up-back: half a turn about x
# Deflate's most expansion: one length/distance pair (at least 2 bits) gives at most 258 bytes, so 8 bits give at
# most 1032 (zlib's technical notes). A header counting more than that many times the file's size is false.
MAX_DEFLATE_RATIO = 1032
CHUNK = 1 << 20  # bytes decompressed at a time


def save_spz(gaussians: StandardGaussians, path: str | Path, version: int = 3,
             sh_bits: tuple[int, int] = (8, 8)) -> Path:
    """Write ``gaussians`` (any SH degree 0–3) as a gzip-compressed ``.spz`` file, atomically; returns the path.
    ``sh_bits``: significant bits of the SH coefficients of degree 1 and of degrees 2–3 (1–8 each)."""
    gaussians.require_finite(path)
    if version not in VERSIONS:
        raise UserError(f"cannot write .spz version {version}; choose 2 or 3")
    if not all(1 <= bits <= 8 for bits in sh_bits):
        raise UserError(f"SH bits {sh_bits} out of range; each is 1 to 8")
    atomic_write_bytes(path, spz_stream(flip_frame(gaussians), version, sh_bits))
    return Path(path)


def spz_stream(gaussians: StandardGaussians, version: int = 3, sh_bits: tuple[int, int] = (8, 8)) -> bytes:
    """The bytes of a ``.spz`` stream of ``gaussians`` taken as they are, in the stream's frame (no turn): what
    :func:`save_spz` writes after its turn, and what a glTF tile embeds."""
    return gzip.compress(pack(gaussians, version, sh_bits), compresslevel=6, mtime=0)


def load_spz(path: str | Path, device: torch.device | str = "cpu") -> StandardGaussians:
    """Read a ``.spz`` file of version 2 or 3 into Gaussians in our (the PLY's) frame."""
    if not Path(path).is_file():
        raise UserError(f"spz file not found: {path}")
    g = flip_frame(unpack(read_payload(Path(path))))
    return StandardGaussians(means=g.means.to(device), quats=torch.nn.functional.normalize(g.quats, dim=-1).to(device),
                             scales=g.scales.to(device), opacities=g.opacities.to(device), sh=g.sh.to(device))


def flip_frame(g: StandardGaussians) -> StandardGaussians:
    """The same scene with y and z negated (right-down-front ↔ right-up-back); its own inverse."""
    flip = torch.as_tensor(FLIP, dtype=g.means.dtype, device=g.means.device)
    sh = g.sh.clone()
    sh[:, 1:] *= sh_flip_signs(g.degree).to(sh)[1:, None]
    return StandardGaussians(means=g.means * flip, quats=g.quats * torch.cat([flip.new_ones(1), flip]),
                             scales=g.scales, opacities=g.opacities, sh=sh)


def sh_flip_signs(degree: int) -> torch.Tensor:
    """[(degree + 1)²] the sign each SH basis function takes when y and z are negated (each is even or odd)."""
    d = torch.tensor([[0.36, 0.48, 0.8]], dtype=torch.float64)  # no basis function of degree ≤ 3 vanishes here
    return torch.sign(sh_basis(d * torch.as_tensor(FLIP), degree) / sh_basis(d, degree))[0]


def fractional_bits(means: np.ndarray) -> int:
    """The most fractional bits (≤ 12) with which every coordinate of ``means`` fits 24-bit fixed point."""
    extent = float(np.abs(means).max()) if means.size else 0.0
    for bits in range(12, -1, -1):
        if round(extent * 2**bits) < 2**23:
            return bits
    raise UserError(f"the scene reaches {extent:.3g} world units from the origin, beyond the ±8.4 million that "
                    ".spz's 24-bit positions hold; move its origin or scale it down")


def pack(g: StandardGaussians, version: int, sh_bits: tuple[int, int]) -> bytes:
    """The uncompressed payload (header and arrays) of ``g``, taken as already in the file's frame."""
    means, quats = (t.detach().double().cpu().numpy() for t in (g.means, g.quats))
    scales, opacities, sh = (t.detach().double().cpu().numpy() for t in (g.scales, g.opacities, g.sh))
    n, bits = len(means), fractional_bits(means)
    fixed = np.round(means * 2**bits).astype(np.int64).reshape(-1, 1) >> np.array([0, 8, 16])
    xyzw = quats[:, [1, 2, 3, 0]] / np.linalg.norm(quats, axis=1, keepdims=True)
    rotations = pack_smallest_three(xyzw) if version == 3 else pack_first_three(xyzw)
    arrays = [fixed & 0xFF, opacities * 255, sh[:, 0] * (COLOUR_SCALE * 255) + 127.5,
              (np.log(np.maximum(scales, SMALLEST_SCALE)) + 10) * 16, rotations, quantise_sh(sh[:, 1:], sh_bits)]
    body = b"".join(np.clip(np.round(a), 0, 255).astype(np.uint8).tobytes() for a in arrays)
    return HEADER.pack(MAGIC, version, n, g.degree, bits, 0, 0) + body


def quantise_sh(rest: np.ndarray, sh_bits: tuple[int, int]) -> np.ndarray:
    """[M, K − 1, 3] SH coefficients (DC left out) → bytes ``128 + 128·c`` with ``sh_bits`` significant bits
    (degree 1, higher degrees)."""
    step = np.where(np.arange(rest.shape[1]) < 3, 2 ** (8 - sh_bits[0]), 2 ** (8 - sh_bits[1]))[None, :, None]
    q = np.round(rest * 128) + 128
    return (np.floor((q + step // 2) / step) * step).reshape(len(rest), -1)


def pack_smallest_three(xyzw: np.ndarray) -> np.ndarray:
    """[M, 4] unit quaternions (x, y, z, w) → [M, 4] bytes of version 3's 32-bit words."""
    largest = np.abs(xyzw).argmax(1)
    rows = np.arange(len(xyzw))[:, None]
    q = xyzw * np.where(xyzw[rows[:, 0], largest] < 0, -1, 1)[:, None]  # q and −q: one rotation
    small = q[rows, OTHERS[largest]]
    fields = (small < 0) << 9 | np.minimum(np.floor(np.abs(small) / ROOT_HALF * 511 + 0.5), 511).astype(np.int64)
    word = largest.astype(np.uint32) << 30 | (fields << np.array([20, 10, 0])).sum(1).astype(np.uint32)
    return word.astype("<u4").view(np.uint8).reshape(-1, 4)


def pack_first_three(xyzw: np.ndarray) -> np.ndarray:
    """[M, 4] unit quaternions (x, y, z, w) → [M, 3] values of version 2's bytes (w made ≥ 0, then dropped)."""
    return xyzw[:, :3] * np.where(xyzw[:, 3:] < 0, -127.5, 127.5) + 127.5


def read_payload(path: Path) -> tuple[tuple, bytes]:
    """The header fields and the array bytes of a ``.spz`` file, checked against the header's sizes.

    The gzip stream is decompressed as it is read, into a buffer of exactly the size the header's count gives,
    and no further than one byte past it: a stream that decompresses to more (a gzip bomb) is refused, and so is
    a count that the file's size cannot hold (:func:`check_count`)."""
    path = Path(path)
    with open(path, "rb") as f:
        start = f.read(8)
    return _payload(start, lambda: gzip.open(path, "rb"), path, path.stat().st_size)


def stream_payload(data: bytes, path: Path | str) -> tuple[tuple, bytes]:
    """The header fields and the array bytes of the ``.spz`` stream ``data`` (``path`` names it in messages),
    checked as :func:`read_payload` checks a file."""
    return _payload(data[:8], lambda: gzip.GzipFile(fileobj=io.BytesIO(data)), path, len(data))


def _payload(start: bytes, open_stream, path, disk: int) -> tuple[tuple, bytes]:
    """:func:`read_payload` of a stream whose first bytes are ``start``, opened by ``open_stream()``, ``disk``
    bytes compressed."""
    if start[:4] == b"NGSP":
        version = int.from_bytes(start[4:8], "little")
        raise UserError(f"{path} is a .spz file of version {version} (zstd streams); this reader reads versions 2 "
                        "and 3: write it again as version 3")
    try:
        with open_stream() as stream:
            head = stream.read(HEADER.size)
            if len(head) < HEADER.size:
                raise UserError(f"{path} is truncated: {len(head)} bytes where the .spz header needs 16")
            header = HEADER.unpack(head)
            check_header(path, header)
            size = array_bytes(header)
            check_count(path, header, size, disk)
            body = read_at_most(stream, size)
            extra = stream.read(1)  # at the end of a whole file gzip checks its length and CRC
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{path} is not a readable .spz file (its gzip stream is damaged or truncated: {exc})")
    if len(body) < size:
        raise UserError(f"{path} is truncated: {len(body)} bytes of Gaussians where the header announces "
                        f"{header[2]} Gaussians ({size} bytes); write the file again")
    if extra:
        raise UserError(f"{path} decompresses to more than its header's {header[2]} Gaussians ({size} bytes): it is "
                        "damaged or not a .spz file; write the file again")
    return header, body


def read_at_most(stream, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``, read chunk by chunk into one buffer of that size (fewer at its end)."""
    buffer, filled = bytearray(size), 0
    view = memoryview(buffer)
    while filled < size:
        got = stream.readinto(view[filled:filled + CHUNK])
        if not got:
            break
        filled += got
    view.release()
    del buffer[filled:]
    return bytes(buffer)


def check_count(path: Path, header: tuple, size: int, disk: int) -> None:
    """A UserError for a header counting no Gaussians, or more than the file can hold: gzip's deflate expands its
    input at most :data:`MAX_DEFLATE_RATIO` times, so the header and arrays are at most that many times the
    file's size. Then the memory that reading them takes is checked (:func:`momentum_gs.io.budget.require_memory`)."""
    _, _, n, degree, _, _, _ = header
    if n == 0:
        raise UserError(f"{path} holds no Gaussians (its header counts 0); write the file again from a scene")
    if HEADER.size + size > MAX_DEFLATE_RATIO * disk:
        raise UserError(f"{path}: its header announces {n} Gaussians ({HEADER.size + size} bytes), more than "
                        f"{MAX_DEFLATE_RATIO} times the file's {disk} bytes, the most that gzip can expand to; the "
                        "file is damaged or not a .spz file")
    floats = 11 + 3 * (degree + 1) ** 2  # per Gaussian: means, quats, scales, opacity, SH
    require_memory(size + n * floats * 20, torch.device("cpu"), f"reading {path} ({n} Gaussians)",
                   "read it on a machine with more memory")


def check_header(path: Path, header: tuple) -> None:
    """A UserError naming what in ``header`` (magic, version, SH degree, flags) this reader cannot take."""
    magic, version, _, degree, bits, flags, _ = header
    if magic != MAGIC:
        raise UserError(f"{path} is not a .spz file: its header starts {magic:#010x}, not 0x5053474e (NGSP)")
    if version not in VERSIONS:
        raise UserError(f"{path} is a .spz file of version {version}; this reader reads versions 2 and 3")
    if degree > 3:
        raise UserError(f"{path} has SH degree {degree}; the scenes here go up to degree 3: convert it with an "
                        "spz tool at degree 3")
    if bits > 23 or flags & ~ANTIALIASED:
        raise UserError(f"{path} has fractional bits {bits} and flags {flags:#x}; this reader takes at most 23 "
                        "bits and no flag but anti-aliasing (0x1): write it without header extensions")


def array_bytes(header: tuple) -> int:
    """Bytes of the arrays after the header: per Gaussian 9 + 1 + 3 + 3, the rotation and the SH."""
    _, version, n, degree, _, _, _ = header
    return n * (16 + (4 if version == 3 else 3) + 3 * ((degree + 1) ** 2 - 1))


def unpack(payload: tuple[tuple, bytes]) -> StandardGaussians:
    """Gaussians (float32, in the file's frame) from :func:`read_payload`'s header and arrays."""
    (_, version, n, degree, bits, _, _), body = payload
    sizes = [9, 1, 3, 3, 4 if version == 3 else 3, 3 * ((degree + 1) ** 2 - 1)]
    parts = np.split(np.frombuffer(body, np.uint8), np.cumsum([n * s for s in sizes])[:-1])
    position, alpha, colour, scale, rotation, rest = (p.reshape(n, s) for p, s in zip(parts, sizes))
    triples = position.reshape(n, 3, 3).astype(np.int32)
    fixed = triples[..., 0] | triples[..., 1] << 8 | triples[..., 2] << 16
    fixed = np.where(fixed >= 2**23, fixed - 2**24, fixed)
    xyzw = unpack_smallest_three(rotation) if version == 3 else unpack_first_three(rotation)
    dc = (colour / 255 - 0.5) / COLOUR_SCALE
    sh = np.concatenate([dc[:, None], (rest.reshape(n, -1, 3) - 128.0) / 128], 1)
    return StandardGaussians(means=tensor(fixed / 2.0**bits), quats=tensor(xyzw[:, [3, 0, 1, 2]]),
                             scales=tensor(np.exp(scale / 16 - 10)), opacities=tensor(alpha[:, 0] / 255),
                             sh=tensor(sh))


def unpack_smallest_three(rotation: np.ndarray) -> np.ndarray:
    """[M, 4] bytes of version 3 → [M, 4] unit quaternions (x, y, z, w)."""
    word = rotation.copy().view("<u4")[:, 0].astype(np.int64)
    largest = word >> 30
    fields = word[:, None] >> np.array([20, 10, 0]) & 0x3FF
    small = np.where(fields >> 9, -1.0, 1.0) * (fields & 0x1FF) / 511 * ROOT_HALF
    xyzw = np.zeros((len(word), 4))
    rows = np.arange(len(word))[:, None]
    xyzw[rows, OTHERS[largest]] = small
    xyzw[rows[:, 0], largest] = np.sqrt(np.maximum(0.0, 1 - (small**2).sum(1)))
    return xyzw


def unpack_first_three(rotation: np.ndarray) -> np.ndarray:
    """[M, 3] bytes of version 2 → [M, 4] unit quaternions (x, y, z, w) with w ≥ 0."""
    xyz = rotation / 127.5 - 1
    return np.concatenate([xyz, np.sqrt(np.maximum(0.0, 1 - (xyz**2).sum(1, keepdims=True)))], 1)


def tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor of ``array``."""
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)
