"""The maps of a synthetic scene against its truth: the city's own orthophoto and heights (vertical rays cast into
the ray-cast city, :func:`~momentum_gs.data.synthetic.render.top_down`) on the same grid.

Scores, over the pixels both draw (alpha ≥ ``SOLID``, the city's ground ring included): the orthophoto's PSNR, its
shift against the truth by phase correlation (pixels, x and y), and the DSM's RMSE and median absolute error in
metres.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from momentum_gs.data.synthetic import city_of
from momentum_gs.data.synthetic.render import render, top_down
from momentum_gs.maps.ortho import NODATA, SOLID, MapGrid
from momentum_gs.model.standard import SH_C0, StandardGaussians

SUPERSAMPLE = 3  # rays per pixel along each axis for the truth's colour
HIDDEN = 0.01  # a true surface point is hidden from a photo whose true depth at its pixel is this share nearer


def laid_on_the_city(city, metres: float, grid: MapGrid) -> StandardGaussians:
    """Flat, nearly opaque Gaussians on the city's surfaces with their colours, two a pixel of ``grid`` each way
    (from vertical rays; model units): what perfect geometry gives a map, no training between."""
    fine = 0.5 * grid.gsd
    x, y = np.meshgrid(grid.x0 + (np.arange(2 * grid.width) + 0.5) * fine,
                       grid.y0 - (np.arange(2 * grid.height) + 0.5) * fine)
    xy = np.column_stack([x.ravel(), y.ravel()])
    colour, height = top_down(city, xy * metres, city.bounds()[1, 2] + 10.0)
    n = len(xy)
    return StandardGaussians(torch.tensor(np.column_stack([xy, height / metres])),
                             torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4).contiguous(),
                             torch.tensor([[0.6 * fine, 0.6 * fine, 1e-4 / metres]]).double().expand(n, 3).contiguous(),
                             torch.full((n,), 0.99, dtype=torch.float64),
                             torch.tensor((colour - 0.5) / SH_C0)[:, None, :])


def cell_centres(grid: MapGrid) -> np.ndarray:
    """[H * W, 2] map (x, y) of the centres of ``grid``'s cells, row by row (model units)."""
    x, y = np.meshgrid(grid.x0 + (np.arange(grid.width) + 0.5) * grid.gsd,
                       grid.y0 - (np.arange(grid.height) + 0.5) * grid.gsd)
    return np.column_stack([x.ravel(), y.ravel()])


def true_maps(scene_dir: Path, grid: MapGrid) -> tuple[np.ndarray, np.ndarray, float]:
    """The truth on ``grid`` (the scene's own frame, model units): [H, W, 3] colour in [0, 1], [H, W] heights in
    metres, and the scene's metres per unit."""
    city, metres = city_of(scene_dir)
    s = SUPERSAMPLE
    cols = (np.arange(grid.width * s) + 0.5) / s
    rows = (np.arange(grid.height * s) + 0.5) / s
    x, y = np.meshgrid(grid.x0 + cols * grid.gsd, grid.y0 - rows * grid.gsd)
    xy = np.column_stack([x.ravel(), y.ravel()]) * metres
    colour, _ = top_down(city, xy, city.bounds()[1, 2] + 10.0)
    colour = colour.reshape(grid.height, s, grid.width, s, 3).mean(axis=(1, 3))
    _, heights = top_down(city, cell_centres(grid) * metres, city.bounds()[1, 2] + 10.0, shadows=False)
    return colour, heights.reshape(grid.height, grid.width), metres


def score(rgba: np.ndarray, dsm: np.ndarray, truth_colour: np.ndarray, truth_height: np.ndarray,
          metres: float) -> dict:
    """The scores of the module notes; ``dsm`` in model units (the scene's own frame)."""
    drawn = (rgba[..., 3] >= round(255 * SOLID)) & (dsm != NODATA)
    colour = rgba[..., :3].astype(np.float64) / 255
    error = ((colour - truth_colour)[drawn] ** 2).mean()
    grey = lambda image: np.where(drawn, image.mean(-1), 0.0).astype(np.float64)  # noqa: E731
    window = cv2.createHanningWindow(grey(colour).shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(grey(truth_colour), grey(colour), window)
    miss = (dsm.astype(np.float64) * metres - truth_height)[drawn]
    return {"pixels": int(drawn.sum()), "covered": float(drawn.mean()), "psnr": float(-10 * np.log10(error)),
            "shift_px": [float(dx), float(dy)], "dsm_rmse_m": float(np.sqrt((miss ** 2).mean())),
            "dsm_median_abs_m": float(np.median(np.abs(miss)))}


def photos_seeing(city, metres: float, grid: MapGrid, heights: np.ndarray, cameras: list) -> np.ndarray:
    """[H, W] int32: for each cell of ``grid``, the photos of ``cameras`` (the scene's frame, model units) that see
    its true surface point, the cell's centre at its true height (``heights``, metres): it lies in the photo's frame
    and no nearer surface of the city, ray-cast from the photo, hides it (the photo's true depth at the point's pixel
    lies no more than :data:`HIDDEN` of the distance, and 5 cm, nearer than the point)."""
    points = np.column_stack([cell_centres(grid) * metres, heights.ravel()])
    count = np.zeros(points.shape[0], np.int32)
    for camera in cameras:
        world_to_cam = camera.world_to_cam.double().cpu().numpy().copy()
        world_to_cam[:3, 3] *= metres  # the city is in metres
        K = camera.K.double().cpu().numpy()
        _, depth = render(city, K, world_to_cam, camera.width, camera.height, supersample=1, shadows=False,
                          with_depth=True)
        local = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        z = local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = K[0, 0] * local[:, 0] / z + K[0, 2], K[1, 1] * local[:, 1] / z + K[1, 2]
        inside = (z > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        rows, cols = np.clip(v[inside], 0, camera.height - 1), np.clip(u[inside], 0, camera.width - 1)
        at = depth[rows.astype(int), cols.astype(int)]
        seen = np.flatnonzero(inside)[z[inside] <= at * (1 + HIDDEN) + 0.05]
        count[seen] += 1
    return count.reshape(grid.height, grid.width)
