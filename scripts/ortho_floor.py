"""The DSM error of perfect geometry: flat Gaussians laid on a synthetic city's true surfaces (from vertical rays
on a grid twice as fine as the map's, with their colours), splatted onto maps of several pixel sizes by
``mgs ortho``'s renderer and scored against the truth as ``scripts/ortho_check.py`` scores a trained run. What
no training can beat: the rasterizer's low-pass widens what stands up by about half a pixel, so roof and tree edges
miss by their height there.

    python scripts/ortho_floor.py SCENE [--pixels 1.0 0.5 0.1655] [--side 80] [--json OUT.json]

SCENE is a synthetic scene (``mgs synth city`` or ``make_synthetic_scene``); the maps are squares of ``--side``
metres around the middle of its SfM points; pixel sizes in metres.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.config import DataConfig  # noqa: E402
from momentum_gs.data import map_frame as frames  # noqa: E402
from momentum_gs.data.scene import load_scene  # noqa: E402
from momentum_gs.data.synthetic import city_of  # noqa: E402
from momentum_gs.maps.ortho import MapGrid, splat_map  # noqa: E402
from tests.helpers.map_truth import laid_on_the_city, score, true_maps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path)
    parser.add_argument("--pixels", type=float, nargs="+", default=[1.0, 0.5, 0.1655])
    parser.add_argument("--side", type=float, default=80.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    city, metres = city_of(args.scene)
    points = load_scene(DataConfig(path=str(args.scene), test_every=0), images=False).points
    cx, cy = np.median(points[:, :2], axis=0)
    frame = frames.own_frame(np.array([0.0, 0.0, 1.0]), "z")
    rows = []
    for pixel in args.pixels:
        gsd, side = pixel / metres, args.side / metres
        size = int(round(side / gsd))
        grid = MapGrid(cx - side / 2, cy + side / 2, gsd, size, size)
        gaussians = laid_on_the_city(city, metres, grid)
        colour, heights, _ = true_maps(args.scene, grid)
        for depth in ("median", "mean"):
            rasters = splat_map(gaussians, frame, grid, show_progress=False, depth=depth)
            found = score(rasters.rgba, rasters.dsm, colour, heights, metres)
            row = {"pixel_m": pixel, "size": size, "depth": depth, "dsm_rmse_m": found["dsm_rmse_m"],
                   "dsm_rmse_px": found["dsm_rmse_m"] / pixel, "dsm_median_abs_m": found["dsm_median_abs_m"],
                   "psnr": found["psnr"]}
            rows.append(row)
            print(f"{pixel:g} m pixels, {size}² px, {depth} depth: DSM RMSE {row['dsm_rmse_m']:.2f} m "
                  f"({row['dsm_rmse_px']:.1f} px), median error {row['dsm_median_abs_m']:.3f} m", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
