"""``mgs ortho RUN``: the run baked into standard Gaussians (as the export bakes, the Gaussians no photo saw
dropped), splatted straight down onto the map's grid (:mod:`momentum_gs.maps.ortho`) in the map's frame
(:mod:`momentum_gs.data.map_frame`), written (:mod:`momentum_gs.maps.files`) into a folder written whole, with
``maps.json``: the CRS, the grid, the coverage, the seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from momentum_gs.data.footprint import Ground, ground_of
from momentum_gs.data.georef import enu_to_wgs84, read_georef, robust_bounds
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.export.floaters import views_of
from momentum_gs.export.formats import merged_model
from momentum_gs.export.bake import baked_for_export
from momentum_gs.export.standard_ply import load_standard_ply
from momentum_gs.io.folders import written_whole
from momentum_gs.trained import run_config
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.maps.files import NAMES, SPREAD_FULL_PX, SUMMARY_NAME, SUPPORT, write_map_files
from momentum_gs.data.map_frame import MapFrame, frame_of
from momentum_gs.maps.ortho import NODATA, SOLID, MapGrid, grid_over, splat_map
from momentum_gs.maps.despike import WINDOW, check_window, despike
from momentum_gs.maps.guide import WINDOW as GUIDE_WINDOW
from momentum_gs.maps.spread import photo_spread, support_needed
from momentum_gs.model.gaussian_scene import resolve_backend

SH_DEGREE = 1  # the map looks from one direction: degree 1 holds what it needs
LOW_GROUND = 5  # the percentile of the surface model's heights called the low ground
EXTENT_QUANTILE = 0.01  # without SfM points, the map covers the Gaussians' 1st to 99th percentiles (by opacity)


def make_maps(run_dir: str | Path, out: str | Path | None = None, gsd: float | None = None,
              show_progress: bool = True, depth: str = "median", gaussians: str | Path | None = None,
              ground: Ground | None = None, spread: bool = True, despike_window: int = WINDOW,
              guide: bool = True) -> dict:
    """Write the orthophoto, the DSM and their preview of a run into ``out`` (default ``RUN/maps``); returns
    the summary (also ``maps.json``). ``gsd``: map units a pixel (default: the photos' at the training size);
    ``depth``: the DSM's depth, "mean" or "median" (:func:`~momentum_gs.maps.ortho.splat_map`); ``gaussians``: a
    standard 3DGS PLY of the run (an export of it, in the scene's frame) mapped instead of a new bake; ``ground``:
    the ground its photos see (:class:`~momentum_gs.data.footprint.Ground`; None, or another up than the map's:
    worked out here, once); ``spread``: with the DSM's spread over the training photos
    (:mod:`momentum_gs.maps.spread`); ``despike_window``: the cells a side of the window whose median a DSM's spike
    takes (:mod:`momentum_gs.maps.despike`; 0: the DSM as the Gaussians and the photos draw it); ``guide``: with the
    spread, each height then at the median of its window weighted by the orthophoto's colours and by the spread
    (:mod:`momentum_gs.maps.guide`)."""
    started = time.perf_counter()
    run = RunFolder(run_dir)
    out = Path(out) if out is not None else run.root / "maps"
    if gsd is not None and not gsd > 0:
        raise UserError(f"--gsd {gsd}: give a pixel size above 0 (metres in a georeferenced scene)")
    check_window(despike_window)
    if gaussians is not None:
        cfg = run_config(run.root)
        georef = read_georef(Path(cfg.data.path))
        scene = load_scene(cfg.data, images=False)
        gaussians, how, dropped = load_standard_ply(gaussians), f"read from {gaussians}", ""
    else:
        cfg, model = merged_model(run)
        georef = read_georef(Path(cfg.data.path))
        scene = load_scene(cfg.data, images=False)
        if ground is None and georef is not None:  # z up: the floaters' ground is the map's
            ground = ground_of(scene.train, scene.points, np.eye(3)[2])
        gaussians, how, dropped = baked_for_export(model, scene.train, cfg.render, SH_DEGREE, 0, None,
                                                   views_of(scene, georef, False, ground))
    if len(gaussians) == 0:
        raise UserError("the run's model has no Gaussians that a training photo saw: nothing to map")
    frame = frame_of(gaussians.means.detach().double().cpu().numpy(), scene.train, georef, cfg.data.path)
    if ground is None or not np.allclose(ground.up, frame.rotation[2]):
        ground = ground_of(scene.train, scene.points, frame.rotation[2])
    lo, hi = _extent(gaussians, frame, ground)
    gsd_said = _gsd_line(gsd, scene.train, scene.points, frame)
    grid = grid_over(lo, hi, gsd if gsd is not None else _photo_gsd(scene.train, scene.points, frame))
    backend = resolve_backend(cfg.render.backend, gaussians.means.device)
    if depth == "median" and backend == "gsplat":
        backend = "builtin"  # gsplat has no median depth; the builtin rasterizer draws it on any device
    with written_whole(out, "the maps", NAMES) as work:
        rasters = splat_map(gaussians, frame, grid, backend, show_progress, depth)
        seen = seen_ground(grid, frame, ground)
        if seen is not None:  # no photo sees the rest: what the Gaussians draw there is a guess
            rasters.rgba[~seen] = 0
            rasters.dsm[~seen] = NODATA
        found, despiked = _settle_heights(rasters, gaussians, scene.train, frame, grid, show_progress, spread,
                                          despike_window, guide)
        written = write_map_files(rasters, frame, grid, work)
        summary = _summary(run, out, frame, grid, rasters, seen, len(gaussians), how, dropped, gsd_said, written,
                           time.perf_counter() - started, depth)
        summary.update(_settled(found, despike_window, despiked, guide))
        (work / SUMMARY_NAME).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _settle_heights(rasters, gaussians, cameras: list, frame: MapFrame, grid: MapGrid, show_progress: bool,
                    spread: bool, despike_window: int, guide: bool) -> tuple:
    """The DSM of ``rasters`` held within the photos' heights, below what they see through, despiked and guided by
    the orthophoto (where ``guide``), with its spread, where ``spread``; else despiked alone where
    ``despike_window``. Returns (the spread's :class:`~momentum_gs.maps.spread.PhotoHeights` or None, the share of
    the heights the despike moved)."""
    if spread:
        found = photo_spread(gaussians, cameras, frame, grid, rasters.dsm, show_progress, despike_window,
                             rasters.rgba[..., :3] if guide else None)
        rasters.spread, rasters.dsm, rasters.support = found.spread, found.dsm, found.support
        return found, found.despiked
    if not despike_window:
        return None, 0.0
    rasters.dsm, spiked = despike(rasters.dsm, grid.gsd, despike_window, show_progress=show_progress)
    return None, float(spiked.sum() / max((rasters.dsm != NODATA).sum(), 1))


def _settled(found, despike_window: int, despiked: float, guide: bool) -> dict:
    """``maps.json``'s shares of the heights that :func:`_settle_heights` moved: of the measured ones, in all and down
    what photos see through (with the spread, ``found``), and of all of them, the spikes and the guided ones (None:
    asked for, but the guide weighs by the spread, which was not measured)."""
    shares = {}
    if found is not None:
        shares.update(dsm_held=round(found.held, 4), dsm_seen_through=round(found.through, 4))
    if guide:
        shares.update(dsm_guided=None if found is None else round(found.guided, 4), guide_window=GUIDE_WINDOW,
                      dsm_solved=None if found is None else round(found.solved, 4))
    if despike_window:
        shares.update(despike_window=despike_window, dsm_despiked=round(despiked, 4))
    return shares


def _extent(gaussians, frame: MapFrame, ground: Ground) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) [2] map (x, y) the map covers: the ground the photos see (:mod:`momentum_gs.data.footprint`) where
    the Gaussians reach it; without SfM points, the Gaussians' 1st to 99th percentiles, weighted by opacity."""
    placed = frame.to_map(gaussians.means.detach().double().cpu().numpy())
    seen = ground.points()
    if seen is None:
        lo, hi = robust_bounds(placed, gaussians.opacities.detach().double().cpu().numpy(), EXTENT_QUANTILE)
        return lo[:2], hi[:2]
    seen = frame.to_map(seen)[:, :2]
    lo, hi = np.maximum(seen.min(0), placed[:, :2].min(0)), np.minimum(seen.max(0), placed[:, :2].max(0))
    if (lo >= hi).any():
        raise UserError("the run's Gaussians lie beyond the ground its photos see: nothing to map")
    return lo, hi


def seen_ground(grid: MapGrid, frame: MapFrame, ground: Ground) -> np.ndarray | None:
    """[H, W] bool: the pixels of ``grid`` on the ground some photo sees (each photo's
    :meth:`~momentum_gs.data.footprint.Ground.footprints` quadrilateral, filled), or None without SfM points."""
    found = ground.footprints()
    if not found:
        return None
    mask = np.zeros((grid.height, grid.width), np.uint8)
    for seen in found:
        xy = frame.to_map(seen[1:])[:, :2]
        pixels = np.column_stack([(xy[:, 0] - grid.x0) / grid.gsd, (grid.y0 - xy[:, 1]) / grid.gsd])
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pixels).astype(np.int32)), 1)
    return mask.astype(bool)


