"""GLB files of 3D Gaussians in glTF's ``KHR_gaussian_splatting`` extension: the tile content of a 3D Tiles tileset.

The extension (Khronos, ratified) stores the Gaussians as one mesh primitive of mode POINTS whose vertex
attributes are, all float32, one accessor and one buffer view each:
- ``POSITION`` (VEC3, with min and max as glTF requires);
- ``KHR_gaussian_splatting:ROTATION`` (VEC4): the unit quaternion in glTF's order, x, y, z, w;
- ``KHR_gaussian_splatting:SCALE`` (VEC3): linear scales (not logs);
- ``KHR_gaussian_splatting:OPACITY`` (SCALAR): the opacity in [0, 1] (after the sigmoid);
- ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` (VEC3, r g b): the raw spherical-harmonic coefficients, degree
  0 always and every coefficient of each degree up to ours, n counting m from −l to l. The extension's basis
  (Appendix A: real harmonics with the Condon–Shortley phase, colour = basis · coefficients + 0.5, evaluated
  along the direction from the camera to the Gaussian) is ours, function for function and sign for sign, so
  the coefficients are copied as they are (apart from the turn below).
The primitive's extension object holds its two required properties, ``kernel`` "ellipse" and ``colorSpace``
"srgb_rec709_display" (our colours are fitted to the photos' sRGB values as they are). The extension is listed
in ``extensionsUsed`` only: the spec asks no more, and a reader without it falls back to drawing the points.
For that fallback (the spec's "may"), ``COLOR_0`` (unsigned bytes, normalised, VEC4) holds each Gaussian's
diffuse colour, clamped and decoded from sRGB to linear as glTF colours are, and its opacity as alpha. The
binary chunk is one buffer; every buffer view starts on a 4-byte boundary.

The frame: glTF is y-up, our scenes are z-up, and 3D Tiles turns glTF content a quarter turn about x (y up →
z up) when it loads it. The data itself is written turned the other way — positions (x, y, z) → (x, z, −y),
quaternions composed with the same turn, each degree's SH coefficients mixed by the fixed matrix that turns
its basis functions (obtained by least squares, exact to rounding) — so that after the loader's turn the
Gaussians lie where they lie in our scene, with their colours seen from the same sides. A node matrix would
do the same with less work here, but the spec only asks renderers to turn the SH by a node's rotation
("SHOULD"), and viewers have drawn splats under node matrices wrongly; turned data needs no such support.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.export.bake import SH_C0, StandardGaussians, sh_basis
from momentum_gs.io.atomic import atomic_write_bytes

EXTENSION = "KHR_gaussian_splatting"
PRIMITIVE = {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}
GLB_MAGIC, GLB_VERSION, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 2, 0x4E4F534A, 0x004E4942
FLOAT, UNSIGNED_BYTE, ARRAY_BUFFER, POINTS = 5126, 5121, 34962, 0
WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}
Y_UP_TO_Z_UP = math.pi / 2  # 3D Tiles: glTF content turns this angle about x as it loads


def sh_names(degree: int) -> list[str]:
    """The attribute names of the SH coefficients up to ``degree``, in our coefficient order."""
    return [f"{EXTENSION}:SH_DEGREE_{l}_COEF_{n}" for l in range(degree + 1) for n in range(2 * l + 1)]


def sh_turn(rotation: np.ndarray, degree: int) -> torch.Tensor:
    """[K, K] float64 matrix M with ``sh_basis(d @ rotation.T) = sh_basis(d) @ M`` for every unit d: each
    degree's basis functions are mixed among themselves by a rotation, so least squares over a few dozen
    directions finds M exactly (to rounding)."""
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64,
                                                     generator=torch.Generator().manual_seed(0)), dim=-1)
    turned = dirs @ torch.as_tensor(rotation, dtype=torch.float64).T
    m = torch.linalg.lstsq(sh_basis(dirs, degree), sh_basis(turned, degree)).solution
    return torch.where(m.abs() < 1e-12, 0.0, m)


def turn_about_x(g: StandardGaussians, angle: float) -> StandardGaussians:
    """The same Gaussians turned by ``angle`` (radians, right-handed) about the x axis: positions, orientations
    and the colour seen from each direction all turn with the scene."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    means = g.means.double() @ torch.as_tensor(rotation).T
    w, x, y, z = g.quats.double().unbind(-1)  # turn ⊗ q, the turn's quaternion being (cos a/2, sin a/2, 0, 0)
    hc, hs = math.cos(angle / 2), math.sin(angle / 2)
    quats = torch.stack([hc * w - hs * x, hc * x + hs * w, hc * y - hs * z, hc * z + hs * y], -1)
    # colour'(d) = colour(rotation.T d): the new coefficients are M C with M from the inverse turn.
    sh = torch.einsum("jk,mkc->mjc", sh_turn(rotation.T, g.degree), g.sh.double())
    return StandardGaussians(means=means.float(), quats=torch.nn.functional.normalize(quats, dim=-1).float(),
                             scales=g.scales.float(), opacities=g.opacities.float(), sh=sh.float())


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear ones (IEC 61966-2-1)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def glb_attributes(g: StandardGaussians) -> dict[str, np.ndarray]:
    """The primitive's attributes of ``g`` (already in glTF's frame), name → [M, width] array, in file order."""
    numpy = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    quats = numpy(torch.nn.functional.normalize(g.quats.double(), dim=-1))
    diffuse = np.clip(numpy(g.sh[:, 0]) * SH_C0 + 0.5, 0.0, 1.0)
    opacity = np.clip(numpy(g.opacities), 0.0, 1.0)[:, None]
    colour = np.rint(np.concatenate([srgb_to_linear(diffuse), opacity], 1) * 255).astype(np.uint8)
    out = {"POSITION": numpy(g.means).astype(np.float32), "COLOR_0": colour,
           f"{EXTENSION}:ROTATION": quats[:, [1, 2, 3, 0]].astype(np.float32),
           f"{EXTENSION}:SCALE": numpy(g.scales).astype(np.float32),
           f"{EXTENSION}:OPACITY": opacity.astype(np.float32)}
    sh = numpy(g.sh).astype(np.float32)
    out.update({name: sh[:, k] for k, name in enumerate(sh_names(g.degree))})
    return out


