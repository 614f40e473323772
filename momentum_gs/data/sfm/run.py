"""`mgs sfm`'s run: the photos checked and staged, COLMAP's steps, the georeference, the checks, and the scene
moved into place."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from momentum_gs.data.colmap.model import SUPPORTED_MODELS
from momentum_gs.data.georef import GEOREF_NAME, usable_gps
from momentum_gs.data.sfm import colmap_steps as steps
from momentum_gs.data.sfm.control import (adjust_on_control, adjust_on_gps, check_points, has_heights,
                                          without_flat_heights)
from momentum_gs.data.sfm.gcp import Control, check_marks, read_control
from momentum_gs.data.sfm.georeference import (gcp_origin, georeference, georeference_gcps, gps_origin,
                                               take_out_far_from_gps, to_enu)
from momentum_gs.data.sfm.gps import read_gps
from momentum_gs.data.sfm.options import ALTITUDE_MODES, MATCHERS, SfmOptions
from momentum_gs.data.sfm.photos import camera_groups, find_photos, gather_photos, sample_video
from momentum_gs.data.sfm.report import (draw_cameras, problem, registration_problem, residual_limit, summary,
                                         summary_lines)
from momentum_gs.errors import UserError, listing
from momentum_gs.io.atomic import atomic_write_text
from momentum_gs.io.schema import parse_json

REPORT_NAME, PICTURE_NAME, WORK_NAME = "sfm.json", "cameras.png", "sfm"
GCP_LIST_NAME = "gcp_list.txt"  # OpenDroneMap's name for the ground control beside the photos
SCENE_PARTS = ("images", "sparse", GEOREF_NAME, REPORT_NAME)  # an OUT holding any of these holds a scene


def run_sfm(photos: Path | None, out: Path, opts: SfmOptions, video: Path | None = None, fps: float = 2.0) -> dict:
    """Photos (or a video) in, a training scene in ``out``; returns the report (also ``out/sfm.json``).

    Everything is made inside ``out/sfm`` and moved into place only when every check passed, so a failing run
    changes nothing else in ``out`` (its report and picture are then ``out/sfm/sfm.json`` and
    ``out/sfm/cameras.png``). Raises a UserError for bad input, and after writing the report when a check fails.
    """
    pycolmap = steps.import_pycolmap()
    _check_options(opts)
    opts = _beside_photos(photos, opts)
    control = _read_control(opts.gcp, "ground control points")  # a bad file: refused before any work
    check = _read_control(opts.check, "check points")
    out = Path(out)
    work = out / WORK_NAME
    in_place = photos is not None and Path(photos).resolve() == (out / "images").resolve()
    staged = out / "images" if in_place else work / "images"
    sizes, skipped = _stage_photos(photos, video, fps, out, staged, in_place, opts.overwrite)
    names = sorted(sizes)
    for listed, source in ((control, opts.gcp), (check, opts.check)):
        if listed is not None:  # before any feature is extracted
            check_marks(listed, names, skipped, source)
    gps, unusable = _photo_gps(staged, names)
    database = _database(work, names, opts)
    laps = _Laps()
    origin, enu = _extract_features(pycolmap, database, staged, sizes, gps, opts)
    laps("features")
    matcher = steps.choose_matcher(opts.matcher, len(names), len(gps) >= len(names) / 2)
    pairs = steps.image_pairs(pycolmap, database, matcher, len(names), opts.vocab_tree)
    steps.match(pycolmap, database, pairs, work, opts.threads, matcher)
    laps("matching")
    models_dir = work / "models"
    models = _map_images(pycolmap, database, staged, models_dir, len(names), steps.priors_usable(enu), opts)
    laps("mapping")
    model = models[0] if models else None
    geo, extent, level_problem = _place(pycolmap, model, control, gps, enu, origin, opts, names, unusable)
    if geo is not None and geo.get("transform") is not None and level_problem is None:
        _on_control(pycolmap, model, geo, control, check, enu if control is not None or opts.adjust_gps else {})
    report = summary(models, names, geo, matcher)
    report.update(photos_not_decoded=skipped, seconds=round(time.perf_counter() - laps.started, 1),
                  phase_seconds=laps.phases, pairs_matched=len(pairs), options=asdict(opts), georeference=geo)
    report["problem"] = (registration_problem(report, opts.keep_largest) or level_problem
                         or problem(report, extent, opts.keep_largest))
    report["ok"] = report["problem"] is None
    shutil.rmtree(models_dir, ignore_errors=True)
    if not report["ok"]:
        _write_report(work, model, report)
        raise UserError(report["problem"] + f" (figures in {work / REPORT_NAME})")
    _publish(out, work, staged, in_place, model, report, geo, opts.overwrite)
    return report


class _Laps:
    """The seconds of each phase of a run, each from the end of the one before; ``started``: the first's start."""

    def __init__(self):
        self.started = self.clock = time.perf_counter()
        self.phases: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase], self.clock = round(now - self.clock, 1), now