def _photo_gsd(cameras: list, points: np.ndarray, frame: MapFrame) -> float:
    """The photos' ground sampling distance at the training size, map units: the median over the training
    photos of their height above the ground (the SfM points' median height) over their focal length."""
    ground = float(np.median(frame.to_map(points)[:, 2])) if len(points) else 0.0
    heights = np.array([frame.to_map(c.center.detach().double().cpu().numpy()[None])[0, 2] for c in cameras]) - ground
    focal = np.array([float(c.K[0, 0]) for c in cameras])
    if not (heights > 0).any():
        raise UserError("the training cameras are not above the ground the SfM points show, so the photos give no "
                        "ground sampling distance; give --gsd")
    gsd = float(np.median(heights[heights > 0] / focal[heights > 0])) * frame.scale
    digits = 3 - int(np.floor(np.log10(gsd)))  # three significant digits: a round pixel size
    return round(gsd, max(digits, 0))


def _gsd_line(gsd: float | None, cameras: list, points: np.ndarray, frame: MapFrame) -> str:
    """Where the pixel size came from, in words."""
    if gsd is not None:
        return f"{gsd:g} (--gsd)"
    unit = "m" if frame.epsg else " units"
    width = cameras[0].width if cameras else 0
    return (f"{_photo_gsd(cameras, points, frame):g}{unit}: the photos' ground sampling distance at the training "
            f"size ({width} px wide; --gsd sets another)")