def glb_bytes(gaussians: StandardGaussians) -> bytes:
    """The bytes of a GLB holding ``gaussians`` (world frame, z up; see the module notes for the layout)."""
    if len(gaussians) == 0:
        raise UserError("a GLB of Gaussians needs at least one Gaussian (glTF accessors cannot be empty)")
    attributes = glb_attributes(turn_about_x(gaussians, -Y_UP_TO_Z_UP))
    views, accessors, blobs, offset = [], [], [], 0
    for name, values in attributes.items():
        blob = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob), "target": ARRAY_BUFFER})
        kind = "SCALAR" if values.shape[1] == 1 else f"VEC{values.shape[1]}"
        accessor = {"bufferView": len(views) - 1, "componentType": FLOAT, "count": len(values), "type": kind}
        if values.dtype == np.uint8:
            accessor.update(componentType=UNSIGNED_BYTE, normalized=True)
        if name == "POSITION":
            accessor.update(min=values.min(0).tolist(), max=values.max(0).tolist())
        accessors.append(accessor)
        blobs.append(blob)
        offset += len(blob)  # every attribute's element is a multiple of 4 bytes: views stay aligned
    binary = b"".join(blobs)
    document = {
        "asset": {"version": "2.0", "generator": "momentum_gs"},
        "extensionsUsed": [EXTENSION],
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {name: i for i, name in enumerate(attributes)}, "mode": POINTS,
                                    "extensions": {EXTENSION: dict(PRIMITIVE)}}]}],
        "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(binary)}],
    }
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), JSON_CHUNK) + text + struct.pack("<II", len(binary), BIN_CHUNK) + binary
    return struct.pack("<III", GLB_MAGIC, GLB_VERSION, 12 + len(chunks)) + chunks


def save_glb(gaussians: StandardGaussians, path: str | Path) -> Path:
    """Write ``gaussians`` as a GLB (``glb_bytes``), atomically; returns the path."""
    gaussians.require_finite(path)
    atomic_write_bytes(path, glb_bytes(gaussians))
    return Path(path)


