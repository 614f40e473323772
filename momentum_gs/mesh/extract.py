"""``mgs mesh``: a coloured triangle mesh of a trained scene, block by block (docs/surfaces.md).

The training views are rendered with their depth (the median depth by default: the surface where a pixel's
transmittance crosses one half) and fused into a TSDF on one global grid over the scene, in the partition's grid
frame (z up). Each block fuses and extracts only the grid cubes of its own cell (plus the grid points at their
corners), so memory grows with the block, not with the scene; the pieces share the global grid's vertex names
and are stitched into one mesh without seams (:mod:`momentum_gs.mesh.marching`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
import torch

from momentum_gs.data.georef import ply_comment, read_georef, write_sidecar
from momentum_gs.data.scene import load_scene
from momentum_gs.data.scene_info import SCENE_INFO_NAME, read_scene_info
from momentum_gs.errors import UserError
from momentum_gs.estimate import sized
from momentum_gs.eval.geometry import mesh_scores
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.mesh import read_mesh, write_mesh
from momentum_gs.mesh.marching import CUBE_CORNERS, Surface, marching_tetrahedra, stitch
from momentum_gs.mesh.picture import shade_mesh
from momentum_gs.mesh.tsdf import DepthView, Grid, fuse, sees_box
from momentum_gs.partition.partition import Partition
from momentum_gs.ranges import MESH, check_settings
from momentum_gs.trained import load_run

# The largest grid one block may fuse (points): about 28 bytes each, so 1.8 GB; and the largest scene grid,
# whose cubes are visited once to find each block's range.
MAX_BLOCK_POINTS = 1 << 26
MAX_GRID_POINTS = 1 << 36
# Renders kept for the next block (depth + colour), in bytes.
RENDER_CACHE_BYTES = 1 << 29
# From this truncation (voxels) on, a tetrahedron (diagonal √3 voxels) crossed by a real surface cannot reach
# both TSDF clamps, so tetrahedra that do are depth edges and are dropped (marching_tetrahedra's drop_jumps).
JUMP_SAFE_TRUNC = 1.75
# Surface samples per mesh when scoring against a ground truth: the point-to-point floor is about half their
# spacing, sqrt(area / count) (0.013 units on the demo city).
SCORE_SAMPLES = 1_000_000


DepthKind = Literal["median", "mean"]  # the rendered depth fused: where transmittance crosses 0.5, or the mean
DEPTHS = get_args(DepthKind)


@dataclass
class MeshSettings:
    """How ``mgs mesh`` fuses: ``voxel`` world units (None: the region's longest horizontal side / 400),
    truncation ``trunc_voxels`` voxels, ``depth`` "median" or "mean" (expected depth / alpha), pixels with
    alpha below ``min_alpha`` give no depth, region = the anchors' ``region_percentile``…100 − it per axis."""

    voxel: float | None = None
    trunc_voxels: float = 2.0
    depth: DepthKind = "median"
    min_alpha: float = 0.5
    region_percentile: float = 0.5


def region_of(positions: np.ndarray, rotation: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """([3] lo, [3] hi) grid-frame box around the anchor ``positions`` [N, 3] (world), robust to strays."""
    grid = positions @ rotation.T
    return np.percentile(grid, percentile, axis=0), np.percentile(grid, 100 - percentile, axis=0)


def default_voxel(lo: np.ndarray, hi: np.ndarray) -> float:
    """The region's longest horizontal side / 400."""
    return float(max(hi[:2] - lo[:2])) / 400.0


def _cube_centres(origin: np.ndarray, voxel: float, first: np.ndarray, shape: tuple[int, int, int],
                  rotation: np.ndarray) -> np.ndarray:
    """[X·Y·Z, 3] world centres of the cubes first + (0..X-1, 0..Y-1, 0..Z-1) of the global grid."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3) + first
    return (origin + voxel * (index + 0.5)) @ rotation


def block_ranges(partition, origin: np.ndarray, voxel: float, dims: np.ndarray,
                 rotation: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{block: (first [3], last [3])} inclusive index range of the global grid's cubes each block owns (the
    partition's block of a cube's centre), found one x slab at a time so memory stays one slab."""
    cubes = dims - 1
    if partition is None:
        return {0: (np.zeros(3, np.int64), cubes - 1)}
    ranges: dict[int, list[np.ndarray]] = {}
    for i in range(cubes[0]):
        ids = partition.block_of(_cube_centres(origin, voxel, np.array([i, 0, 0]), (1, *cubes[1:]), rotation))
        ids = ids.reshape(cubes[1], cubes[2])
        for block in np.unique(ids):
            j, k = np.nonzero(ids == block)
            lo, hi = np.array([i, j.min(), k.min()]), np.array([i, j.max(), k.max()])
            if block in ranges:
                lo, hi = np.minimum(ranges[block][0], lo), np.maximum(ranges[block][1], hi)
            ranges[int(block)] = [lo, hi]
    return {block: (lo, hi) for block, (lo, hi) in ranges.items()}


@dataclass
class _SceneGrid:
    """The global grid over the scene's region, in the partition's grid frame (z up), world units."""

    lo: np.ndarray  # [3] the region's low corner
    hi: np.ndarray  # [3] its high corner
    voxel: float
    origin: np.ndarray  # [3] the grid's point (0, 0, 0)
    dims: np.ndarray  # [3] int64 grid points per axis
    rotation: np.ndarray  # [3, 3] world → grid frame


def extract_mesh(run_dir: Path, out: Path, settings: MeshSettings = MeshSettings(), block_meshes: bool = False,
                 device: torch.device | None = None, threshold: float | None = None) -> dict:
    """Fuse, extract and write ``out`` (binary PLY, vertex colours); returns the summary also written to
    ``out`` with suffix ``.json``. ``block_meshes``: also write each block's piece as ``<out stem>_block<n>.ply``.
    When the scene has a ground-truth mesh (``mgs synth`` writes ``mesh.ply``), the summary scores the mesh
    against it (``momentum_gs.eval.geometry``) at ``threshold`` world units (default 2 voxels)."""
    out = _checked_request(settings, out)  # before the run loads
    started = time.perf_counter()
    cfg, model, step = load_run(run_dir, device)
    # read first, so a bad georef.json (GPS from `mgs sfm`), scene.json or ground truth stops it before the fusion
    georef = read_georef(Path(cfg.data.path))
    truth = read_ground_truth(Path(cfg.data.path))
    scene = load_scene(cfg.data)
    partition = Partition.load(cfg.blocks.partition) if cfg.blocks.partition else None
    grid = _scene_grid(model, partition, settings)
    pieces, per_block = _fuse_blocks(model, cfg, scene.train, partition, grid, settings)
    mesh, sidecar = _write_meshes(out, pieces, grid, settings, georef, block_meshes)
    vertices, faces, _ = mesh
    summary = {"run": str(Path(run_dir).resolve()), "step": step, "mesh": str(out.resolve()), "voxel": grid.voxel,
               "trunc": settings.trunc_voxels * grid.voxel, "depth": settings.depth,
               "region": [grid.lo.tolist(), grid.hi.tolist()], "vertices": len(vertices), "faces": len(faces),
               "blocks": per_block, "seconds": round(time.perf_counter() - started, 2),
               "georef": str(sidecar) if sidecar else None}
    if truth is not None:
        summary["ground_truth"] = {"truth": str(truth[0]), **score_against(vertices, faces, truth[1][:2],
                                                                           threshold or 2 * grid.voxel, partition)}
    _write_picture(out.with_suffix(".png"), scene.train, grid, [mesh] + ([truth[1]] if truth is not None else []))
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def _checked_request(settings: MeshSettings, out: Path) -> Path:
    """``out`` as a Path, once the settings are in range and ``out`` names a PLY file; a UserError otherwise."""
    if settings.depth not in DEPTHS:
        raise UserError(f"unknown depth {settings.depth!r} for the mesh; choose one of {', '.join(DEPTHS)}")
    check_settings(settings, MESH, {"voxel": "--voxel", "trunc_voxels": "--trunc"})
    out = Path(out)
    if out.suffix.lower() != ".ply":
        raise UserError(f"the mesh is written as PLY: give --out a name ending in .ply, not {out.name}")
    return out


def _scene_grid(model, partition, settings: MeshSettings) -> _SceneGrid:
    """The global grid over the anchors' region, one voxel beyond it on every side; a UserError when there is no
    region or the grid would be too large."""
    rotation = partition.rotation if partition is not None else np.eye(3)
    positions = _anchor_positions(model)
    lo, hi = region_of(positions, rotation, settings.region_percentile)
    voxel = settings.voxel or default_voxel(lo, hi)
    if not voxel > 0:
        raise UserError("the anchors span no horizontal extent, so there is no default voxel; give --voxel")
    with np.errstate(over="ignore"):  # counted in float64 before any cast: a tiny voxel overflows int64
        points = np.prod((hi - lo) / voxel + 4)
    if not points <= MAX_GRID_POINTS:
        raise UserError(f"voxel {voxel:.4g} makes a grid of {points:.3g} points over the scene's region (sides "
                        f"{np.round(hi - lo, 4).tolist()} world units); give a larger --voxel (the default here is "
                        f"{default_voxel(lo, hi):.4g})")
    origin = np.floor(lo / voxel) * voxel - voxel
    dims = np.ceil((hi - origin) / voxel).astype(np.int64) + 2
    if (dims < 2).any():
        raise UserError(f"the scene's region {lo.tolist()}…{hi.tolist()} is empty; is the run trained?")
    return _SceneGrid(lo, hi, voxel, origin, dims, rotation)


def _fuse_blocks(model, cfg, cameras: list, partition, grid: _SceneGrid, settings: MeshSettings
                 ) -> tuple[dict[int, Surface], list[dict]]:
    """({block: its piece of the surface}, one summary entry per block), block by block, with one progress bar
    over every view fused in every block (a one-block mesh is sized after its first views too)."""
    ranges = block_ranges(partition, grid.origin, grid.voxel, grid.dims, grid.rotation)
    num_blocks = partition.num_blocks if partition is not None else 1
    renders = _RenderCache(model, cfg.render, settings, model.device)
    grids = {block: _block_grid(block, *ranges[block], grid, renders.device) for block in ranges}
    views = {block: _block_views(block, block_grid, cameras, cfg.blocks.partition)
             for block, (block_grid, _) in grids.items()}
    ticks = sized(range(sum(map(len, views.values()))), sum(map(len, views.values())), "mesh", "view",
                  "a larger --voxel")
    pieces, per_block = {}, []
    for block in range(num_blocks):
        if block not in ranges:
            per_block.append({"block": block, "views": 0, "vertices": 0, "faces": 0, "note": "outside the region"})
            continue
        block_grid, first = grids[block]
        rendered = (renders.get(cameras[i]) for i, _ in zip(views[block], ticks))  # each view ticks the bar
        piece = _mesh_block(block, block_grid, first, grid, rendered, partition, settings)
        pieces[block] = piece
        per_block.append({"block": block, "views": len(views[block]), "grid_points": int(np.prod(block_grid.shape)),
                          "vertices": len(piece.vertices), "faces": len(piece.faces)})
    for _ in ticks:  # closes the bar
        pass
    return pieces, per_block


def _block_grid(block: int, first: np.ndarray, last: np.ndarray, grid: _SceneGrid, device) -> tuple[Grid, np.ndarray]:
    """(the grid of the cubes ``block`` owns, from ``first`` to ``last``, its first cube's index)."""
    voxel = grid.voxel
    shape = tuple(int(n) for n in last - first + 2)  # the owned cubes' corner points
    if np.prod(shape) > MAX_BLOCK_POINTS:
        raise UserError(f"block {block} would need {np.prod(shape):,} grid points at voxel {voxel:.4g}; "
                        f"give a larger --voxel (at least {voxel * (np.prod(shape) / MAX_BLOCK_POINTS) ** (1 / 3):.3g})")
    return Grid(torch.as_tensor(grid.origin + voxel * first, dtype=torch.float64, device=device), voxel, shape,
                torch.as_tensor(grid.rotation, dtype=torch.float64, device=device)), first


def _block_views(block: int, block_grid: Grid, cameras: list, partition_path: str) -> list[int]:
    """The training views that see ``block``'s grid; one line when none does."""
    corners = _box_corners(block_grid).cpu()
    views = [i for i, cam in enumerate(cameras) if sees_box(cam.K, cam.world_to_cam, cam.width, cam.height, corners)]
    if not views:
        raise UserError(f"block {block}: no training view sees its cell; check the partition "
                        f"({partition_path}) against the scene")
    return views


def _mesh_block(block: int, block_grid: Grid, first: np.ndarray, grid: _SceneGrid, views, partition,
                settings: MeshSettings) -> Surface:
    """The surface of the cubes ``block`` owns, fused from ``views`` (depth views, taken one at a time)."""
    origin, voxel = grid.origin, grid.voxel
    tsdf, weight, color = fuse(block_grid, views, settings.trunc_voxels * voxel)
    cubes = tuple(n - 1 for n in block_grid.shape)
    owned = (np.ones(cubes, bool) if partition is None else
             partition.block_of(_cube_centres(origin, voxel, first, cubes, grid.rotation)).reshape(cubes) == block)
    return marching_tetrahedra(tsdf.cpu().numpy(), weight.cpu().numpy() > 0, owned,
                               np.asarray(origin + voxel * first), voxel, first, grid.dims,
                               color.cpu().numpy().astype(np.float64),
                               drop_jumps=settings.trunc_voxels >= JUMP_SAFE_TRUNC)


def _write_meshes(out: Path, pieces: dict[int, Surface], grid: _SceneGrid, settings: MeshSettings, georef,
                  block_meshes: bool) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], Path | None]:
    """Stitch the pieces and write the mesh (with ``block_meshes``, each block's piece too) and its georeference
    side-car; returns the world-frame (vertices, faces, colours) and the side-car's path (None without one)."""
    surface = stitch(list(pieces.values()))
    if len(surface.faces) == 0:
        raise UserError(f"the fused depths give no surface at voxel {grid.voxel:.4g} (truncation "
                        f"{settings.trunc_voxels * grid.voxel:.4g}); try a voxel nearer "
                        f"{default_voxel(grid.lo, grid.hi):.4g} (the default)")
    for block, piece in pieces.items():
        if block_meshes and len(piece.faces):  # only once every block has made its piece: no half a set
            write_mesh(out.with_name(f"{out.stem}_block{block}.ply"), *_world(piece, grid.rotation))
    vertices, faces, colors = _world(surface, grid.rotation)
    write_mesh(out, vertices, faces, colors, comments=[ply_comment(georef)] if georef else [])
    return (vertices, faces, colors), write_sidecar(out, georef, vertices)


