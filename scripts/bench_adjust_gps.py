"""The GPS adjustment of `mgs sfm` on a generated survey: the same model placed, and adjusted as the default adjusts
it, each measured against where the photos were taken.

    python scripts/bench_adjust_gps.py OUT [--photos 40] [--size 800 600] [--threads 1 2]

Writes the survey of scripts/synth_survey.py (GPS right to 1 m) once, then per thread count runs
`mgs sfm --no-adjust-gps`, adjusts the model it wrote on its photos and GPS
(:func:`momentum_gs.data.sfm.control.adjust_on_gps`, in memory), and prints a Markdown row for each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from momentum_gs.cli import main as mgs
from momentum_gs.data.georef import enu_to_wgs84, origin_of, read_georef, wgs84_to_enu
from momentum_gs.data.sfm.control import adjust_on_gps
from momentum_gs.data.sfm.georeference import to_enu
from momentum_gs.data.sfm.gps import read_gps
from momentum_gs.data.synthetic.survey import ORIGIN, write_survey


def to_truth(model, origin: np.ndarray, truth: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """([K] horizontal, [K] vertical metres) between each registered camera of ``model`` (ENU at ``origin``) and
    where it was."""
    ids = model.reg_image_ids()
    placed = np.stack([model.image(i).projection_center() for i in ids])
    true = wgs84_to_enu(enu_to_wgs84(np.stack([truth[model.image(i).name] for i in ids]), ORIGIN), origin)
    return np.linalg.norm(placed[:, :2] - true[:, :2], axis=1), np.abs(placed[:, 2] - true[:, 2])


def row(name: str, threads: int, n: int, horizontal: np.ndarray, vertical: np.ndarray, extra: str) -> str:
    rms = lambda d: float(np.sqrt((d ** 2).mean()))  # noqa: E731
    return (f"| {threads} | {name} | {len(horizontal)} / {n} | {rms(horizontal):.2f} | {horizontal.max():.2f} | "
            f"{rms(vertical):.2f} | {extra} |")


def main() -> None:
    import pycolmap

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--size", type=int, nargs=2, default=[800, 600], metavar=("W", "H"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    photos = args.out / "photos"
    truth = write_survey(photos, args.photos, *args.size, workers=2)
    print(f"{platform.processor() or platform.machine()}; {args.photos} photos at {args.size[0]} x {args.size[1]}\n")
    print("| threads | model | registered | horizontal RMS m | largest m | vertical RMS m | |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        placed = args.out / f"placed_t{threads}"
        shutil.rmtree(placed, ignore_errors=True)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = mgs(["sfm", str(photos), "--out", str(placed), "--threads", str(threads), "--no-adjust-gps"])
        seconds = time.perf_counter() - started
        if code != 0:
            print(f"| {threads} | refused | | | | | {seconds:.0f} s |")
            continue
        model, origin = pycolmap.Reconstruction(str(placed / "sparse" / "0")), origin_of(read_georef(placed))
        print(row("placed", threads, args.photos, *to_truth(model, origin, truth), f"mgs sfm {seconds:.0f} s"))
        gps, _, _ = read_gps({model.image(i).name: photos / model.image(i).name for i in model.reg_image_ids()})
        figures, _ = adjust_on_gps(pycolmap, model, to_enu(gps, origin))
        print(row("adjusted", threads, args.photos, *to_truth(model, origin, truth),
                  f"moved {figures['camera_moved_rms_m']:.3f} m RMS, {figures['camera_moved_max_m']:.3f} m at most, "
                  f"in {figures['seconds']:.1f} s"))


if __name__ == "__main__":
    main()
