"""Map a scene's photos again from the feature database `mgs sfm` left, once per seed, and place each model on the
photos' GPS as `mgs sfm` does: how often COLMAP's mapping, which is not deterministic, gives a model that is placed,
and with what focal length against the EXIF's.

    python scripts/sfm_remap.py DATA [--seeds 0 1 2 3] [--threads 2] [--drift 0 120] [--survey-seed 0]
        [--json rows.json]

DATA is the folder `mgs sfm` wrote (DATA/sfm/database.db, DATA/images). Nothing in DATA is changed: each mapping
runs on a copy of the database, with the photos' GPS written into it as pose priors as `mgs sfm` writes them (the
default altitude mode), in a temporary folder. The count of COLMAP's "Alignment w.r.t. prior positions failed"
(the priors left out of a bundle adjustment) is in its log on the terminal. A Markdown table goes to the terminal,
with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from momentum_gs.data.georef import enu_to_wgs84, usable_gps, wgs84_to_enu
from momentum_gs.data.sfm import colmap_steps as steps
from momentum_gs.data.sfm.georeference import georeference, gps_origin, to_enu
from momentum_gs.data.sfm.gps import read_gps
from momentum_gs.data.synthetic.survey import ORIGIN, survey_poses
from momentum_gs.render.kernels.build import describe_cpu


def exif_focal(pycolmap, database: Path) -> float:
    """The mean focal length, pixels, COLMAP read from the photos' EXIF (the first camera's)."""
    db = pycolmap.Database.open(database)
    try:
        return float(db.read_all_cameras()[0].mean_focal_length())
    finally:
        db.close()


def truth_error(model, names: list[str], origin: np.ndarray, survey_seed: int, aspect: float) -> float:
    """Metres RMS, horizontally, between the placed ``model``'s cameras and where a survey of
    ``scripts/synth_survey.py`` (its ``--seed``, default altitude and field of view) truly took its photos."""
    poses = survey_poses(len(names), aspect=aspect, seed=survey_seed)
    truth = wgs84_to_enu(enu_to_wgs84(np.stack([-p[:3, :3].T @ p[:3, 3] for p in poses]), ORIGIN), origin)
    placed = {model.image(i).name: model.image(i).projection_center() for i in model.reg_image_ids()}
    errors = [placed[n][:2] - truth[k, :2] for k, n in enumerate(names) if n in placed]
    return float(np.sqrt((np.array(errors) ** 2).sum(1).mean()))


def remap(pycolmap, data: Path, seed: int, threads: int, drift: float = 0.0, survey_seed: int | None = None) -> dict:
    """One mapping of ``data``'s database with ``seed``, placed on the photos' GPS (its altitudes drifting by
    ``drift`` metres over the flight, in capture order): the table's row."""
    names = sorted(p.name for p in (data / "images").iterdir() if p.is_file())
    gps, _ = usable_gps(read_gps({n: data / "images" / n for n in names})[0])
    for k, name in enumerate(sorted(gps)):
        gps[name] = gps[name] + [0.0, 0.0, drift * (k / max(len(gps) - 1, 1) - 0.5)]
    origin = gps_origin(gps)
    started = time.perf_counter()
    enu = to_enu(gps, origin)
    with tempfile.TemporaryDirectory() as work:
        database = Path(work) / "database.db"  # a copy, its priors written as `mgs sfm` writes them now
        shutil.copyfile(data / "sfm" / "database.db", database)
        steps.write_priors(pycolmap, database, enu, horizontal_only=True)
        (Path(work) / "models").mkdir()
        models = steps.map_images(pycolmap, database, data / "images", Path(work) / "models", len(names), threads,
                                  seed, gps_priors=steps.priors_usable(enu))
    row = {"seed": seed, "drift_m": drift, "registered": 0, "of": len(names), "focal_px": None, "placed": False,
           "why": "no model", "gps_rms_m": None, "truth_rms_m": None,
           "seconds": round(time.perf_counter() - started, 1)}
    if not models:
        return row
    model = models[0]
    geo, _, problem, _ = georeference(pycolmap, model, enu, origin, "auto", names)
    row.update(registered=model.num_reg_images(), focal_px=round(float(model.cameras[1].mean_focal_length()), 1),
               placed=problem is None and geo is not None and geo.get("transform") is not None, why=problem,
               gps_rms_m=None if geo is None else geo.get("residual_horizontal_rms_m"))
    if row["placed"] and survey_seed is not None:
        camera = model.cameras[1]
        row["truth_rms_m"] = round(truth_error(model, names, origin, survey_seed, camera.width / camera.height), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--drift", type=float, nargs="+", default=[0.0],
                        help="the GPS altitudes drift by this many metres over the flight (one table row each)")
    parser.add_argument("--survey-seed", type=int, default=None,
                        help="DATA's photos were made by scripts/synth_survey.py with this --seed: measure the placed "
                             "cameras against where they truly were")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    pycolmap = steps.import_pycolmap()
    focal = exif_focal(pycolmap, args.data / "sfm" / "database.db")
    rows = [remap(pycolmap, args.data, seed, args.threads, drift, args.survey_seed)
            for drift in args.drift for seed in args.seeds]
    print(f"\n{args.data}, {args.threads} thread(s), {describe_cpu()}, pycolmap {pycolmap.__version__}; "
          f"EXIF focal {focal:.1f} px\n")
    print("| altitude drift (m) | seed | registered | focal (px) | placed | GPS residual (m RMS, horizontal) "
          "| cameras from the truth (m RMS, horizontal) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        placed = "yes" if r["placed"] else f"refused: {r['why']}"
        rms, truth = (("-" if r[k] is None else f"{r[k]:.2f}") for k in ("gps_rms_m", "truth_rms_m"))
        print(f"| {r['drift_m']:g} | {r['seed']} | {r['registered']} of {r['of']} | {r['focal_px']} | {placed} | "
              f"{rms} | {truth} | {r['seconds']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
