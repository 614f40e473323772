"""``mgs mesh``: a coloured triangle mesh of a trained scene, block by block (docs/surfaces.md).

The training views are rendered with their depth (the median depth by default: the surface where a pixel's
transmittance crosses one half) and fused into a TSDF on one global grid over the scene
(:mod:`momentum_gs.mesh.scene_grid`), in the partition's grid frame (z up). Each block fuses and extracts only
the grid cubes of its own cell (:mod:`momentum_gs.mesh.blocks`); the pieces share the global grid's vertex names
and are stitched into one mesh without seams (:mod:`momentum_gs.mesh.marching`). Beside the mesh go a summary
(``.json``), an overview picture (``.png``, :mod:`momentum_gs.mesh.picture`) and, for a scene with a ground
truth, its scores (:mod:`momentum_gs.eval.geometry`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.data.georef import ply_comment, read_georef, write_sidecar
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.geometry import read_ground_truth, score_against
from momentum_gs.io.atomic import atomic_write_bytes
from momentum_gs.io.folders import check_replaceable, written_whole
from momentum_gs.io.mesh import write_mesh
from momentum_gs.mesh.blocks import fuse_blocks
from momentum_gs.mesh.marching import Surface, stitch
from momentum_gs.mesh.picture import write_overview
from momentum_gs.mesh.scene_grid import SceneGrid, default_voxel, grid_over, region_of
from momentum_gs.mesh.settings import DEPTHS, MeshSettings
from momentum_gs.partition.partition import Partition
from momentum_gs.ranges import MESH, check_settings
from momentum_gs.trained import load_run


def extract_mesh(run_dir: Path, out: Path, settings: MeshSettings = MeshSettings(), block_meshes: bool = False,
                 device: torch.device | None = None, threshold: float | None = None) -> dict:
    """Fuse, extract and write ``out`` (binary PLY, vertex colours); returns the summary also written to
    ``out`` with suffix ``.json``. ``block_meshes``: also write each block's piece as ``block<n>.ply`` in the folder
    ``<out stem>_blocks`` (:func:`block_folder`), written whole.
    When the scene has a ground-truth mesh (``mgs synth`` writes ``mesh.ply``), the summary scores the mesh
    against it (``momentum_gs.eval.geometry``) at ``threshold`` world units (default 2 voxels)."""
    out = _checked_request(settings, out)  # before the run loads
    if block_meshes:
        check_replaceable(block_folder(out), "the blocks' meshes")
    started = time.perf_counter()
    cfg, model, step = load_run(run_dir, device)
    # A scene from `mgs sfm` with GPS has a georeference, said with the mesh. It is read first, like the ground
    # truth, so that a bad georef.json, scene.json or ground-truth mesh stops the command before the fusion.
    georef = read_georef(Path(cfg.data.path))
    truth = read_ground_truth(Path(cfg.data.path))
    scene = load_scene(cfg.data)
    partition = Partition.load(cfg.blocks.partition) if cfg.blocks.partition else None
    grid = _scene_grid(model, partition, settings)
    pieces, per_block = fuse_blocks(model, cfg, scene.train, partition, grid, settings)
    mesh, sidecar = _write_meshes(out, pieces, grid, settings, georef, block_meshes)
    vertices, faces, _ = mesh
    summary = {"run": str(Path(run_dir).resolve()), "step": step, "mesh": str(out.resolve()), "voxel": grid.voxel,
               "trunc": settings.trunc_voxels * grid.voxel, "depth": settings.depth,
               "region": [grid.lo.tolist(), grid.hi.tolist()], "vertices": len(vertices), "faces": len(faces),
               "blocks": per_block, "seconds": round(time.perf_counter() - started, 2),
               "georef": str(sidecar) if sidecar else None,
               "block_meshes": str(block_folder(out).resolve()) if block_meshes else None}
    pictured = [mesh]
    if truth is not None:
        truth_path, truth_mesh = truth
        scores = score_against(vertices, faces, truth_mesh[:2], threshold or 2 * grid.voxel, partition)
        summary["ground_truth"] = {"truth": str(truth_path), **scores}
        pictured.append(truth_mesh)
    write_overview(out.with_suffix(".png"), scene.train, grid.centre(), pictured)
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


def _scene_grid(model, partition, settings: MeshSettings) -> SceneGrid:
    """The global grid over the anchors' region, one voxel beyond it on every side; a UserError when there is no
    region or the grid would be too large."""
    rotation = partition.rotation if partition is not None else np.eye(3)
    lo, hi = region_of(_anchor_positions(model), rotation, settings.region_percentile)
    voxel = settings.voxel or default_voxel(lo, hi)
    if not voxel > 0:
        raise UserError("the anchors span no horizontal extent, so there is no default voxel; give --voxel")
    return grid_over(lo, hi, voxel, rotation)


def _anchor_positions(model) -> np.ndarray:
    """[N, 3] world positions of every anchor of a merged model (one anchor set or several parts)."""
    sets = [model.anchors] if hasattr(model, "anchors") else list(model.anchor_sets)
    positions = np.concatenate([a.positions.detach().cpu().numpy() for a in sets]).astype(np.float64)
    if len(positions) == 0:
        raise UserError("the run's model has no anchors: nothing to mesh")
    return positions


def _write_meshes(out: Path, pieces: dict[int, Surface], grid: SceneGrid, settings: MeshSettings, georef,
                  block_meshes: bool) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], Path | None]:
    """Stitch the pieces and write the mesh (with ``block_meshes``, each block's piece too) and its georeference
    side-car; returns the world-frame (vertices, faces, colours) and the side-car's path (None without one)."""
    surface = stitch(list(pieces.values()))
    if len(surface.faces) == 0:
        raise UserError(f"the fused depths give no surface at voxel {grid.voxel:.4g} (truncation "
                        f"{settings.trunc_voxels * grid.voxel:.4g}); try a voxel nearer "
                        f"{default_voxel(grid.lo, grid.hi):.4g} (the default)")
    if block_meshes:  # only once every block has made its piece, and the folder whole: no half a set, no stale
        pieces_made = {f"block{block}.ply": piece for block, piece in pieces.items() if len(piece.faces)}
        with written_whole(block_folder(out), "the blocks' meshes", set(pieces_made)) as work:
            for name, piece in pieces_made.items():
                write_mesh(work / name, *_world(piece, grid.rotation))
    vertices, faces, colors = _world(surface, grid.rotation)
    write_mesh(out, vertices, faces, colors, comments=[ply_comment(georef)] if georef else [])
    return (vertices, faces, colors), write_sidecar(out, georef, vertices)


def block_folder(out: Path) -> Path:
    """Where ``mgs mesh --blocks`` writes the blocks' pieces: the folder ``<out stem>_blocks`` beside ``out``."""
    return out.with_name(f"{out.stem}_blocks")


def _world(surface: Surface, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices in world coordinates, faces, uint8 colours) of a grid-frame surface."""
    colors = None if surface.colors is None else np.clip(np.round(surface.colors * 255), 0, 255).astype(np.uint8)
    return surface.vertices @ rotation, surface.faces, colors


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
    if summary.get("block_meshes"):
        lines.append(f"the blocks' pieces: {summary['block_meshes']}")
    if summary.get("georef"):
        lines.append(f"georeference (WGS84 origin of the ENU frame, corners): {summary['georef']}")
    lines.append(f"summary: {Path(summary['mesh']).with_suffix('.json')}")
    return lines
