"""Levels of detail of baked Gaussians: a tree of tiles whose parents hold coarser versions of their children.

A block's Gaussians are cut by a k-d tree (the median of the box's longest axis) until every leaf holds at most
``max_per_tile`` Gaussians. A parent holds a coarser copy of everything below it, at most ``max_per_tile``
Gaussians, made by merging its children's content: Gaussians that fall in one cell of a grid sized for the
budget are replaced by one whose mean and covariance are the weighted mean and covariance of the group
(moment matching), weights opacity × surface (the product of the two largest scales), the colour
coefficients averaged with the same weights, and the opacity chosen so that the merged Gaussian covers about
what the group covered (its summed opacity × surface over the merged surface, capped at 1).

A tile's ``geometric_error`` is the error, in world units, of drawing it instead of its children: the 90th
percentile over its children's Gaussians of how far each lies from the merged Gaussian that replaces it
(centre distance plus the change of its largest scale). A leaf's is 0. 3D Tiles viewers compare it, seen
from the camera, with a screen-space error in pixels to decide when to open a tile's children.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from momentum_gs.export.bake import StandardGaussians


@dataclass
class Tile:
    """One tile of a level-of-detail tree.

    gaussians: its content (on the CPU); box: [2, 3] min and max corners, world units, holding the 3-sigma
    extent of its content and every descendant's; geometric_error: world units, 0 for a leaf; children: the
    finer tiles it is replaced by; name: a file-name-safe id unique in the tree (e.g. ``b3-0-1``)."""

    gaussians: StandardGaussians
    box: np.ndarray
    geometric_error: float
    name: str
    children: list["Tile"] = field(default_factory=list)

    def walk(self):
        """This tile and every descendant, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()
