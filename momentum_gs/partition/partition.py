"""The partition of a scene into blocks: cells in contracted space, the points and cameras of each block.

Frames and cells:
- *grid frame*: world points rotated by ``rotation`` ([3, 3], world → grid; the identity unless the scene's
  up axis is far from every world axis). ``box_min``/``box_max`` are in this frame, i.e. world units and
  world axes whenever ``rotation`` is the identity.
- *contracted space*: the grid frame through :func:`~momentum_gs.partition.contraction.contract` with the
  box, [0, 1]³.
- *cells*: ``block_dim = (Dx, Dy, Dz)`` half-open boxes tiling [0, 1]³, cut in a fixed order: x at
  ``edges[0]`` [Dx + 1]; y at ``edges[1][ix]`` [Dx, Dy + 1], i.e. per x column; z at ``edges[2][ix, iy]``
  [Dx, Dy, Dz + 1]. Uniform edges (``linspace(0, 1, D + 1)`` everywhere) are CityGaussian's/Momentum-GS's
  grid; the automatic partition moves the cuts to balance the camera counts. Block id =
  iz·Dx·Dy + iy·Dx + ix, as in the reference.
"""

from __future__ import annotations

import json
import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.schema import Flag, ListOf, Maybe, Number, Obj, Text, check, parse_json
from momentum_gs.partition.contraction import Array, _like, contract
from momentum_gs.ranges import AT_LEAST_0, FRACTION, MAX_BLOCKS, Range

# Around its cell, a block also starts from the points within this fraction of the cell size. Half a cell
# gives a block the geometry its views see just beyond its cell; with a tenth, blocks explained that
# geometry with floaters in front of their cameras, which the merge's crop keeps (docs/benchmarks/training.md).
DEFAULT_MARGIN = 0.5

FORMAT = "momentum_gs.partition"
VERSION = 1
# The file's JSON header, as :meth:`Partition.save` writes it: another key means another version of the format.
META = Obj({"format": Text((FORMAT,)), "version": Number(Range(VERSION, VERSION), whole=True),
            "block_dim": ListOf(Number(Range(1, MAX_BLOCKS), whole=True), 3, 3), "margin": Number(AT_LEAST_0),
            "splits": Text(("uniform", "balanced")), "criterion": Text(), "coverage_threshold": Maybe(Number(FRACTION)),
            "camera_names": ListOf(Text()), "has_up": Flag()}, refuse_unknown=True)
# The file's arrays: the real ones hold finite numbers, the rest integers (ids, indices and offsets).
REAL_ARRAYS = ("box_min", "box_max", "rotation", "up", "edges_x", "edges_y", "edges_z", "camera_coverage")
INDEX_ARRAYS = ("point_block", "block_points_flat", "block_points_offsets", "block_cameras_flat",
                "block_cameras_offsets", "camera_block")