def read_chunks(data: bytes) -> tuple[dict, bytes]:
    """(the JSON document, the binary chunk) of GLB ``data``; a ValueError says what is wrong."""
    if len(data) < 20:
        raise ValueError("too short for a GLB")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != GLB_VERSION:
        raise ValueError("no GLB version 2 header")
    if length != len(data):
        raise ValueError(f"the header says {length} bytes, the file has {len(data)}")
    chunks, at = {}, 12
    while at + 8 <= length:
        size, kind = struct.unpack_from("<II", data, at)
        chunks.setdefault(kind, data[at + 8:at + 8 + size])
        at += 8 + size
    if JSON_CHUNK not in chunks:
        raise ValueError("no JSON chunk")
    return json.loads(chunks[JSON_CHUNK].decode("utf-8")), chunks.get(BIN_CHUNK, b"")


def read_accessor(document: dict, binary: bytes, index: int) -> np.ndarray:
    """[count, width] float32 values of float accessor ``index`` (tightly packed or strided)."""
    accessor = document["accessors"][index]
    if accessor["componentType"] != FLOAT or accessor.get("normalized") or "sparse" in accessor:
        raise ValueError(f"accessor {index} is not plain float (quantised or sparse data is not read)")
    view = document["bufferViews"][accessor["bufferView"]]
    if view.get("buffer", 0) != 0:
        raise ValueError("data outside the GLB's own buffer")
    width, count = WIDTH[accessor["type"]], accessor["count"]
    stride, start = view.get("byteStride", 4 * width), view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    end = min(len(binary), view.get("byteOffset", 0) + view["byteLength"])
    if count < 1 or start % 4 or stride % 4 or start + stride * (count - 1) + 4 * width > end:
        raise ValueError(f"accessor {index} does not fit its buffer view")
    rows = np.ndarray((count, width), dtype="<f4", buffer=binary, offset=start, strides=(stride, 4))
    return rows.astype(np.float32)


def read_gaussians(document: dict, binary: bytes) -> StandardGaussians:
    """The Gaussians of the first ``KHR_gaussian_splatting`` primitive of a GLB, as stored (glTF's frame)."""
    primitives = [p for mesh in document.get("meshes", []) for p in mesh.get("primitives", [])
                  if EXTENSION in p.get("extensions", {})]
    if not primitives:
        raise ValueError(f"no {EXTENSION} primitive")
    attributes = primitives[0]["attributes"]
    names = ["POSITION"] + [f"{EXTENSION}:{n}" for n in ("ROTATION", "SCALE", "OPACITY")] + sh_names(0)
    missing = [name for name in names if name not in attributes]
    if missing:
        raise ValueError(f"no attribute {', '.join(missing)}")
    degree = max(d for d in range(4) if all(name in attributes for name in sh_names(d)))
    values = {name: read_accessor(document, binary, attributes[name]) for name in names[:4] + sh_names(degree)}
    shapes = {name: v.shape for name, v in values.items()}
    expected = {name: (len(values["POSITION"]), 4 if name.endswith("ROTATION") else 1 if name.endswith("OPACITY")
                       else 3) for name in values}
    if shapes != expected:
        raise ValueError(f"attribute shapes {shapes} where {expected} were expected")
    t = {name: torch.from_numpy(v) for name, v in values.items()}
    return StandardGaussians(means=t["POSITION"], quats=t[f"{EXTENSION}:ROTATION"][:, [3, 0, 1, 2]],
                             scales=t[f"{EXTENSION}:SCALE"], opacities=t[f"{EXTENSION}:OPACITY"][:, 0],
                             sh=torch.stack([t[name] for name in sh_names(degree)], 1))


def load_glb(path: str | Path, device: torch.device | str = "cpu") -> StandardGaussians:
    """Read a GLB of Gaussians written by :func:`save_glb` (or any float ``KHR_gaussian_splatting`` primitive)
    back into our frame and convention; a UserError in one line for any other file."""
    try:
        g = read_gaussians(*read_chunks(Path(path).read_bytes()))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"{path} is not a GLB of Gaussians ({EXTENSION}) as mgs export writes them: {reason}")
    return turn_about_x(g, Y_UP_TO_Z_UP).to(device)