def read_ground_truth(data_dir: Path) -> tuple[Path, tuple] | None:
    """(the path, (vertices, faces, colours)) of the scene's ground-truth mesh (:func:`ground_truth_mesh`), or
    None; a UserError for one whose vertices are not all finite (it would score every mesh infinitely far)."""
    if (path := ground_truth_mesh(data_dir)) is None:
        return None
    truth = read_mesh(path)
    bad = int((~np.isfinite(truth[0]).all(1)).sum())
    if bad:
        raise UserError(f"the ground-truth mesh {path} has {bad} vertices that are not finite (NaN or infinite); "
                        f"make the scene again with mgs synth, or remove the mesh from {data_dir / SCENE_INFO_NAME}")
    return path, truth


def _write_picture(path: Path, cameras: list, grid: _SceneGrid, meshes: list[tuple]) -> None:
    """The meshes side by side, shaded, from the training camera that looks nearest the region's centre."""
    camera = overview_camera(cameras, (grid.lo + grid.hi) / 2 @ grid.rotation)
    picture = np.concatenate([_picture(*mesh, camera) for mesh in meshes], axis=1)
    atomic_write_bytes(path, cv2.imencode(".png", picture[..., ::-1])[1].tobytes())


PICTURE_WIDTH = 960


def overview_camera(cameras: list, centre: np.ndarray):
    """The training camera whose optical axis passes nearest the world point ``centre``."""
    def miss(cam) -> float:
        w2c = cam.world_to_cam.double().numpy()
        p = w2c[:3, :3] @ centre + w2c[:3, 3]
        return float(np.hypot(p[0], p[1]) / max(p[2], 1e-9)) if p[2] > 0 else np.inf

    return min(cameras, key=miss)


