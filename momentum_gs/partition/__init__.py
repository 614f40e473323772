"""Partition: scene contraction, the block grid, points and cameras of each block, the automatic grid, maps."""

from momentum_gs.partition.assign import assign_cameras, assign_points, make_partition, view_coverage
from momentum_gs.partition.auto import auto_box, auto_partition, balanced_edges, choose_grid, quantile_cuts
from momentum_gs.partition.contraction import contract, uncontract
from momentum_gs.partition.draw import draw_partition
from momentum_gs.data.up import estimate_up
from momentum_gs.partition.frame import up_rotation
from momentum_gs.partition.partition import Partition, uniform_edges

__all__ = [
    "Partition",
    "assign_cameras",
    "assign_points",
    "auto_box",
    "auto_partition",
    "balanced_edges",
    "choose_grid",
    "contract",
    "draw_partition",
    "estimate_up",
    "load_partition_for",
    "make_partition",
    "partition_main",
    "quantile_cuts",
    "uncontract",
    "uniform_edges",
    "up_rotation",
    "view_coverage",
]
