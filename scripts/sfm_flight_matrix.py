"""The georeference of `mgs sfm` over the whole matrix of generated flights: every case right side up or
refused, none written wrong. Prints a Markdown table per pattern and the refusals' reasons.

    python scripts/sfm_flight_matrix.py [--matrix base] [--workers 2] [--seed 0] [--adjust] [--every K]
                                        [--json rows.json]

``--matrix distortions``: reconstructions out of shape (sheared, drifting in scale, folded), which must be refused;
``consumer``: a GPS wandering slowly by 15 m, which must still be placed; ``misregistered``: 4 photos registered
far from where they were taken, which must be taken out. ``--adjust``: each model placed is adjusted on its photos
and its GPS, as `mgs sfm` adjusts it, and measured after (about 15 s a placed case). ``--every K`` runs every K-th
case of the matrix, a sample spread over it.

The flights are generated (momentum_gs.data.synthetic.survey.make_flight: poses, sparse points, the median of
what each camera sees, GPS with noise and altitude drift) and put in a random model frame; the georeference
runs on them as on a COLMAP model (momentum_gs.data.sfm.placement.place_on_gps).
"""

from __future__ import annotations

import argparse
import json
import functools
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm

from momentum_gs.data.sfm.flight_matrix import consumer_gps, distortions, matrix, misregistrations, run_case
from momentum_gs.render.kernels.build import describe_cpu

MATRICES = {"base": matrix, "distortions": distortions, "consumer": consumer_gps, "misregistered": misregistrations}


def table(rows: list[dict]) -> list[str]:
    """Markdown: per pattern, cases right side up, refused and wrong, and the worst tilt and fix share placed."""
    by = defaultdict(list)
    for r in rows:
        by[r["pattern"] + (f", {r['distortion']}" if r.get("distortion") else "")].append(r)
    lines = ["| pattern | cases | right side up | refused | **written wrong** | worst tilt placed | fewest fixes used |",
             "|---|---|---|---|---|---|---|"]
    for pattern, group in by.items():
        n = Counter(r["outcome"] for r in group)
        placed = [r for r in group if r["outcome"] != "refused"]
        tilt = max((r["tilt_deg"] for r in placed), default=None)
        used = min((r["fixes_used"] for r in placed), default=None)
        lines.append(f"| {pattern} | {len(group)} | {n['right']} | {n['refused']} | **{n['wrong']}** | "
                     f"{'-' if tilt is None else f'{tilt:.2f}°'} | {'-' if used is None else f'{used:.0%}'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", choices=MATRICES, default="base")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adjust", action="store_true",
                        help="adjust each placed model on its photos and GPS")
    parser.add_argument("--every", type=int, default=1, help="run every K-th case (default: all)")
    parser.add_argument("--json", help="write every case's row here")
    args = parser.parse_args()
    cases, start = MATRICES[args.matrix](args.seed)[::args.every], time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        run = functools.partial(run_case, adjusted=args.adjust)
        rows = list(tqdm(pool.map(run, cases, chunksize=8), total=len(cases), desc="flights", unit="case"))
    sample = f", every {args.every}th case" if args.every > 1 else ""
    print(f"{args.matrix}{', adjusted' if args.adjust else ''}{sample}: {len(rows)} cases in "
          f"{time.perf_counter() - start:.0f} s on {args.workers} worker(s), "
          f"{describe_cpu()}, seed {args.seed}\n")
    print("\n".join(table(rows)))
    reasons = Counter((r["pattern"], r["pitch"], (r["why"] or "").split(":")[0]) for r in rows
                      if r["outcome"] == "refused")
    print("\nrefusals (pattern, pitch, reason):")
    for (pattern, pitch, why), count in sorted(reasons.items()):
        print(f"- {pattern}, pitch {pitch:g}°: {count} × {why}")
    for r in rows:
        if r["outcome"] == "wrong":
            print(f"WRONG: {r}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