def _picture(vertices, faces, colors, camera) -> np.ndarray:
    """[H, W, 3] uint8 shaded picture of a mesh from ``camera``, scaled to ``PICTURE_WIDTH`` pixels wide."""
    scale = PICTURE_WIDTH / camera.width
    K = camera.K.double().numpy().copy()
    K[:2] *= scale
    return shade_mesh(vertices, faces, colors, K, camera.world_to_cam.double().numpy(), PICTURE_WIDTH,
                      round(camera.height * scale))


def _world(surface: Surface, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices in world coordinates, faces, uint8 colours) of a grid-frame surface."""
    colors = None if surface.colors is None else np.clip(np.round(surface.colors * 255), 0, 255).astype(np.uint8)
    return surface.vertices @ rotation, surface.faces, colors


def _box_corners(grid: Grid) -> torch.Tensor:
    """[8, 3] world corners of a grid's box."""
    extent = torch.tensor(grid.shape, dtype=torch.float64, device=grid.origin.device) - 1
    bits = torch.as_tensor(CUBE_CORNERS, dtype=torch.float64, device=grid.origin.device)
    return (grid.origin + grid.voxel * bits * extent) @ grid.rotation


def _anchor_positions(model) -> np.ndarray:
    """[N, 3] world positions of every anchor of a merged model (one anchor set or several parts)."""
    sets = [model.anchors] if hasattr(model, "anchors") else list(model.anchor_sets)
    positions = np.concatenate([a.positions.detach().cpu().numpy() for a in sets]).astype(np.float64)
    if len(positions) == 0:
        raise UserError("the run's model has no anchors: nothing to mesh")
    return positions


