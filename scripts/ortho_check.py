"""Score the maps of `mgs ortho` (RUN/maps, or --maps DIR).

    python scripts/ortho_check.py RUN [--maps DIR] [--json OUT] [--floor] [--seen]

A synthetic scene (`mgs synth`): the orthophoto against the city's true orthophoto (vertical rays into the ray-cast
city) on the same grid: PSNR, the shift by phase correlation (pixels), the DSM's RMSE and median error (metres),
over the whole map and under the cameras (the convex hull of the training cameras' centres), and where the maps
have `dsm_spread.tif`, the DSM's error under the cameras by its spread (pixels), and away from height steps where
the spread is at most 1, 2, 5 or 10 pixels, and where its support (the photos that see a surface at a height,
`dsm_support.tif`) is at least 2 to 6 photos and what the map vouches from: how far the heights the DSM vouches for
can be trusted. With --floor,
the same scores of perfect geometry on the same grid: flat Gaussians laid on the city's true surfaces, mapped by
the same renderer and despiked and guided as the maps were (tests/helpers/map_truth.py), what no training can
beat. With --seen, the DSM's error away from height steps over the pixels whose true surface at least 1, 2, 3, 5
or 8 training photos see (ray-cast into the city): what the photos can fix.
A georeferenced scene: each SfM point's colour against the orthophoto at its easting/northing, shifted by up to
4 pixels every quarter pixel: the shift that fits best (pixels; 0 is right); the DSM at each point against the
point's height (median absolute difference, metres); where the training kept every n-th point out of its SfM
depths (`geometry.sparse_depth_holdout`), the same for those points alone, which it never trained towards, and split
by the spread and the support at them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.config import load_config  # noqa: E402
from momentum_gs.data.georef import read_georef  # noqa: E402
from momentum_gs.data.map_frame import frame_of, own_frame  # noqa: E402
from momentum_gs.data.scene import load_scene  # noqa: E402
from momentum_gs.data.scene_info import read_scene_info  # noqa: E402
from momentum_gs.data.synthetic import city_of  # noqa: E402
from momentum_gs.data.sparse_depth import held_out  # noqa: E402
from momentum_gs.maps.despike import despike  # noqa: E402
from momentum_gs.maps.files import NO_SUPPORT, SUPPORT  # noqa: E402
from momentum_gs.maps.guide import guided_median  # noqa: E402
from momentum_gs.maps.ortho import NODATA, SOLID, MapGrid, splat_map  # noqa: E402
from momentum_gs.maps.solve import solved_heights  # noqa: E402
from momentum_gs.maps.spread import support_needed  # noqa: E402
from tests.helpers.map_truth import laid_on_the_city, photos_seeing, score, true_maps  # noqa: E402
from momentum_gs.trained import load_run  # noqa: E402

SHIFTS = np.arange(-4.0, 4.0 + 1e-9, 0.25)  # pixels tried along each axis


def read_maps(folder: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rgba [H, W, 4] uint8, dsm [H, W] float32, maps.json) of a maps folder."""
    import rasterio  # OpenCV's TIFF reader premultiplies the colour by the alpha

    summary = json.loads((folder / "maps.json").read_text())
    with rasterio.open(folder / "orthophoto.tif") as ortho, rasterio.open(folder / "dsm.tif") as surface:
        return ortho.read().transpose(1, 2, 0), surface.read(1), summary


def read_spread(folder: Path) -> np.ndarray | None:
    """[H, W] float32: a maps folder's ``dsm_spread.tif`` (None without)."""
    import rasterio

    if not (folder / "dsm_spread.tif").is_file():
        return None
    with rasterio.open(folder / "dsm_spread.tif") as file:
        return file.read(1)


def read_support(folder: Path) -> np.ndarray | None:
    """[H, W] int64: a maps folder's ``dsm_support.tif``, -1 where the DSM has no height (None without)."""
    import rasterio

    if not (folder / SUPPORT).is_file():
        return None
    with rasterio.open(folder / SUPPORT) as file:
        support = file.read(1).astype(np.int64)
    return np.where(support == NO_SUPPORT, -1, support)


