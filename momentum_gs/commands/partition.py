"""``mgs partition``: split a scene into blocks; writes the partition file and its map."""

from __future__ import annotations

import argparse
from pathlib import Path

from momentum_gs.commands.common import use_run_settings
from momentum_gs.config import RANGES, load_config
from momentum_gs.errors import UserError
from momentum_gs.partition.run import check_coarse, partition_main
from momentum_gs.ranges import COORDINATE, MAX_BLOCKS, Range, add_number
from momentum_gs.trained import load_run

BLOCKS = Range(1, MAX_BLOCKS, why="a run trains 1 to 65536 blocks (its checkpoint's limit), and every block needs "
               "training cameras of its own")
GRID = Range(1, MAX_BLOCKS, why="cells along one axis: at least one, and a partition file holds at most 65536")
# 1 - SSIM between a camera's render with and without a block (partition.coarse).
SSIM_DROP = Range(0, 1, open_low=True, open_high=True, why="at 0 any change at all would put a camera in the block, "
                  "and 1 - SSIM reaches 1 only where the two renders are no longer correlated at all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs partition`` (defaults: the config's partition section)."""
    parser.add_argument("--data", required=True, help="scene folder")
    parser.add_argument("--out", required=True, help="partition file to write (.npz); the map goes beside it (.png)")
    add_number(parser, "--blocks", kind=int, allowed=BLOCKS,
               help="number of blocks (automatic box and balanced grid)")
    add_number(parser, "--grid", kind=int, allowed=GRID, nargs=3, metavar=("X", "Y", "Z"),
               help="block grid instead of --blocks")
    add_number(parser, "--box", kind=float, allowed=COORDINATE, nargs=6, metavar="V",
               help="scene box: xmin ymin zmin xmax ymax zmax")
    add_number(parser, "--margin", kind=float, allowed=RANGES["partition.margin"],
               help="extra points around a cell, fraction of its size (0.5)")
    add_number(parser, "--coverage", kind=float, allowed=RANGES["partition.coverage"],
               help="a camera joins a block owning at least this fraction of its view (0.1; 1 = centre only)")
    parser.add_argument("--uniform", action="store_true", help="uniform cells in contracted space (the reference)")
    parser.add_argument("--coarse", metavar="RUN", help="a trained run of the scene: cameras join a block when "
                        "removing its anchors changes their render (1 - SSIM > --ssim-threshold), as the reference")
    add_number(parser, "--ssim-threshold", kind=float, allowed=SSIM_DROP,
               default=0.05, help="with --coarse (reference: 0.03-0.05)")
    parser.add_argument("--cameras-from", metavar="NPY", help="the reference's data_partitions/block{n}_ssim{t}.npy: "
                        "take its camera assignment over (with the paper's --box and --grid, and --uniform)")
    parser.add_argument("--config", help="YAML config (a file, or the name of a shipped one, e.g. datasets/rubble): "
                        "its data section reads the scene, its partition section sets the defaults")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.downsample=4")


def run(args: argparse.Namespace) -> None:
    """Partition, print the summary and the next step."""
    cfg = load_config(args.config, args.overrides)
    cfg.data.path = args.data
    part = cfg.partition  # the config's settings, unless the command line gives them
    blocks = args.blocks or part.blocks or None
    grid = args.grid or (part.grid if any(part.grid) else None)
    box = args.box or (part.box if any(part.box) else None)
    if (blocks is None) == (grid is None) and box is None:
        raise UserError("give the number of blocks (--blocks N) or the grid (--grid X Y Z), "
                        "on the command line or as partition.blocks / partition.grid in the config")
    check_coarse(args.coarse is not None, args.cameras_from, args.ssim_threshold)  # before the run is loaded
    coarse = None
    if args.coarse is not None:
        use_run_settings(args.coarse)
        coarse_cfg, model, _ = load_run(Path(args.coarse))
        coarse = (model, coarse_cfg.render)
    print(partition_main(cfg.data, args.out, num_blocks=blocks, block_dim=grid,
                         box=None if box is None else (tuple(box[:3]), tuple(box[3:])),
                         margin=part.margin if args.margin is None else args.margin,
                         coverage_threshold=part.coverage if args.coverage is None else args.coverage,
                         balance=False if args.uniform else None, coarse=coarse,
                         ssim_threshold=args.ssim_threshold, camera_matrix=args.cameras_from))
    print(f"next: mgs train --config ablation/f_full8.yaml --data {cfg.data.path} --out RUN "
          f"blocks.partition={args.out}")
