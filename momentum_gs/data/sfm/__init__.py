"""`mgs sfm`: from a folder of (drone) photos to a georeferenced training scene, with pycolmap.

``run_sfm(photos, out)`` writes ``out/images`` + ``out/sparse/0`` (the layout `mgs train` reads; the camera
keeps its distortion, which the image cache undistorts), ``out/sfm.json`` (the checks' figures),
``out/cameras.png`` and, when the photos carry GPS, ``out/georef.json``: the scene is then in East-North-Up
metres at the capture's centre, z up. ``sparse/0`` appears only when every check passed; a failed run
leaves ``sfm.json`` (``"ok": false`` and the reason) and the picture, for diagnosis.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from momentum_gs.data.sfm import colmap_steps as steps
from momentum_gs.data.georef import GEOREF_NAME, usable_gps
from momentum_gs.data.sfm.photos import camera_groups, find_photos, gather_photos, sample_video
from momentum_gs.data.sfm.report import draw_cameras, problem, summary, summary_lines
from momentum_gs.errors import UserError
from momentum_gs.io.atomic import atomic_write_text

REPORT_NAME, PICTURE_NAME = "sfm.json", "cameras.png"


@dataclass
class SfmOptions:
    """How `mgs sfm` runs (the command line's options)."""

    matcher: str = "auto"  # auto | exhaustive | sequential | spatial | vocab
    camera_model: str = "OPENCV"  # COLMAP camera model; a distorted one is undistorted by the image cache
    camera_mode: str = "auto"  # auto: one camera per EXIF camera and image size; single; per-image
    max_size: int = 3200  # longest image side for feature extraction, pixels
    vocab_tree: str | None = None  # COLMAP vocabulary tree file, for --matcher vocab
    threads: int = -1  # CPU threads for COLMAP (-1: all)
    seed: int = 0  # COLMAP's random seed (RANSAC, mapping)


def run_sfm(photos: Path | None, out: Path, opts: SfmOptions, video: Path | None = None, fps: float = 2.0) -> dict:
    """Photos (or a video) in, a training scene in ``out``; returns the report (also ``out/sfm.json``).

    Raises a UserError for bad input, and after writing the report when a check fails.
    """
    pycolmap = steps.import_pycolmap()
    _check_options(opts)
    out = Path(out)
    images_dir = out / "images"
    if video is None:  # the photos are checked before anything is made: bad input leaves no empty folder
        inside = out.resolve() in (Path(photos).resolve(), *Path(photos).resolve().parents)  # DATA/images given
        found = find_photos(Path(photos), skip=None if inside else out)
    _writable(out)
    if video is not None:
        found = sample_video(Path(video), fps, images_dir)
    sizes = gather_photos(found, images_dir)
    names = [p.name for p in found]
    for stale in (out / "sparse" / "0", out / GEOREF_NAME, out / REPORT_NAME):  # a failed rerun must not
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)  # leave the old result
    database = _database(out / "sfm", names, opts)
    started = time.perf_counter()
    steps.extract(pycolmap, database, images_dir, camera_groups(images_dir, sizes), opts.camera_model,
                  opts.camera_mode, opts.max_size, opts.threads)
    gps, no_fix = usable_gps(steps.read_gps(pycolmap, database))
    steps.drop_gps(pycolmap, database, no_fix)
    matcher = steps.choose_matcher(opts.matcher, len(names), len(gps) >= len(names) / 2)
    steps.match(pycolmap, database, matcher, len(names), opts.threads, opts.vocab_tree)
    work = out / "sfm" / "models"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    models = steps.map_images(pycolmap, database, images_dir, work, len(names), opts.threads, opts.seed,
                              gps_priors=len(gps) >= 3)
    geo, extent = _georeference(pycolmap, models[0] if models else None, gps, no_fix)
    report = summary(models, names, geo, matcher)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["options"] = asdict(opts)
    report["problem"] = problem(report, extent)
    report["ok"] = report["problem"] is None
    _write(out, models[0] if models else None, report, geo)
    shutil.rmtree(work, ignore_errors=True)
    if report["problem"]:
        raise UserError(report["problem"] + f" (figures in {out / REPORT_NAME})")
    return report