def _summary(run: RunFolder, out: Path, frame: MapFrame, grid: MapGrid, rasters, seen: np.ndarray | None,
             gaussians: int, how: str, dropped: str, gsd_said: str, written: str, seconds: float, depth: str) -> dict:
    """What ``maps.json`` records and ``mgs ortho`` prints: ``covered`` the share of the grid drawn (alpha at
    least :data:`SOLID`), ``seen_covered`` that of the ground the photos see (``seen``: where, or None)."""
    solid = rasters.rgba[..., 3] >= round(255 * SOLID)
    covered = float(solid.mean())
    seen_covered = float(solid[seen].mean()) if seen is not None and seen.any() else None
    centre = grid.centre()
    summary = {"run": str(run.root.resolve()), "out": str(out.resolve()), "crs": frame.what, "epsg": frame.epsg,
               "gsd": grid.gsd, "gsd_from": gsd_said, "width": grid.width, "height": grid.height,
               "top_left": [grid.x0, grid.y0], "centre": centre.tolist(), "covered": round(covered, 4),
               "seen_covered": None if seen_covered is None else round(seen_covered, 4),
               "depth": depth, "gaussians": gaussians, "bake": how, "dropped": dropped, "files": written,
               "seconds": round(seconds, 2)}
    summary.update(_spread_summary(rasters, grid.gsd))
    valid = rasters.dsm != NODATA
    if valid.any():  # the low ground: what a picture of the map is laid on, under the city
        summary["low_ground_height"] = round(float(np.percentile(rasters.dsm[valid], LOW_GROUND)), 3)
    if frame.origin is not None:
        world = frame.to_world(centre[None], np.zeros(1))
        summary["centre_wgs84"] = enu_to_wgs84(world, frame.origin)[0, :2].round(7).tolist()
        x1, y1 = grid.x0 + grid.width * grid.gsd, grid.y0 - grid.height * grid.gsd
        corners = np.array([[grid.x0, grid.y0], [x1, grid.y0], [x1, y1], [grid.x0, y1]])
        lat_lon = enu_to_wgs84(frame.to_world(corners, np.zeros(4)), frame.origin)[:, :2]
        summary["bounds_wgs84"] = [round(float(v), 8) for v in (lat_lon[:, 1].min(), lat_lon[:, 0].min(),
                                                                 lat_lon[:, 1].max(), lat_lon[:, 0].max())]
    return summary