class _RenderCache:
    """Depth and colour renders of training views, each made once while they fit in ``RENDER_CACHE_BYTES``."""

    def __init__(self, model, render_cfg, settings: MeshSettings, device: torch.device):
        self.model, self.render_cfg, self.settings, self.device = model, render_cfg, settings, device
        self.kept: OrderedDict[str, DepthView] = OrderedDict()
        self.bytes = 0

    @torch.no_grad()
    def get(self, camera) -> DepthView:
        if camera.name in self.kept:
            self.kept.move_to_end(camera.name)
            return self.kept[camera.name]
        camera = camera.to(self.device)
        median = self.settings.depth == "median"
        out = self.model.render(camera, self.render_cfg, appearance_index=camera.uid, backend="builtin",
                                extras=("median_depth",) if median else ("depth",)).output
        depth = out.median_depth if median else out.normalised_depth()
        depth = torch.where(out.alpha >= self.settings.min_alpha, depth, 0.0)[..., 0]
        view = DepthView(depth, out.image.clamp(0, 1), camera.K.to(self.device), camera.world_to_cam.to(self.device))
        self.kept[camera.name] = view
        self.bytes += depth.numel() * 16
        while self.bytes > RENDER_CACHE_BYTES and len(self.kept) > 1:
            _, dropped = self.kept.popitem(last=False)
            self.bytes -= dropped.depth.numel() * 16
        return view


