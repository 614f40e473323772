"""Ground control and check points on generated surveys: the check points' errors with the GPS alone (placed, and
adjusted on it), with GCPs, and with GCPs whose heights are all 0 (horizontal control), over several seeds.

    python scripts/bench_control.py OUT [--seeds 0 1 2] [--gps-noise 15] [--mark-px 0.5]

Each seed renders the 16-view flight of tests/helpers/control_survey.py with its own GPS error and marking error,
then runs `mgs sfm` (one COLMAP thread) four times. Prints a Markdown table (COLMAP's progress bars go to the
terminal: keep the lines starting with "|").
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.cli import main as mgs  # noqa: E402
from tests.helpers.control_survey import (CHECK_SPOTS, GCP_SPOTS, GSD_M, flight, write_control,  # noqa: E402
                                          write_photos)

RUNS = {"GPS alone, placed": ["--no-adjust-gps"], "GPS alone, adjusted": [], "GPS + GCPs": ["--gcp", "gcp.txt"],
        "GPS + GCPs, heights 0": ["--gcp", "flat.txt"]}


def one(root: Path, name: str, options: list[str]) -> tuple[dict, float]:
    out = root / name.replace(" ", "_").replace(",", "").replace("+", "and")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = mgs(["sfm", str(root / "photos"), "--out", str(out), "--threads", "1", "--check",
                    str(root / "check.txt"), *[str(root / o) if o.endswith(".txt") else o for o in options]])
    seconds = time.perf_counter() - started
    if code != 0:
        failed = json.loads((out / "sfm" / "sfm.json").read_text()) if (out / "sfm" / "sfm.json").is_file() else {}
        return {"refused": failed.get("problem", f"exit {code}")}, seconds
    report = json.loads((out / "sfm.json").read_text())
    return {**report["check_points"], "adjust_s": (report.get("adjustment") or {}).get("seconds")}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gps-noise", type=float, default=15.0)
    parser.add_argument("--mark-px", type=float, default=0.5)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}; GSD {GSD_M:.3f} m; GPS {args.gps_noise:g} m per axis; "
          f"marks {args.mark_px:g} px; {len(GCP_SPOTS)} GCPs, {len(CHECK_SPOTS)} check points\n")
    print("| seed | run | check points | horizontal RMSE m | CE90 m | vertical RMSE m | LE90 m | sfm s | "
          "adjustment s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        root = args.out / f"seed{seed}"
        poses = flight()
        write_photos(root / "photos", poses, args.gps_noise, seed)
        write_control(root / "gcp.txt", poses, GCP_SPOTS, "gcp", args.mark_px, seed)
        write_control(root / "flat.txt", poses, GCP_SPOTS, "gcp", args.mark_px, seed, height=False)
        write_control(root / "check.txt", poses, CHECK_SPOTS, "check", args.mark_px, seed + 100)
        for name, options in RUNS.items():
            c, seconds = one(root, name, options)
            if "refused" in c:
                print(f"| {seed} | {name} | refused: {c['refused'].split(';')[0]} | | | | | {seconds:.0f} | |")
                continue
            print(f"| {seed} | {name} | {c['count']} | {c['rmse_horizontal_m']:.3f} | {c['ce90_m']:.3f} | "
                  f"{c.get('rmse_vertical_m', float('nan')):.3f} | {c.get('le90_m', float('nan')):.3f} | "
                  f"{seconds:.0f} | {c['adjust_s'] if c['adjust_s'] is not None else '-'} |")


if __name__ == "__main__":
    main()
