"""`mgs sfm` against photo count and --max-size: seconds per phase (features, matching, mapping), wall time
and peak memory (the child process's maximum resident set), one fresh output folder per run.

    python scripts/bench_sfm.py PHOTOS --sizes 1600 2400 3200 [--threads 2] [--work /tmp/bench_sfm] [-- --matcher spatial]

Prints one Markdown table row per run; the CPU's model and ISA head the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else platform.machine()
    return f"{model}, {isa}"


def run(photos: Path, out: Path, max_size: int, threads: int, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "sfm", str(photos), "--out", str(out),
                           "--max-size", str(max_size), "--threads", str(threads), *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report_path = out / "sfm.json" if (out / "sfm.json").exists() else out / "sfm" / "sfm.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"rc": done.returncode, "wall": wall, "peak_mb": max(peak, before) / 1024, "report": report,
            "tail": done.stderr.strip().splitlines()[-1:] if done.returncode else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1600, 2400, 3200])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_sfm"))
    args, extra = parser.parse_known_args()  # more mgs sfm options, after --
    args.extra = [a for a in extra if a != "--"]
    count = sum(1 for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))
    print(f"CPU: {cpu()}; {args.threads} COLMAP threads; {count} photos in {args.photos}")
    print("| photos | --max-size | features s | matcher | matching s (pairs) | mapping s | wall s | peak memory MB "
          "| registered | GPS RMS m (horizontal) |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        # one child per run: ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so sizes go upward
        r = run(args.photos, args.work / f"s{size}", size, args.threads, args.extra)
        rep, ph = r["report"], r["report"].get("phase_seconds", {})
        print(f"| {count} | {size} | {ph.get('features', '-')} | {rep.get('matcher', '-')} | {ph.get('matching', '-')} "
              f"({rep.get('pairs_matched', '-')}) | {ph.get('mapping', '-')} | {r['wall']:.0f} | {r['peak_mb']:.0f} | "
              f"{rep.get('images_registered', '-')}/{rep.get('images_total', '-')} | "
              f"{rep.get('gps_residual_horizontal_rms_m') or '-'} |"
              + (f" exit {r['rc']}: {r['tail']}" if r["rc"] else ""), flush=True)


if __name__ == "__main__":
    main()