def _check_options(opts: SfmOptions) -> None:
    from momentum_gs.data.colmap import SUPPORTED_MODELS

    if opts.matcher not in steps.MATCHERS:
        raise UserError(f"unknown matcher '{opts.matcher}' (choose from {', '.join(steps.MATCHERS)})")
    if opts.camera_model not in SUPPORTED_MODELS:
        raise UserError(f"camera model '{opts.camera_model}' is not one training reads (choose from "
                        f"{', '.join(SUPPORTED_MODELS)})")
    if opts.max_size < 64:
        raise UserError(f"--max-size {opts.max_size} is too small for features; use 1000 or more")


def _writable(out: Path) -> None:
    """A UserError unless ``out`` can be created and written."""
    probe = out / f".mgs-write-test{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {out} ({exc.strerror or exc}); choose a writable output folder with --out")


def _database(folder: Path, names: list[str], opts: SfmOptions) -> Path:
    """The feature database, started afresh when the photos or the extraction options changed."""
    folder.mkdir(parents=True, exist_ok=True)
    database, stamp_path = folder / "database.db", folder / "features.json"
    stamp = {"photos": sorted(names), "camera_model": opts.camera_model, "camera_mode": opts.camera_mode,
             "max_size": opts.max_size}
    try:
        old = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        old = None
    if old != stamp:
        database.unlink(missing_ok=True)
        atomic_write_text(stamp_path, json.dumps(stamp, indent=1) + "\n")
    return database


def _georeference(pycolmap, model, gps: dict, no_fix: list[str]) -> tuple[dict | None, float | None]:
    """Fit ``model`` to its photos' GPS in ENU metres (in place); (georef dict or None, capture extent in m)."""
    from momentum_gs.data.georef import wgs84_to_enu

    if no_fix:
        print(f"GPS of (0, 0) or invalid (no fix) in {len(no_fix)} photo(s), not used: {', '.join(no_fix[:5])}")
    if model is None:
        return None, None
    registered = {model.image(i).name for i in model.reg_image_ids()}
    used = {n: v for n, v in gps.items() if n in registered}
    if len(used) < 3:
        print("no GPS in the photos' EXIF" if not gps else f"GPS in only {len(used)} registered photos",
              "- the model stays in COLMAP's frame (arbitrary scale and orientation), not georeferenced")
        return None, None
    lla = np.stack(list(used.values()))
    origin = lla.mean(0)
    enu = dict(zip(used, wgs84_to_enu(lla, origin)))
    extent = float(np.linalg.norm(np.ptp(np.stack(list(enu.values())), 0)))
    sim = steps.align_to_enu(pycolmap, model, enu, extent)
    geo = {"origin": {"lat": origin[0], "lon": origin[1], "alt": origin[2]}, "ellipsoid": "WGS84",
           "frame": "local East-North-Up, metres, z up (x east, y north)", "images_used": len(used)}
    if sim is None:
        geo["transform"] = None
        return geo, extent
    centres = {model.image(i).name: model.image(i).projection_center() for i in model.reg_image_ids()}
    residual = np.stack([centres[n] - enu[n] for n in used])
    geo["transform"] = {"enu_from_colmap": np.asarray(sim.matrix()).tolist(), "scale": float(np.asarray(sim.scale))}
    geo["residual_rms_m"] = float(np.sqrt((residual ** 2).sum(1).mean()))
    geo["residual_horizontal_rms_m"] = float(np.sqrt((residual[:, :2] ** 2).sum(1).mean()))
    geo["residual_vertical_rms_m"] = float(np.sqrt((residual[:, 2] ** 2).mean()))
    return geo, extent


def _write(out: Path, model, report: dict, geo: dict | None) -> None:
    """The picture, then (checks passed) the model through a staging folder and the georeference, then the
    report last, so a ``sfm.json`` saying ``ok`` means everything beside it is complete."""
    georeferenced = report["georeferenced"]
    if model is not None:
        draw_cameras(out / PICTURE_NAME, model, report, georeferenced)
    if report["ok"]:
        staging = out / ".sparse-staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            model.write_binary(str(staging))
            (out / "sparse").mkdir(exist_ok=True)
            os.replace(staging, out / "sparse" / "0")
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UserError(f"cannot write the model into {out / 'sparse' / '0'} ({exc.strerror or exc})")
        if georeferenced:
            atomic_write_text(out / GEOREF_NAME, json.dumps(geo, indent=2) + "\n")
    atomic_write_text(out / REPORT_NAME, json.dumps(report, indent=2) + "\n")


def run_lines(report: dict, out: Path) -> list[str]:
    """The summary printed by the command line."""
    return summary_lines(report) + [f"scene written to {out}; next: mgs train --data {out} --out runs/{out.name}"]
