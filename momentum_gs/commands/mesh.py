"""``mgs mesh``: a coloured triangle mesh of a trained run (rendered depths fused into a TSDF block by block)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from momentum_gs.commands.common import add_device, device_of, use_run_settings
from momentum_gs.mesh.extract import extract_mesh, summary_lines
from momentum_gs.mesh.settings import DepthKind, MeshSettings
from momentum_gs.ranges import LENGTH, MESH, add_number

DEFAULT = MeshSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs mesh`` (defaults: :class:`~momentum_gs.mesh.settings.MeshSettings`'s)."""
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True, help="the mesh, .ply (a summary .json is written beside it)")
    add_number(parser, "--voxel", kind=float, allowed=MESH["voxel"], default=DEFAULT.voxel,
               help="TSDF voxel in world units (default: the region's longest horizontal side / 400)")
    add_number(parser, "--trunc", kind=float, allowed=MESH["trunc_voxels"], default=DEFAULT.trunc_voxels,
               help=f"TSDF truncation in voxels (default {DEFAULT.trunc_voxels:g})")
    parser.add_argument("--depth", default=DEFAULT.depth, choices=get_args(DepthKind),
                        help="which rendered depth to fuse: median (where transmittance crosses 0.5) or mean")
    parser.add_argument("--blocks", action="store_true", help="also write each block's piece as block<n>.ply in the folder OUT_blocks (OUT without .ply)")
    add_number(parser, "--threshold", kind=float, allowed=LENGTH,
               help="F-score distance against a ground-truth mesh, world units (default 2 voxels)")
    add_device(parser, "render and fuse")


def run(args: argparse.Namespace) -> None:
    """Make the mesh and print the summary."""
    use_run_settings(args.run_dir, device_of(args))
    settings = MeshSettings(voxel=args.voxel, trunc_voxels=args.trunc, depth=args.depth)
    summary = extract_mesh(Path(args.run_dir), Path(args.out), settings, block_meshes=args.blocks,
                           device=device_of(args), threshold=args.threshold)
    print("\n".join(summary_lines(summary)))