def uniform_edges(block_dim: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell edges of the reference's uniform grid: ([Dx + 1], [Dx, Dy + 1], [Dx, Dy, Dz + 1])."""
    dx, dy, dz = block_dim
    return (np.linspace(0.0, 1.0, dx + 1), np.tile(np.linspace(0.0, 1.0, dy + 1), (dx, 1)),
            np.tile(np.linspace(0.0, 1.0, dz + 1), (dx, dy, 1)))


def check_edges(edges, block_dim: tuple[int, int, int]) -> None:
    """Raise a UserError unless ``edges`` have the shapes of ``block_dim`` and increase from 0 to 1."""
    dx, dy, dz = block_dim
    shapes = [(dx + 1,), (dx, dy + 1), (dx, dy, dz + 1)]
    for axis, (e, shape) in enumerate(zip(edges, shapes)):
        e = np.asarray(e)
        ends_ok = np.all(e[..., 0] == 0) and np.all(e[..., -1] == 1) if e.shape == shape else False
        if not ends_ok or not np.all(np.diff(e, axis=-1) > 0):
            raise UserError(f"partition cell edges along axis {'xyz'[axis]} must have shape {shape} and increase "
                            f"from 0 to 1, got {e.tolist()}")


@dataclass
class Partition:
    """Blocks of a scene (see the module docstring for the frames and the cell layout).

    Attributes:
        box_min, box_max: [3] scene box in the grid frame (world units).
        block_dim: cells per axis (x, y, z) of the grid frame.
        point_block: [P] int64, the block (cell) of every SfM point, exactly one each.
        block_points: per block, int64 indices of the points it starts from (its cell + ``margin``).
        block_cameras: per block, int64 indices into ``scene.train`` of its training cameras.
        edges: cell edges in contracted coordinates (module docstring); None → uniform.
        rotation: [3, 3] world → grid frame.
        up: [3] world up direction (unit), or None if unknown.
        margin: fraction of the cell size (per axis, contracted units) added around a cell for its points.
        splits: "uniform" (reference grid) or "balanced" (cuts at camera quantiles).
        criterion: how cameras were assigned: "centre", "centre+coverage", "centre+ssim" (a coarse model's
            SSIM drop, :mod:`~momentum_gs.partition.coarse`) or "imported from <file>".
        coverage_threshold: the criterion's threshold: the fraction of a view's content the block must own, or
            the 1 − SSIM drop it must cause; None for "centre" and imported assignments.
        camera_block: [C] int64, the cell of each training camera's centre.
        camera_coverage: [C, n] float32, what the threshold applies to: the fraction of each view's content
            each block owns, or the SSIM drop removing the block causes.
        camera_names: names of ``scene.train`` when the partition was made (to detect another split).
    """

    box_min: np.ndarray
    box_max: np.ndarray
    block_dim: tuple[int, int, int]
    point_block: np.ndarray
    block_points: list[np.ndarray]
    block_cameras: list[np.ndarray]
    edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    up: np.ndarray | None = None
    margin: float = DEFAULT_MARGIN
    splits: str = "uniform"
    criterion: str = "centre"
    coverage_threshold: float | None = None
    camera_block: np.ndarray | None = None
    camera_coverage: np.ndarray | None = None
    camera_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.block_dim = tuple(int(d) for d in self.block_dim)
        if len(self.block_dim) != 3 or min(self.block_dim) < 1:
            raise UserError(f"block_dim must be three positive integers, got {self.block_dim}")
        self.box_min = np.asarray(self.box_min, np.float64).reshape(3)
        self.box_max = np.asarray(self.box_max, np.float64).reshape(3)
        if not np.all(self.box_max > self.box_min):
            raise UserError(f"the partition box must have positive size on every axis: min {self.box_min.tolist()}, "
                            f"max {self.box_max.tolist()}")
        edges = uniform_edges(self.block_dim) if self.edges is None else self.edges
        self.edges = tuple(np.asarray(e, np.float64) for e in edges)
        check_edges(self.edges, self.block_dim)
        self.rotation = np.asarray(self.rotation, np.float64).reshape(3, 3)
        self.point_block = np.asarray(self.point_block, np.int64)
        if len(self.block_points) != self.num_blocks or len(self.block_cameras) != self.num_blocks:
            raise UserError(f"a partition of {self.num_blocks} blocks needs that many point and camera lists")
        self._check_indices()

    def _check_indices(self) -> None:
        """A UserError naming the first list whose block, point or camera indices are out of range."""
        cameras = len(self.camera_names) or (len(self.camera_block) if self.camera_block is not None else None)
        lists = [("point_block", self.point_block, self.num_blocks)]
        if self.camera_block is not None:
            lists.append(("camera_block", self.camera_block, self.num_blocks))
        lists += [(f"block_points[{b}]", points, len(self.point_block)) for b, points in enumerate(self.block_points)]
        lists += [(f"block_cameras[{b}]", cams, cameras) for b, cams in enumerate(self.block_cameras)]
        for where, values, bound in lists:
            values = np.asarray(values)
            if values.size == 0:
                continue
            low, high = int(values.min()), int(values.max())
            if low < 0 or (bound is not None and high >= bound):
                limit = f"[0, {bound})" if bound is not None else "0 or more"
                raise UserError(f"{where} holds {low if low < 0 else high}, outside {limit}")

    @property
    def num_blocks(self) -> int:
        """Number of blocks = Dx·Dy·Dz."""
        return int(np.prod(self.block_dim))

    def contract(self, xyz: Array) -> Array:
        """[M, 3] world points → [M, 3] contracted grid-frame coordinates (numpy float64 or torch float64)."""
        if isinstance(xyz, torch.Tensor):
            xyz = xyz.double()
        else:
            xyz = np.asarray(xyz, np.float64)
        return contract(xyz @ _like(self.rotation, xyz).T, self.box_min, self.box_max)

    def cell_of_contracted(self, u: Array) -> Array:
        """[M, 3] contracted coordinates → [M] int64 block ids (half-open cells; outside [0, 1] clamps)."""
        ex, ey, ez = (_like(e, u) for e in self.edges)
        ix = (u[:, 0:1] >= ex[None, 1:-1]).sum(-1)
        iy = (u[:, 1:2] >= ey[ix][:, 1:-1]).sum(-1)
        iz = (u[:, 2:3] >= ez[ix, iy][:, 1:-1]).sum(-1)
        dx, dy, _ = self.block_dim
        return (iz * dy + iy) * dx + ix

    def block_of(self, xyz: Array) -> Array:
        """[..., 3] world points → [...] int64 block id of each (numpy in → numpy out, torch → torch, same
        device). Used to crop each block's anchors to its own cell at merge time."""
        xyz = xyz if isinstance(xyz, torch.Tensor) else np.asarray(xyz, np.float64)
        shape = tuple(xyz.shape[:-1])
        flat = xyz.reshape(-1, 3)
        return self.cell_of_contracted(self.contract(flat)).reshape(shape)

    def cell_index(self, block: int) -> tuple[int, int, int]:
        """(ix, iy, iz) of ``block``."""
        if not 0 <= block < self.num_blocks:
            raise IndexError(f"block {block} out of range (the partition has {self.num_blocks} blocks)")
        dx, dy, _ = self.block_dim
        return block % dx, (block // dx) % dy, block // (dx * dy)

    def cell_bounds(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """([3] lo, [3] hi) of the block's cell in contracted coordinates; the cell is lo <= u < hi."""
        ix, iy, iz = self.cell_index(block)
        ex, ey, ez = self.edges
        lo = np.array([ex[ix], ey[ix, iy], ez[ix, iy, iz]])
        hi = np.array([ex[ix + 1], ey[ix, iy + 1], ez[ix, iy, iz + 1]])
        return lo, hi

    def cell_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """([n] SfM points in each cell, [n] training cameras whose centre is in each cell)."""
        points = np.bincount(self.point_block, minlength=self.num_blocks)
        cams = np.zeros(self.num_blocks, np.int64) if self.camera_block is None else \
            np.bincount(self.camera_block, minlength=self.num_blocks)
        return points, cams

    def validate(self, cameras: bool = True) -> None:
        """Raise a UserError naming the first block whose cell holds no SfM point or (with ``cameras``) that has
        no cameras, or when the margin makes every block start from every point of the scene."""
        n = self.num_blocks
        hint = f"use fewer blocks (--blocks {max(1, n // 2)}) or a larger box" if n > 1 else "check the box"
        points, _ = self.cell_counts()
        for b in range(n):
            cell = ",".join(map(str, self.cell_index(b)))
            if cameras and len(self.block_cameras[b]) == 0:
                raise UserError(f"block {b} (cell {cell}) has no training cameras; {hint}")
            if points[b] == 0:
                raise UserError(f"block {b} (cell {cell}) has no SfM points in its cell; {hint}")
        self._check_margin()

    def _check_margin(self) -> None:
        """One line when every block of several starts from every SfM point: each cell grown by the margin
        (``margin`` × the cell's size on each side, contracted units) covers the whole scene, so the blocks are
        copies of it, not parts."""
        total = len(self.point_block)
        if self.num_blocks > 1 and total > 0 and all(len(indices) == total for indices in self.block_points):
            grid = "x".join(str(d) for d in self.block_dim)
            raise UserError(f"with a margin of {self.margin:g} (a fraction of a cell's size, on each side) every block "
                            f"of the {grid} grid starts from all {total} SfM points: the blocks are copies of the whole "
                            "scene, not parts of it; give a smaller margin (--margin, partition.margin) or more cells")

    def check_scene(self, num_points: int, camera_names: list[str]) -> None:
        """Raise a UserError if the partition was made for another point cloud or training split."""
        if num_points != len(self.point_block):
            raise UserError(f"the partition was made for {len(self.point_block)} SfM points, the scene has "
                            f"{num_points}; run `mgs partition` again for this scene")
        if self.camera_names and list(camera_names) != list(self.camera_names):
            raise UserError(f"the partition was made for other training cameras ({len(self.camera_names)} vs "
                            f"{len(camera_names)} now; data.test_every changed?); run `mgs partition` again")

    @property
    def camera_rule(self) -> str:
        """How the cameras were assigned, printable: "centre+coverage > 0.1", "centre+ssim > 0.05", "centre"..."""
        if self.coverage_threshold is None:
            return self.criterion
        return f"{self.criterion} > {self.coverage_threshold:g}"

    def summary(self) -> str:
        """A few printable lines: grid, box, and per block its cell, cameras and points."""
        points, centred = self.cell_counts()
        lines = [f"{self.num_blocks} blocks, grid {'x'.join(map(str, self.block_dim))} ({self.splits} cuts), "
                 f"box {np.round(self.box_min, 3).tolist()} - {np.round(self.box_max, 3).tolist()}, "
                 f"cameras by {self.camera_rule}"]
        for b in range(self.num_blocks):
            lines.append(f"  block {b} cell {','.join(map(str, self.cell_index(b)))}: "
                         f"{len(self.block_cameras[b])} cameras ({centred[b]} centred), "
                         f"{len(self.block_points[b])} points ({points[b]} in cell)")
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        """Write one ``.npz`` file (arrays + a JSON header) through a temporary file and a rename."""
        path = Path(path)
        if path.is_dir():
            raise UserError(f"{path} is a folder; give the partition a file name, e.g. {path / 'partition.npz'}")
        meta = {"format": FORMAT, "version": VERSION, "block_dim": list(self.block_dim), "margin": self.margin,
                "splits": self.splits, "criterion": self.criterion, "coverage_threshold": self.coverage_threshold,
                "camera_names": list(self.camera_names), "has_up": self.up is not None}
        arrays = {"meta": np.array(json.dumps(meta)), "box_min": self.box_min, "box_max": self.box_max,
                  "rotation": self.rotation, "up": np.zeros(3) if self.up is None else np.asarray(self.up, float),
                  "edges_x": self.edges[0], "edges_y": self.edges[1], "edges_z": self.edges[2],
                  "point_block": np.asarray(self.point_block, np.int32)}  # ids and indices: int32 on disk
        for name in ("block_points", "block_cameras"):
            arrays[f"{name}_flat"], arrays[f"{name}_offsets"] = _pack(getattr(self, name))
        for name in ("camera_block", "camera_coverage"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "Partition":
        """Read a file written by :meth:`save`; a missing, corrupt or foreign file is a UserError."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"partition file {path} not found; make it with `mgs partition`")
        arrays, meta = _read(path)
        try:
            n = int(np.prod(meta["block_dim"]))
            partition = cls(
                arrays["box_min"], arrays["box_max"], tuple(meta["block_dim"]), arrays["point_block"],
                _unpack(arrays["block_points_flat"], arrays["block_points_offsets"], n),
                _unpack(arrays["block_cameras_flat"], arrays["block_cameras_offsets"], n),
                edges=(arrays["edges_x"], arrays["edges_y"], arrays["edges_z"]), rotation=arrays["rotation"],
                up=arrays["up"] if meta["has_up"] else None, margin=float(meta["margin"]), splits=meta["splits"],
                criterion=meta["criterion"], coverage_threshold=meta["coverage_threshold"],
                camera_block=arrays.get("camera_block"), camera_coverage=arrays.get("camera_coverage"),
                camera_names=list(meta["camera_names"]))
        except UserError as exc:
            raise UserError(f"partition file {path} is invalid: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise _corrupt(path, exc) from None
        return partition


def _corrupt(path: Path, exc: Exception) -> UserError:
    """The one line for a partition file that does not read."""
    return UserError(f"partition file {path} is corrupt or not a partition ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); run `mgs partition` again")


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(the arrays, the JSON header checked against :data:`META`) of a partition file; the arrays of
    :data:`REAL_ARRAYS` are checked to hold finite numbers, those of :data:`INDEX_ARRAYS` integers."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):  # a member that is not a .npy array
            raise ValueError("a member of the archive is not an array")
        meta_text = str(arrays["meta"])
        for name in REAL_ARRAYS + INDEX_ARRAYS:
            kinds = "fiu" if name in REAL_ARRAYS else "iu"
            if name in arrays and (arrays[name].dtype.kind not in kinds or not np.isfinite(arrays[name]).all()):
                raise ValueError(f"{name} holds {arrays[name].dtype} values that are not all "
                                 f"{'finite numbers' if name in REAL_ARRAYS else 'integers'}")
    except (OSError, EOFError, ValueError, KeyError, NotImplementedError, zipfile.BadZipFile,
            zlib.error) as exc:  # a damaged member, or one compressed by a method zipfile does not read
        raise _corrupt(path, exc) from None
    source = f"partition file {path}"
    return arrays, check(parse_json(meta_text, source), META, source, "run `mgs partition` again")


def _pack(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged int lists → (flat [sum], offsets [n + 1])."""
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    flat = np.concatenate([np.asarray(x, np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
    if flat.size and flat.max() < 2**31:
        flat = flat.astype(np.int32)
    return flat, offsets


def _unpack(flat: np.ndarray, offsets: np.ndarray, n: int) -> list[np.ndarray]:
    """Inverse of :func:`_pack`; checks that there are ``n`` lists."""
    if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(flat) or np.any(np.diff(offsets) < 0):
        raise ValueError(f"block lists do not match {n} blocks")
    return [flat[offsets[i]:offsets[i + 1]].astype(np.int64) for i in range(n)]
