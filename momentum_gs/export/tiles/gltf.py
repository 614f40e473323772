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

Compressed (``compression="spz"``), the Gaussians are one ``.spz`` stream (``export.spz``, version 3, 8-bit SH)
in the draft extension ``KHR_gaussian_splatting_compression_spz_2``, which CesiumJS needs to draw tiles as
splats. As that extension's README and CesiumJS 1.145's loader lay it out:
- the primitive's ``KHR_gaussian_splatting`` object holds ``extensions.KHR_gaussian_splatting_compression_spz_2
  .bufferView``: the buffer view holding the stream; the attributes are ``POSITION``, ``COLOR_0`` (the DC
  colour and the opacity: the extension maps SPZ's colours and alphas there), ``SCALE``, ``ROTATION`` and
  ``SH_DEGREE_l_COEF_n`` for l ≥ 1 only; their accessors have no ``bufferView`` (the data comes from the
  stream) and say the decoded type and count, ``COLOR_0`` unsigned bytes (CesiumJS fills it with bytes and
  reads the accessor's type), ``POSITION`` with the min and max of the decoded positions. CesiumJS takes the
  SH degree from how many SH attributes there are (3, 8 or 15), so no ``SH_DEGREE_0`` or ``OPACITY`` is listed;
- both extensions are in ``extensionsUsed`` and ``extensionsRequired``: without the stream nothing can be read;
- the frame: CesiumJS decodes the stream with no coordinate conversion (the spz library's UNSPECIFIED), so the
  stream holds the glTF (y-up) values themselves. The README asks writers to pack from Left-Up-Front, which
  the spz library turns to its Right-Up-Back (x and z negated): a reader that follows it sees our tiles half
  a turn about the vertical. We follow the one implementation;
- the node carries a ``matrix`` that is a translation to the tile's centre, and the stream holds positions
  relative to it: 24-bit fixed point keeps 12 fractional bits (0.24 mm in metres) however far the tile lies
  from the origin (CesiumJS applies the first node's ``matrix`` to every splat).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.export.spz import spz_stream, stream_payload, unpack
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.model.standard import SH_C0, StandardGaussians, sh_basis

EXTENSION = "KHR_gaussian_splatting"
COMPRESSION = "KHR_gaussian_splatting_compression_spz_2"
COMPRESSIONS = ("spz", "none")  # the tile contents mgs export writes: an SPZ stream, or float32 attributes
SPZ_VERSION = 3  # the spz library's current layout; CesiumJS's decoder reads versions 2 and 3
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


def glb_bytes(gaussians: StandardGaussians, compression: str = "none") -> bytes:
    """The bytes of a GLB holding ``gaussians`` (world frame, z up) as float32 attributes (``compression``
    "none") or as one SPZ stream ("spz"); see the module notes for both layouts."""
    if len(gaussians) == 0:
        raise UserError("a GLB of Gaussians needs at least one Gaussian (glTF accessors cannot be empty)")
    if compression not in COMPRESSIONS:
        raise UserError(f"unknown tile compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    turned = turn_about_x(gaussians, -Y_UP_TO_Z_UP)
    document, binary = spz_document(turned) if compression == "spz" else float_document(turned)
    binary += b"\0" * (-len(binary) % 4)
    document = {"asset": {"version": "2.0", "generator": "momentum_gs"}, **document,
                "scene": 0, "scenes": [{"nodes": [0]}], "buffers": [{"byteLength": len(binary)}]}
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), JSON_CHUNK) + text + struct.pack("<II", len(binary), BIN_CHUNK) + binary
    return struct.pack("<III", GLB_MAGIC, GLB_VERSION, 12 + len(chunks)) + chunks


def float_document(g: StandardGaussians) -> tuple[dict, bytes]:
    """(the glTF JSON less its asset, scene and buffer, the binary chunk) of ``g`` (glTF's frame) as float32
    attributes, one buffer view each."""
    attributes = glb_attributes(g)
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
    primitive = {"attributes": {name: i for i, name in enumerate(attributes)}, "mode": POINTS,
                 "extensions": {EXTENSION: dict(PRIMITIVE)}}
    return {"extensionsUsed": [EXTENSION], "nodes": [{"mesh": 0}], "meshes": [{"primitives": [primitive]}],
            "accessors": accessors, "bufferViews": views}, b"".join(blobs)


def spz_document(g: StandardGaussians) -> tuple[dict, bytes]:
    """(the glTF JSON less its asset, scene and buffer, the binary chunk) of ``g`` (glTF's frame) as one SPZ
    stream in ``KHR_gaussian_splatting_compression_spz_2``, relative to its node's translation."""
    means = g.means.double()
    centre = (means.min(0).values + means.max(0).values) / 2
    stream = spz_stream(StandardGaussians(means=(means - centre).float(), quats=g.quats, scales=g.scales,
                                          opacities=g.opacities, sh=g.sh), SPZ_VERSION)
    decoded = unpack(stream_payload(stream, "the tile's SPZ stream")).means.numpy()
    kinds = {"POSITION": "VEC3", "COLOR_0": "VEC4", f"{EXTENSION}:SCALE": "VEC3", f"{EXTENSION}:ROTATION": "VEC4"}
    kinds.update({name: "VEC3" for name in sh_names(g.degree)[1:]})
    accessors = [{"componentType": FLOAT, "count": len(g), "type": kind} for kind in kinds.values()]
    accessors[0].update(min=decoded.min(0).tolist(), max=decoded.max(0).tolist())
    accessors[1].update(componentType=UNSIGNED_BYTE, normalized=True)
    primitive = {"attributes": {name: i for i, name in enumerate(kinds)}, "mode": POINTS,
                 "extensions": {EXTENSION: {**PRIMITIVE, "extensions": {COMPRESSION: {"bufferView": 0}}}}}
    matrix = np.eye(4)
    matrix[:3, 3] = centre.numpy()
    return {"extensionsUsed": [EXTENSION, COMPRESSION], "extensionsRequired": [EXTENSION, COMPRESSION],
            "nodes": [{"mesh": 0, "matrix": matrix.T.reshape(-1).tolist()}], "meshes": [{"primitives": [primitive]}],
            "accessors": accessors, "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(stream)}]}, stream


def save_glb(gaussians: StandardGaussians, path: str | Path, compression: str = "none") -> Path:
    """Write ``gaussians`` as a GLB (``glb_bytes``, ``compression`` "none" or "spz"), atomically; returns the
    path."""
    gaussians.require_finite(path)
    atomic_write_bytes(path, glb_bytes(gaussians, compression))
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
    """The Gaussians of the first ``KHR_gaussian_splatting`` primitive of a GLB (float32 attributes or an SPZ
    stream) in glTF's frame, moved by its node's translation."""
    found = [(m, p) for m, mesh in enumerate(document.get("meshes", [])) for p in mesh.get("primitives", [])
             if EXTENSION in p.get("extensions", {})]
    if not found:
        raise ValueError(f"no {EXTENSION} primitive")
    mesh, primitive = found[0]
    spz = primitive["extensions"][EXTENSION].get("extensions", {}).get(COMPRESSION)
    g = (read_spz(document, binary, primitive["attributes"], spz) if spz is not None
         else read_floats(document, binary, primitive["attributes"]))
    offset = torch.from_numpy(node_offset(document, mesh))
    return StandardGaussians(means=(g.means.double() + offset).float(), quats=g.quats, scales=g.scales,
                             opacities=g.opacities, sh=g.sh)


def read_floats(document: dict, binary: bytes, attributes: dict) -> StandardGaussians:
    """The Gaussians of a primitive's float32 attributes, as stored."""
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


def read_spz(document: dict, binary: bytes, attributes: dict, spz: dict) -> StandardGaussians:
    """The Gaussians of a primitive's ``KHR_gaussian_splatting_compression_spz_2`` stream, as stored, checked
    against the count and SH attributes the primitive announces."""
    view = document["bufferViews"][spz["bufferView"]]
    start, length = view.get("byteOffset", 0), view["byteLength"]
    if view.get("buffer", 0) != 0 or start + length > len(binary):
        raise ValueError("the SPZ stream's buffer view lies outside the GLB's binary chunk")
    g = unpack(stream_payload(binary[start:start + length], "the SPZ stream"))
    count = document["accessors"][attributes["POSITION"]]["count"]
    sh = sorted(name for name in attributes if name.startswith(f"{EXTENSION}:SH_DEGREE_"))
    if count != len(g) or sh != sorted(sh_names(g.degree)[1:]):
        raise ValueError(f"the SPZ stream holds {len(g)} Gaussians of SH degree {g.degree}, the attributes announce "
                         f"{count} and {len(sh)} SH coefficients")
    return g


def node_offset(document: dict, mesh: int) -> np.ndarray:
    """[3] float64 the translation of the first node holding ``mesh`` (a ValueError for any other transform)."""
    nodes = [node for node in document.get("nodes", []) if node.get("mesh") == mesh]
    if not nodes:
        raise ValueError(f"no node holds mesh {mesh}")
    node = nodes[0]
    matrix = np.asarray(node.get("matrix", np.eye(4).reshape(-1)), np.float64).reshape(4, 4).T  # column-major
    matrix[:3, 3] += np.asarray(node.get("translation", [0.0, 0.0, 0.0]), np.float64)
    if (not np.allclose(matrix[:3, :3], np.eye(3)) or not np.allclose(matrix[3], [0, 0, 0, 1])
            or node.get("rotation", [0, 0, 0, 1]) != [0, 0, 0, 1] or node.get("scale", [1, 1, 1]) != [1, 1, 1]):
        raise ValueError("its node moves it by more than a translation")
    return matrix[:3, 3]


def load_glb(path: str | Path, device: torch.device | str = "cpu") -> StandardGaussians:
    """Read a GLB of Gaussians written by :func:`save_glb` (or any float or SPZ ``KHR_gaussian_splatting``
    primitive under a node that only moves it) back into our frame and convention; a UserError in one line for
    any other file."""
    try:
        g = read_gaussians(*read_chunks(Path(path).read_bytes()))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}")
    except (UserError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"{path} is not a GLB of Gaussians ({EXTENSION}) as mgs export writes them: {reason}")
    return turn_about_x(g, Y_UP_TO_Z_UP).to(device)