def _spread_summary(rasters, gsd: float) -> dict:
    """``spread_median`` (the DSM's units) and ``spread_within_pixel`` and ``spread_within_vouched``, the shares of the
    DSM's heights whose spread is at most one and :data:`~momentum_gs.maps.files.SPREAD_FULL_PX` pixels' size, over
    the heights with a spread; ``spread_measured``, the share of the DSM's heights that have one; with the support
    (:mod:`momentum_gs.maps.spread`), ``support_median`` over the heights, ``support_needed``
    (:func:`~momentum_gs.maps.spread.support_needed`) and ``support_vouched``, the share of the heights with at least
    that. Nothing without a spread."""
    if rasters.spread is None:
        return {}
    heights, measured = rasters.dsm != NODATA, rasters.spread != NODATA
    values = rasters.spread[measured]
    found = {}
    if rasters.support is not None and heights.any():
        support = rasters.support[heights]
        needed = support_needed(support)
        found = {"support_median": float(np.median(support)), "support_needed": needed,
                 "support_vouched": round(float(np.mean(support >= needed)), 4)}
    if not values.size:
        return {"spread_measured": 0.0, **found}
    return {"spread_measured": round(float(measured.sum() / max(heights.sum(), 1)), 4),
            "spread_median": round(float(np.median(values)), 4),
            "spread_within_pixel": round(float(np.mean(values <= gsd)), 4),
            "spread_within_vouched": round(float(np.mean(values <= SPREAD_FULL_PX * gsd)), 4), **found}


def summary_lines(summary: dict) -> list[str]:
    """What ``mgs ortho`` prints."""
    out = Path(summary["out"])
    lines = [f"map frame: {summary['crs']}",
             f"pixel: {summary['gsd_from']}",
             f"{summary['gaussians']:,} standard Gaussians ({summary['bake']})"]
    lines += [summary["dropped"]] if summary["dropped"] else []
    seen = summary.get("seen_covered")
    covered = f"{100 * summary['covered']:.0f} % covered" + (
        f", {100 * seen:.0f} % of the ground the photos see" if seen is not None else "")
    lines += [f"orthophoto: {out / 'orthophoto.tif'} ({summary['width']:,} × {summary['height']:,} pixels, "
              f"{covered}), surface model: {out / 'dsm.tif'}; {summary['files']}",
              f"preview: {out / 'orthophoto.png'}; summary: {out / 'maps.json'} ({summary['seconds']:.0f} s)"]
    if "spread_median" in summary:
        lines.append(f"the surface model's spread over the photos that see it: median {summary['spread_median']:.3g}, "
                     f"{100 * summary['spread_within_pixel']:.0f} % of its heights within a pixel's size"
                     + (f" and {100 * summary['spread_within_vouched']:.0f} % within {SPREAD_FULL_PX:g} pixels'"
                        if "spread_within_vouched" in summary else "")
                     + " "
                     f"({100 * summary['spread_measured']:.0f} % measured; {out / 'dsm_spread.tif'}); "
                     f"{100 * summary.get('dsm_held', 0.0):.0f} % of them moved to the nearest height a photo sees"
                     + (f", {100 * summary['dsm_seen_through']:.1f} % down where photos see through them"
                        if "dsm_seen_through" in summary else ""))
    if "support_vouched" in summary:
        lines.append(f"{100 * summary['support_vouched']:.0f} % of the surface model's heights are seen there by at "
                     f"least {summary['support_needed']} photos (half the median count where two or more do, and "
                     f"never under 2), the heights to measure on ({out / SUPPORT}, photos per pixel)")
    if "dsm_despiked" in summary:
        window = summary["despike_window"]
        lines.append(f"{100 * summary['dsm_despiked']:.1f} % of the surface model's heights stood more than 3 pixels' "
                     f"size off the median of the {window} × {window} pixels around them and took it (--despike 0 "
                     "keeps them)")
    if summary.get("dsm_guided") is not None:
        window = summary.get("guide_window", GUIDE_WINDOW)
        lines.append(f"{100 * summary['dsm_guided']:.1f} % of its heights then took the median of the {window} × "
                     f"{window} pixels around them weighted by the orthophoto's colours and the photos' agreement "
                     "(--no-guide keeps them)")
        if summary.get("dsm_solved") is not None:
            lines.append(f"{100 * summary['dsm_solved']:.1f} % then moved by more than a pixel's size, settled over "
                         "the map where the photos disagree on them, from the alike-coloured heights they agree on "
                         "(--no-guide keeps them)")
    elif "dsm_guided" in summary:
        lines.append("the surface model's heights were not guided by the orthophoto: the guide weighs each height by "
                     "the photos' spread, which --no-spread does not measure")
    return lines