def sparse_points_check(run: Path, rgba: np.ndarray, dsm: np.ndarray, grid: MapGrid, every: int | None = None,
                        spread: np.ndarray | None = None, support: np.ndarray | None = None) -> dict:
    """The georeferenced scene's SfM points against the maps (module notes); ``every``: the held-out points are every
    n-th (None: the run's ``geometry.sparse_depth_holdout``; a run trained without them scored on the same); with
    ``spread`` (the DSM's, :data:`NODATA` where none), the held-out points' figures where it is at most each of
    :data:`VOUCHED_PX` pixels and beyond; with ``support`` (:func:`read_support`), where it is at least each of
    :data:`SUPPORT_AT_LEAST` photos and the map's vouched support, and below."""
    cfg, model, _ = load_run(run)
    scene = load_scene(cfg.data, images=False)
    georef = read_georef(Path(cfg.data.path))
    means = np.concatenate([a.positions.detach().double().cpu().numpy()
                            for a in ([model.anchors] if hasattr(model, "anchors") else model.anchor_sets)])
    frame = frame_of(means, scene.train, georef, cfg.data.path)
    placed = frame.to_map(scene.points.astype(np.float64))
    col = (placed[:, 0] - grid.x0) / grid.gsd - 0.5  # pixel coordinates, centres at integers
    row = (grid.y0 - placed[:, 1]) / grid.gsd - 0.5
    inside = (col > 5) & (col < grid.width - 6) & (row > 5) & (row < grid.height - 6)
    ri, ci = np.round(row[inside]).astype(int), np.round(col[inside]).astype(int)
    solid = rgba[ri, ci, 3] >= round(255 * SOLID)
    colours = scene.colors[inside][solid].astype(np.float32)
    c, r = col[inside][solid].astype(np.float32), row[inside][solid].astype(np.float32)
    image = rgba[..., :3].astype(np.float32)
    errors = np.zeros((len(SHIFTS), len(SHIFTS)))
    for i, dy in enumerate(SHIFTS):
        for j, dx in enumerate(SHIFTS):
            xs, ys = (c + np.float32(dx))[None], (r + np.float32(dy))[None]
            sampled = cv2.remap(image, xs, ys, cv2.INTER_LINEAR)[0]
            errors[i, j] = np.median(np.abs(sampled - colours).sum(-1))
    i, j = np.unravel_index(errors.argmin(), errors.shape)
    heights = dsm[ri[solid], ci[solid]]
    drawn = heights != NODATA
    difference = heights[drawn] - frame.heights(scene.points[inside][solid].astype(np.float64))[drawn]
    row = {"points": int(solid.sum()), "best_shift_px": [float(SHIFTS[j]), float(SHIFTS[i])],
           "colour_error_at_0": float(errors[len(SHIFTS) // 2, len(SHIFTS) // 2]),
           "colour_error_at_best": float(errors[i, j]), **_height_figures(difference)}
    every = cfg.geometry.sparse_depth_holdout if every is None else every
    if every:  # the points the training's depths never used: an independent check
        held = held_out(len(scene.points), every)[np.flatnonzero(inside)[solid][drawn]]
        row["held_out"] = {"points": int(held.sum()), **_height_figures(difference[held])}
        if spread is not None:
            band = spread[ri[solid], ci[solid]][drawn]
            row["held_out"]["by_spread"] = _points_by_spread(difference[held], band[held], grid.gsd)
        if support is not None:
            count = support[ri[solid], ci[solid]][drawn]
            row["held_out"]["by_support"] = _points_by_support(difference[held], count[held],
                                                               support_needed(support[support >= 0]))
    return row


def _points_by_spread(difference: np.ndarray, band: np.ndarray, gsd: float) -> list[dict]:
    """For each spread of :data:`VOUCHED_PX` (pixels of ``gsd``), the points whose ``band`` (the DSM's spread at
    them, :data:`NODATA` where none) is at most it: their share, and the figures of their ``difference`` and of the
    others' (those with a spread)."""
    measured = band != NODATA
    difference, band = difference[measured], band[measured] / gsd
    rows = []
    for most in VOUCHED_PX:
        inside = band <= most
        if inside.any() and not inside.all():
            rows.append({"spread_at_most_px": most, "share": float(inside.mean()),
                         "within": _height_figures(difference[inside]), "beyond": _height_figures(difference[~inside])})
    return rows


def _points_by_support(difference: np.ndarray, count: np.ndarray, needed: int) -> list[dict]:
    """For each of :data:`SUPPORT_AT_LEAST` and the map's vouched support ``needed``, the points whose ``count`` (the
    DSM's support at them) is at least it: their share, whether it is the vouched one, and the figures of their
    ``difference`` and of the others'."""
    rows = []
    for least in sorted({*SUPPORT_AT_LEAST, needed}):
        inside = count >= least
        if inside.any() and not inside.all():
            rows.append({"support_at_least": least, "vouched": least == needed, "share": float(inside.mean()),
                         "within": _height_figures(difference[inside]), "beyond": _height_figures(difference[~inside])})
    return rows


def _height_figures(difference: np.ndarray) -> dict:
    """The DSM minus the points' heights (metres): median, median absolute, 90th percentile of the absolute."""
    return {"dsm_minus_points_median_m": float(np.median(difference)),
            "dsm_points_median_abs_m": float(np.median(np.abs(difference))),
            "dsm_points_p90_abs_m": float(np.percentile(np.abs(difference), 90))}


def under_cameras(run: Path, grid: MapGrid) -> np.ndarray:
    """[H, W] uint8, 1 inside the convex hull of the training cameras' centres on the map (what the flight
    flew over), 0 outside."""
    cfg = load_config(run / "config.yaml")
    scene = load_scene(cfg.data, images=False)
    centres = np.stack([camera.center.detach().double().cpu().numpy() for camera in scene.train])
    frame = frame_of(centres, scene.train, read_georef(Path(cfg.data.path)), cfg.data.path)
    placed = frame.to_map(centres)
    pixels = np.column_stack([(placed[:, 0] - grid.x0) / grid.gsd, (grid.y0 - placed[:, 1]) / grid.gsd])
    mask = np.zeros((grid.height, grid.width), np.uint8)
    cv2.fillConvexPoly(mask, np.round(cv2.convexHull(pixels.astype(np.float32))[:, 0]).astype(np.int32), 1)
    return mask


def away_from_steps(rgba: np.ndarray, dsm: np.ndarray, heights: np.ndarray, metres: float, reach: int = 5,
                    step_m: float = 1.0) -> dict:
    """The DSM's RMSE (metres) over the drawn pixels more than ``reach`` pixels from a step of over ``step_m`` in
    the true heights, and the share of the squared error within that reach of one."""
    drawn = (rgba[..., 3] >= round(255 * SOLID)) & (dsm != NODATA)
    near = near_steps(heights, reach, step_m)
    squared = (dsm.astype(np.float64) * metres - heights) ** 2
    return {"dsm_rmse_away_from_steps_m": float(np.sqrt(squared[drawn & ~near].mean())),
            "squared_error_near_steps": float(squared[drawn & near].sum() / squared[drawn].sum())}


def floor_under_cameras(data: Path, grid: MapGrid, under: np.ndarray, colour: np.ndarray, heights: np.ndarray,
                        metres: float, depth: str, despike_window: int, guided: bool) -> dict:
    """The scores under the cameras (``under``: [H, W], 1 inside) of perfect geometry on ``grid``: flat Gaussians laid
    on the synthetic city of ``data``, mapped as ``mgs ortho`` maps with ``depth``, then despiked as they were
    (``despike_window``, 0 for not) and, where they were ``guided``, guided by their orthophoto with every height
    agreed on (a spread of 0: on perfect geometry the photos agree)."""
    city, _ = city_of(data)
    rasters = splat_map(laid_on_the_city(city, metres, grid), own_frame(np.array([0.0, 0.0, 1.0]), "z"), grid,
                        show_progress=False, depth=depth)
    if despike_window:
        rasters.dsm = despike(rasters.dsm, grid.gsd, despike_window)[0]
    if guided:
        agreed = np.zeros(rasters.dsm.shape, np.float32)
        rasters.dsm = guided_median(rasters.dsm, rasters.rgba[..., :3], agreed, grid.gsd)
        rasters.dsm = solved_heights(rasters.dsm, rasters.rgba[..., :3], agreed, grid.gsd)
    rgba = rasters.rgba.copy()
    rgba[..., 3] *= under
    found = score(rgba, rasters.dsm, colour, heights, metres)
    found.update(away_from_steps(rgba, rasters.dsm, heights, metres))
    return found


SPREAD_BANDS_PX = (0, 0.5, 1, 2, 5, 10, 30, np.inf)  # the spread's bands the error is told by, pixels
VOUCHED_PX = (1, 2, 5, 10)  # spreads up to which the DSM's error (away from steps, at held-out points) is given


def near_steps(heights: np.ndarray, reach: int = 5, step_m: float = 1.0) -> np.ndarray:
    """[H, W] bool: within ``reach`` pixels of a step of over ``step_m`` in the true ``heights`` (metres)."""
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    truth = heights.astype(np.float32)
    return (cv2.dilate(truth, kernel) - cv2.erode(truth, kernel)) > step_m


SEEN_AT_LEAST = (1, 2, 3, 5, 8)  # photos that see a pixel's true surface, the --seen figures are given from
SUPPORT_AT_LEAST = (2, 3, 4, 5, 6)  # photos that see a surface at a DSM's height, its error is given from


def seen_check(run: Path, data: Path, grid: MapGrid, under: np.ndarray, dsm: np.ndarray, heights: np.ndarray,
               metres: float) -> dict:
    """Away from height steps, under the cameras: the DSM's RMSE (metres) over the pixels whose true surface at
    least k training photos see (k in :data:`SEEN_AT_LEAST`; tests/helpers/map_truth.py's ``photos_seeing``), the
    share of those pixels and the share of the squared error in the rest."""
    city, _ = city_of(data)
    cameras = load_scene(load_config(run / "config.yaml").data, images=False).train
    count = photos_seeing(city, metres, grid, heights, cameras)
    away = (under[..., 3] >= round(255 * SOLID)) & (dsm != NODATA) & ~near_steps(heights)
    squared = (dsm.astype(np.float64) * metres - heights) ** 2
    rows = [{"at_least": k, "share": float((away & (count >= k)).sum() / away.sum()),
             "dsm_rmse_away_from_steps_m": float(np.sqrt(squared[away & (count >= k)].mean())),
             "squared_error_in_the_rest": float(squared[away & (count < k)].sum() / squared[away].sum())}
            for k in SEEN_AT_LEAST if (away & (count >= k)).any()]
    return {"photos_median": float(np.median(count[away])), "by_photos": rows}


def spread_check(spread: np.ndarray | None, under: np.ndarray, dsm: np.ndarray, heights: np.ndarray, metres: float,
                 gsd_m: float) -> dict | None:
    """The DSM's error under the cameras by its ``spread`` (:func:`read_spread`; None without): per band of it,
    the share of the pixels, the error's RMSE and median (pixels); the share of pixels whose error is at most their
    spread and one pixel; away from steps, the error where the spread is at most each of :data:`VOUCHED_PX`."""
    if spread is None:
        return None
    spread = spread.astype(np.float64)
    drawn = (under[..., 3] >= round(255 * SOLID)) & (dsm != NODATA)
    measured = drawn & (spread != NODATA)
    error = np.abs(dsm.astype(np.float64) * metres - heights)[measured] / gsd_m
    band = spread[measured] * metres / gsd_m
    rows = []
    for lo, hi in zip(SPREAD_BANDS_PX[:-1], SPREAD_BANDS_PX[1:]):
        inside = (band >= lo) & (band < hi)
        if inside.any():
            rows.append({"spread_px": [lo, hi if np.isfinite(hi) else None], "share": float(inside.mean()),
                         "rmse_px": float(np.sqrt(np.mean(error[inside] ** 2))),
                         "median_px": float(np.median(error[inside]))})
    return {"measured": float(measured.sum() / max(drawn.sum(), 1)), "bands": rows,
            "within_spread_and_a_pixel": float(np.mean(error <= band + 1.0)),
            "away_from_steps_by_spread": _away_by_spread(error, band, ~near_steps(heights)[measured])}


def support_check(support: np.ndarray | None, under: np.ndarray, dsm: np.ndarray, heights: np.ndarray,
                  metres: float, gsd_m: float) -> list[dict] | None:
    """Away from steps, under the cameras: for each of :data:`SUPPORT_AT_LEAST` and the support the map vouches
    from (``vouched``: :func:`~momentum_gs.maps.spread.support_needed` of the whole map), the share of the heights
    whose ``support`` (:func:`read_support`; None without) is at least it, their error's RMSE (pixels of ``gsd_m``)
    and the share of the squared error in the others."""
    if support is None:
        return None
    away = (under[..., 3] >= round(255 * SOLID)) & (dsm != NODATA) & ~near_steps(heights)
    squared = ((dsm.astype(np.float64) * metres - heights) / gsd_m)[away] ** 2
    count, total = support[away], max(float(squared.sum()), 1e-12)
    needed = support_needed(support[support >= 0])
    return [{"support_at_least": least, "vouched": least == needed, "share": float(np.mean(count >= least)),
             "rmse_px": float(np.sqrt(squared[count >= least].mean())),
             "squared_error_in_the_rest": float(squared[count < least].sum() / total)}
            for least in sorted({*SUPPORT_AT_LEAST, needed}) if (count >= least).any()]


def _away_by_spread(error: np.ndarray, band: np.ndarray, away: np.ndarray) -> list[dict]:
    """For each spread of :data:`VOUCHED_PX`, over the measured pixels ``away`` from steps: the share whose spread is
    at most it, their error's RMSE (pixels, from ``error`` and ``band`` of :func:`spread_check`) and the share of the
    squared error away from steps in the others."""
    error, band = error[away], band[away]
    total = max(float(np.sum(error ** 2)), 1e-12)
    rows = []
    for most in VOUCHED_PX:
        inside = band <= most
        if inside.any():
            rows.append({"spread_at_most_px": most, "share": float(inside.mean()),
                         "rmse_px": float(np.sqrt(np.mean(error[inside] ** 2))),
                         "squared_error_in_the_rest": 1.0 - float(np.sum(error[inside] ** 2)) / total})
    return rows


def picture(rgba: np.ndarray, dsm: np.ndarray, colour: np.ndarray, heights: np.ndarray, metres: float,
            path: Path, width: int = 1500) -> None:
    """The orthophoto | the true orthophoto | the DSM's absolute error (0 black, 5 m or more white), ``width`` wide."""
    drawn = (rgba[..., 3] >= round(255 * SOLID)) & (dsm != NODATA)
    error = np.where(drawn, np.clip(np.abs(dsm.astype(np.float64) * metres - heights) / 5.0, 0, 1), 0)
    panels = [rgba[..., :3].astype(np.float64) / 255, colour, np.repeat(error[..., None], 3, -1)]
    image = np.concatenate(panels, axis=1)
    scale = width / image.shape[1]
    image = cv2.resize(image, (width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., ::-1])


def picture_heights(rgba: np.ndarray, dsm: np.ndarray, path: Path, width: int = 1500) -> None:
    """The orthophoto | the DSM in colour (its 2nd to 98th percentile from blue to red, nodata black)."""
    drawn = dsm != NODATA
    lo, hi = np.percentile(dsm[drawn], [2, 98]) if drawn.any() else (0.0, 1.0)
    level = np.round(np.clip((dsm - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    heights = np.where(drawn[..., None], cv2.applyColorMap(level, cv2.COLORMAP_TURBO), 0)
    image = np.concatenate([rgba[..., 2::-1], heights], axis=1)
    scale = width / image.shape[1]
    cv2.imwrite(str(path), cv2.resize(image, (width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--maps", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--held-out", type=int, default=None, metavar="N",
                        help="score every N-th SfM point apart (default: the run's geometry.sparse_depth_holdout)")
    parser.add_argument("--picture", type=Path, default=None,
                        help="an image: the orthophoto, the truth and the DSM's error (black 0, white 5 m or more) "
                             "side by side on a synthetic scene; else the orthophoto beside the DSM in colour")
    parser.add_argument("--floor", action="store_true",
                        help="on a synthetic scene, also score perfect geometry on the same grid (about a minute for "
                             "a million pixels)")
    parser.add_argument("--seen", action="store_true",
                        help="on a synthetic scene, also the error away from height steps by how many training photos "
                             "see the true surface, ray-cast (about 15 s for a million pixels and 100 photos)")
    args = parser.parse_args()
    folder = args.maps or args.run / "maps"
    rgba, dsm, summary = read_maps(folder)
    spread, support = read_spread(folder), read_support(folder)
    grid = MapGrid(*summary["top_left"], summary["gsd"], summary["width"], summary["height"])
    data = Path(load_config(args.run / "config.yaml").data.path)
    info = read_scene_info(data)
    row = {"run": str(args.run), "gsd": grid.gsd, "size": [grid.width, grid.height], "covered": summary["covered"],
           "seen_covered": summary.get("seen_covered"), "seconds": summary["seconds"], "crs": summary["crs"]}
    if info is not None and "settings" in info:
        colour, heights, metres = true_maps(data, grid)
        row["truth"] = score(rgba, dsm, colour, heights, metres)
        row["truth"]["gsd_m"] = grid.gsd * metres
        mask = under_cameras(args.run, grid)
        under = rgba.copy()
        under[..., 3] *= mask
        row["truth_under_cameras"] = score(under, dsm, colour, heights, metres)
        row["truth_under_cameras"].update(away_from_steps(under, dsm, heights, metres))
        if args.floor:
            row["floor_under_cameras"] = floor_under_cameras(data, grid, mask, colour, heights, metres,
                                                             summary.get("depth", "median"),
                                                             summary.get("despike_window", 0),
                                                             summary.get("dsm_guided") is not None)
        if args.seen:
            row["seen_under_cameras"] = seen_check(args.run, data, grid, under, dsm, heights, metres)
        row["spread_under_cameras"] = spread_check(spread, under, dsm, heights, metres, grid.gsd * metres)
        row["support_under_cameras"] = support_check(support, under, dsm, heights, metres, grid.gsd * metres)
        if args.picture:
            picture(rgba, dsm, colour, heights, metres, args.picture)
    else:
        if args.floor:
            print(f"--floor: {data} is not a synthetic scene (mgs synth), so there is no true city to lay Gaussians "
                  "on; the other scores follow", file=sys.stderr)
        if args.seen:
            print(f"--seen: {data} is not a synthetic scene (mgs synth), so there is no true city to count the "
                  "photos that see it; the other scores follow", file=sys.stderr)
        if args.picture:
            picture_heights(rgba, dsm, args.picture)
    if read_georef(data) is not None:
        row["sparse_points"] = sparse_points_check(args.run, rgba, dsm, grid, args.held_out, spread, support)
    print(json.dumps(row, indent=1))
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
