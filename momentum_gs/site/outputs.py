"""What each stage of a site made, recorded in ``SITE/stages.json`` when it ends, for the page to show.

Each stage's record says its numbers (label, text), its pictures (path, caption) and its files, every path relative to
the site and named by the module that writes it (the SfM's report and picture, the run folder's layout, the
export's formats, the maps' files): the page (:mod:`momentum_gs.site.page`) shows what the stages recorded and
spells no file name of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from momentum_gs.data.georef import GEOREF_NAME
from momentum_gs.data.sfm.run import PICTURE_NAME, REPORT_NAME
from momentum_gs.export.formats import FORMATS
from momentum_gs.export.tiles.tileset import TILES_FOLDER, TILESET_NAME
from momentum_gs.maps.files import DSM, ORTHOPHOTO, PREVIEW_NAME, SPREAD, SUMMARY_NAME, SUPPORT
from momentum_gs.maps.files import NAMES as MAP_NAMES
from momentum_gs.site.folder import Site

TILESET = (FORMATS["3dtiles"].output.rstrip("/"), TILESET_NAME)  # below the export folder
VIEWER = FORMATS["html"].output


def read_json(path: Path) -> dict:
    """A JSON file of the site as a dictionary ({} when absent or not JSON)."""
    try:
        value = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def outputs(stage: str, site: Site) -> dict:
    """``{"numbers": [[label, text]], "pictures": [[path, caption]], "files": [path], ...}`` of ``stage`` as it
    stands in ``site`` (the paths relative to the site; only what exists)."""
    made = {"sfm": _sfm, "train": _train, "eval": _eval, "export": _export, "maps": _maps}.get(stage)
    found = made(site) if made is not None else {}
    found.setdefault("numbers", [])
    found["pictures"] = [[site.relative(p), caption] for p, caption in found.get("pictures", []) if p.is_file()]
    found["files"] = [site.relative(p) for p in found.get("files", []) if p.is_file()]
    return found


def _sfm(site: Site) -> dict:
    report = read_json(site.scene / REPORT_NAME)
    numbers = []
    if report:
        numbers += [["photos registered", f"{report.get('images_registered', '?')} of {report.get('images_total', '?')}"],
                    ["SfM points", str(report.get("points", "?"))]]
        if report.get("gps_residual_horizontal_rms_m") is not None:
            numbers.append(["GPS residual (horizontal RMS)", f"{report['gps_residual_horizontal_rms_m']:.2f} m"])
        numbers += _accuracy(report)
    return {"numbers": numbers,
            "pictures": [(site.scene / PICTURE_NAME, "the photos' positions over the SfM points")],
            "files": [site.scene / REPORT_NAME, site.scene / GEOREF_NAME]}


def _accuracy(report: dict) -> list[list[str]]:
    """The check points' accuracy (measured against points no fit used) and the GCPs' fit (not a check)."""
    numbers, check = [], report.get("check_points") or {}
    if check.get("count"):
        text = f"{check['rmse_horizontal_m']:.3f} m RMSE, CE90 {check['ce90_m']:.3f} m horizontally"
        if "rmse_vertical_m" in check:
            text += f"; {check['rmse_vertical_m']:.3f} m RMSE, LE90 {check['le90_m']:.3f} m vertically"
        numbers.append([f"accuracy on {check['count']} check points (never used in a fit)", text])
    if report.get("fit") == "gcp" and report.get("gps_residual_rms_m") is not None:
        numbers.append(["ground control points (fitted to them, not a check)",
                        f"{report['gps_residual_rms_m']:.3f} m RMS before the adjustment"])
    return numbers


def _train(site: Site) -> dict:
    run = site.run_folder
    summary = read_json(run.summary)
    numbers = [["training", f"{summary.get('steps')} steps in {summary.get('seconds', 0):.0f} s, "
                            f"{summary.get('num_anchors')} anchors, {summary.get('num_blocks', 1)} block(s)"]] if summary else []
    return {"numbers": numbers, "pictures": [(run.partition_picture, "the blocks of the partition")],
            "files": [run.config, run.summary]}


def _eval(site: Site) -> dict:
    run = site.run_folder
    results = read_json(run.results)
    numbers = []
    if results.get("psnr") is not None:
        lpips = f", LPIPS {results['lpips']:.3f}" if results.get("lpips") is not None else ""
        numbers.append(["held-out views", f"PSNR {results['psnr']:.2f} dB, SSIM {results['ssim']:.3f}{lpips} over "
                                          f"{results.get('num_test_views', '?')} photos the training never saw"])
    return {"numbers": numbers, "pictures": [(run.strip, "held-out photos: render above, photo below")],
            "files": [run.results]}


def _export(site: Site) -> dict:
    files = sorted(p for p in site.export.rglob("*") if p.is_file()
                   and TILES_FOLDER not in p.relative_to(site.export).parts) if site.export.is_dir() else []
    tileset, viewer = site.export.joinpath(*TILESET), site.export / VIEWER
    return {"files": files, "tileset": site.relative(tileset) if tileset.is_file() else None,
            "viewer": site.relative(viewer) if viewer.is_file() else None}


def _maps(site: Site) -> dict:
    summary = read_json(site.maps / SUMMARY_NAME)
    numbers = []
    if summary:
        numbers.append(["maps", f"{summary.get('width', 0):,} × {summary.get('height', 0):,} pixels of "
                                f"{summary.get('gsd', 0):.3g} m, {100 * summary.get('covered', 0):.0f} % covered"])
        spread, within = summary.get("spread_median"), summary.get("spread_within_pixel")
        if isinstance(spread, (int, float)) and isinstance(within, (int, float)):
            numbers.append(["surface model's spread over the photos", f"median {spread:.3g} m, "
                            f"{100 * within:.0f} % of its heights within a pixel ({SPREAD})"])
        vouched, needed = summary.get("support_vouched"), summary.get("support_needed")
        if isinstance(vouched, (int, float)) and isinstance(needed, int):
            numbers.append(["surface model's heights to measure on", f"{100 * vouched:.0f} % of them, seen there by at "
                            f"least {needed} photos ({SUPPORT})"])
    preview = site.maps / PREVIEW_NAME
    found = {"numbers": numbers, "files": sorted(site.maps / name for name in MAP_NAMES),
             "pictures": [(preview, f"the orthophoto (the map files below: {ORTHOPHOTO}, the surface model {DSM})")]}
    bounds, height = summary.get("bounds_wgs84"), summary.get("low_ground_height")
    if preview.is_file() and isinstance(bounds, list) and len(bounds) == 4 and isinstance(height, (int, float)):
        found["ground"] = {"picture": site.relative(preview), "west_south_east_north": bounds, "height": height}
    return found