def _stage_photos(photos: Path | None, video: Path | None, fps: float, out: Path, staged: Path, in_place: bool,
                  overwrite: bool) -> tuple[dict, dict[str, str]]:
    """The photos (or the video's frames) checked and gathered into ``staged``: (name → size, left-out photo →
    why). Bad input is refused before anything is made; fewer than two readable photos are a UserError."""
    if video is None:  # the photos are checked before anything is made: bad input leaves no empty folder
        inside = out.resolve() in (Path(photos).resolve(), *Path(photos).resolve().parents)  # DATA/images given
        found = find_photos(Path(photos), skip=None if inside else out)
    _refuse_existing_scene(out, in_place, overwrite)
    _writable(out)
    if video is not None:
        found = sample_video(Path(video), fps, staged)
    sizes, skipped = gather_photos(found, staged, prune=not in_place)
    if skipped:
        print(f"left out {len(skipped)} photo(s) that do not decode cleanly: "
              + listing([f"{n} ({why})" for n, why in sorted(skipped.items())], 5))
    if len(sizes) < 2:
        raise UserError(f"only {len(sizes)} photo(s) can be read; structure from motion needs at least two "
                        "overlapping photos")
    return sizes, skipped


def _photo_gps(staged: Path, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(name → [3] latitude, longitude, altitude of the photos whose EXIF has a usable GPS fix, the photos whose
    GPS tags are there but unusable, counted by reason); says what it found."""
    exif_gps, gps_lines, problems = read_gps({n: staged / n for n in names})
    gps, no_fix = usable_gps(exif_gps)
    for line in gps_lines + ([f"GPS of (0, 0) or invalid (no fix) in {len(no_fix)} photo(s), not used: "
                              f"{', '.join(no_fix[:5])}"] if no_fix else []):
        print(line)
    unusable = {reason: len(found) for reason, found in problems.items()}
    if no_fix:
        unusable["(0, 0) or no fix"] = len(no_fix)
    return gps, unusable


def _extract_features(pycolmap, database: Path, staged: Path, sizes: dict, gps: dict[str, np.ndarray],
                      opts: SfmOptions) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """COLMAP's features of the photos, then their GPS as pose priors; returns the ENU origin (None without GPS)
    and name → [3] ENU metres."""
    steps.extract(pycolmap, database, staged, camera_groups(staged, sizes), opts.camera_model,
                  opts.camera_mode, opts.max_size, opts.threads)
    origin = gps_origin(gps) if gps else None
    enu = to_enu(gps, origin) if gps else {}
    steps.write_priors(pycolmap, database, enu, horizontal_only=opts.gps_altitude != "use")
    return origin, enu


def _map_images(pycolmap, database: Path, staged: Path, models_dir: Path, num_photos: int, gps_priors: bool,
                opts: SfmOptions) -> list:
    """COLMAP's models of the matched photos, largest first, mapped in a fresh ``models_dir`` (with the GPS as pose
    priors when ``gps_priors``)."""
    shutil.rmtree(models_dir, ignore_errors=True)
    models_dir.mkdir(parents=True)
    return steps.map_images(pycolmap, database, staged, models_dir, num_photos, opts.threads, opts.seed, gps_priors)


def _place(pycolmap, model, control: Control | None, gps: dict, enu: dict, origin: np.ndarray | None,
           opts: SfmOptions, names: list[str], unusable: dict[str, int]
           ) -> tuple[dict | None, float | None, str | None]:
    """The model placed: on its GCPs when they have heights (or the photos have no GPS), else on the GPS, and on
    GCPs without heights (horizontally) when the GPS alone cannot place it."""
    if control is not None and model is not None and (has_heights(control) >= 3 or not gps):
        return _georeference_gcps(pycolmap, model, control, origin, enu)
    placed = _georeference(pycolmap, model, gps, enu, origin, opts.gps_altitude, names, unusable)
    geo, extent, level_problem = placed
    rms = (geo or {}).get("residual_horizontal_rms_m")
    fits = (geo is not None and geo.get("transform") is not None and level_problem is None
            and not (rms is not None and extent and rms > residual_limit(extent)))
    if control is None or model is None or fits:
        return placed
    print("the photos' GPS cannot place the scene; placing it on the ground control points, horizontally")
    return _georeference_gcps(pycolmap, model, control, origin)


def _georeference(pycolmap, model, gps: dict[str, np.ndarray], enu: dict[str, np.ndarray],
                  origin: np.ndarray | None, mode: str, names: list[str], unusable: dict[str, int] | None = None
                  ) -> tuple[dict | None, float | None, str | None]:
    """The model georeferenced in place when the photos have GPS (:func:`georeference`), saying what was done:
    (the georeference or None, the capture's extent in metres or None, the problem that fails the run or None).
    ``unusable``: the photos whose GPS tags are there but unusable, counted by reason."""
    geo, extent, level_problem, lines = (georeference(pycolmap, model, enu, origin, mode, names)
                                         if model is not None and gps else (None, None, None, []))
    if model is not None and not gps and unusable:
        carried = sum(unusable.values())
        reasons = "; ".join(f"{reason}: {count}" for reason, count in sorted(unusable.items()))
        print(f"{carried} photo(s) carry GPS, none usable ({reasons}) - the model stays in COLMAP's frame (arbitrary "
              "scale and orientation), not georeferenced")
    elif model is not None and not gps:
        print("no GPS in the photos' EXIF - the model stays in COLMAP's frame (arbitrary scale and orientation), "
              "not georeferenced")
    elif model is not None and geo is None:
        print("GPS in fewer than 3 registered photos - the model stays in COLMAP's frame, not georeferenced")
    for line in lines:
        print(line)
    return geo, extent, level_problem


def _georeference_gcps(pycolmap, model, control: Control, origin: np.ndarray | None,
                       enu: dict[str, np.ndarray] | None = None) -> tuple[dict, None, str | None]:
    """The model placed on its ground control points (:func:`georeference_gcps`); the ENU origin is the photos'
    GPS origin when they have one, else the GCPs' own. ``enu``: the photos' GPS in that frame, which names the
    photos registered far from where they were taken, taken out."""
    geo, problem, lines = georeference_gcps(pycolmap, model, control,
                                            origin if origin is not None else gcp_origin(control))
    if problem is None and geo.get("transform") is not None and enu:
        geo["photos_taken_out"], said = take_out_far_from_gps(model, enu)
        lines = lines + said
    for line in lines:
        print(line)
    return geo, None, problem


def _beside_photos(photos: Path | None, opts: SfmOptions) -> SfmOptions:
    """``opts`` with the ``gcp_list.txt`` beside the photos as the ground control when none is given (as
    OpenDroneMap does), said in one line."""
    found = Path(photos) / GCP_LIST_NAME if photos is not None else None
    if opts.gcp is not None or found is None or not found.is_file():
        return opts
    print(f"ground control points: {found} (a {GCP_LIST_NAME} beside the photos is used; --gcp gives another)")
    return replace(opts, gcp=str(found))


def _read_control(path: str | None, what: str) -> Control | None:
    """The GCP list at ``path`` (None without one), with heights that say nothing taken as unknown (said)."""
    if path is None:
        return None
    control, line = without_flat_heights(read_control(Path(path)), f"{what} of {path}")
    if line:
        print(line)
    return control


def _on_control(pycolmap, model, geo: dict, control: Control | None, check: Control | None,
                enu: dict[str, np.ndarray]) -> None:
    """The placed model adjusted on its ground control and GPS (on its GPS alone, ``enu``, without control), then
    measured on its check points; the figures into ``geo``, the lines said."""
    origin = np.array([geo["origin"][k] for k in ("lat", "lon", "alt")])
    lines = []
    if control is not None:
        print(f"adjusting the model on {len(control.gcps)} GCPs, its tie points and its photos' GPS ...", flush=True)
        geo["adjustment"], said = adjust_on_control(pycolmap, model, control, origin, enu)
        lines += said
    elif enu:
        print(f"adjusting the model on its tie points and {len(enu)} photos' GPS (--no-adjust-gps leaves it as "
              "placed) ...", flush=True)
        adjusted, said = adjust_on_gps(pycolmap, model, enu)
        if adjusted is not None:
            geo["adjustment"] = adjusted
        lines += said
    if check is not None:
        geo["check_points"], said = check_points(model, check, origin)
        lines += said
    for line in lines:
        print(line)


def _check_options(opts: SfmOptions) -> None:
    """A UserError for an option the run cannot use, before any work."""
    if opts.matcher not in MATCHERS:
        raise UserError(f"unknown matcher '{opts.matcher}' (choose from {', '.join(MATCHERS)})")
    if opts.camera_model not in SUPPORTED_MODELS:
        raise UserError(f"camera model '{opts.camera_model}' is not one training reads (choose from "
                        f"{', '.join(SUPPORTED_MODELS)})")
    if opts.max_size < 64:
        raise UserError(f"--max-size {opts.max_size} is too small for features; use 1000 or more")
    if opts.gps_altitude not in ALTITUDE_MODES:
        raise UserError(f"--gps-altitude {opts.gps_altitude}: choose from {', '.join(ALTITUDE_MODES)}")
    if opts.matcher == "vocab":  # before any work: a file COLMAP cannot read would abort the process later
        steps.check_vocab_tree(Path(opts.vocab_tree) if opts.vocab_tree else None)


def _refuse_existing_scene(out: Path, in_place: bool, overwrite: bool) -> None:
    """A UserError when ``out`` already holds a scene and ``overwrite`` was not asked for (photos in
    ``out/images`` given as the input are not a scene of their own)."""
    if overwrite or not out.is_dir():
        return
    held = _scene_parts(out, in_place)
    if held:
        raise UserError(f"{out} already holds a scene ({', '.join(held)}); give another --out, or --overwrite to "
                        "replace it once this run has succeeded")


def _scene_parts(out: Path, in_place: bool, parts: tuple[str, ...] = SCENE_PARTS) -> list[str]:
    """Which of ``parts`` ``out`` holds (its ``images`` not counted when they are the input photos)."""
    return [part for part in parts if (out / part).exists() and not (part == "images" and in_place)]


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
    try:  # compared whole with the stamp: one that does not parse (or is nested too deeply) differs
        old = parse_json(stamp_path.read_text(), str(stamp_path))
    except (OSError, ValueError, UserError):
        old = None
    if old != stamp:
        database.unlink(missing_ok=True)
        atomic_write_text(stamp_path, json.dumps(stamp, indent=1) + "\n")
    return database


def _write_report(folder: Path, model, report: dict) -> None:
    """The picture (when there is a model), then the report."""
    if model is not None:
        draw_cameras(folder / PICTURE_NAME, model, report, report["georeferenced"])
    atomic_write_text(folder / REPORT_NAME, json.dumps(report, indent=2) + "\n")


def _publish(out: Path, work: Path, staged: Path, in_place: bool, model, report: dict, geo: dict | None,
             overwrite: bool) -> None:
    """Move the scene into place: the model written in ``work``, then (with ``overwrite``) the old scene moved
    aside, the new images, model and georeference renamed into ``out``, the old scene deleted; the report
    last, so a ``sfm.json`` beside ``sparse/0`` means everything beside it is complete."""
    staging, old = work / "sparse-new", work / "replaced"
    for folder in (staging, old):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        (staging / "sparse" / "0").mkdir(parents=True)
        model.write_binary(str(staging / "sparse" / "0"))
        if geo is not None and geo.get("transform") is not None:
            atomic_write_text(staging / GEOREF_NAME, json.dumps(geo, indent=2) + "\n")
        old.mkdir()
        for part in _scene_parts(out, in_place, SCENE_PARTS + (PICTURE_NAME,)):
            os.replace(out / part, old / part)
        if not in_place:
            os.replace(staged, out / "images")
        os.replace(staging / "sparse", out / "sparse")
        if (staging / GEOREF_NAME).exists():
            os.replace(staging / GEOREF_NAME, out / GEOREF_NAME)
    except OSError as exc:
        raise UserError(f"cannot write the scene into {out} ({exc.strerror or exc}); the previous files, if any, "
                        f"are in {old}")
    _write_report(out, model, report)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def run_lines(report: dict, out: Path, runs: Path = Path("runs")) -> list[str]:
    """The summary printed by the command line."""
    run = run_folder_for(out, runs)
    return summary_lines(report) + [f"scene written to {out}; next: mgs train --data {out} --out {run}"]


GENERIC_NAMES = {"data", "scene", "out", "output", "sfm", "colmap", "dataset", "model", "sparse"}


def run_folder_for(scene: Path, runs: Path) -> Path:
    """A run folder under ``runs`` named after the scene (after its parent folder when the scene's own name says
    nothing, as ``site/data`` does), with ``-2``, ``-3``... when that run exists already."""
    resolved = scene.resolve()
    name = resolved.parent.name if resolved.name.lower() in GENERIC_NAMES and resolved.parent.name else resolved.name
    candidate, n = runs / name, 1
    while candidate.exists():
        n += 1
        candidate = runs / f"{name}-{n}"
    return candidate