def ground_truth_mesh(data_dir: Path) -> Path | None:
    """The scene's ground-truth mesh (``mesh.ply`` named in ``scene.json`` by ``mgs synth``, a file inside the
    scene's folder: :mod:`momentum_gs.data.scene_info`), or None when the scene names none or it is gone."""
    info = read_scene_info(data_dir)
    name = info.get("mesh") if info else None
    return data_dir / name if name and (data_dir / name).is_file() else None


def score_against(vertices: np.ndarray, faces: np.ndarray, truth: tuple[np.ndarray, np.ndarray], threshold: float,
                  partition, count: int | None = None) -> dict:
    """Accuracy, completeness, Chamfer and F-score of a mesh against the ground truth's (vertices, faces), for
    the whole scene and per block (the samples the partition puts in the block), both within the ground
    truth's xy extent: beyond it nothing says what is right."""
    gt_vertices, gt_faces = truth
    lo, hi = gt_vertices[:, :2].min(0), gt_vertices[:, :2].max(0)
    count = count or SCORE_SAMPLES

    def inside(points: np.ndarray) -> np.ndarray:
        return np.all((points[:, :2] >= lo) & (points[:, :2] <= hi), axis=1)

    scores = {"threshold": threshold, "samples": count,
              "scene": mesh_scores(vertices, faces, gt_vertices, gt_faces, threshold, count, region=inside)}
    if partition is not None and partition.num_blocks > 1:
        scores["blocks"] = [mesh_scores(vertices, faces, gt_vertices, gt_faces, threshold, count,
                                        region=lambda p, b=block: inside(p) & (partition.block_of(p) == b))
                            for block in range(partition.num_blocks)]
    return scores


def summary_lines(summary: dict) -> list[str]:
    """What ``mgs mesh`` prints: the mesh, its size and time, and its scores when a ground truth exists."""
    lines = [f"mesh: {summary['mesh']} ({summary['vertices']:,} vertices, {summary['faces']:,} triangles; voxel "
             f"{summary['voxel']:.4g}, {summary['depth']} depth, {summary['seconds']:.0f} s)"]
    for block in summary["blocks"]:
        lines.append(f"  block {block['block']}: {block['faces']:,} triangles from {block['views']} views"
                     + (f" ({block['note']})" if "note" in block else ""))
    truth = summary.get("ground_truth")
    if truth:
        s = truth["scene"]
        lines.append(f"against {truth['truth']} at {truth['threshold']:.3g}: F-score {s['fscore']:.3f} (precision "
                     f"{s['precision']:.3f}, recall {s['recall']:.3f}), Chamfer {s['chamfer']:.4g} (accuracy "
                     f"{s['accuracy']:.4g}, completeness {s['completeness']:.4g})")
    if summary.get("georef"):
        lines.append(f"georeference (WGS84 origin of the ENU frame, corners): {summary['georef']}")
    lines.append(f"summary: {Path(summary['mesh']).with_suffix('.json')}")
    return lines
