"""Mesh extraction on trained runs of the synthetic city: time, size and scores against its ground-truth mesh.

    python scripts/bench_mesh.py RUN [RUN ...] [--trunc 2 4] [--voxel V] [--threshold 0.1] [--out DIR]

For every run and truncation, ``mgs mesh`` (in this process) into DIR/<run name>_t<trunc>.ply, then one
Markdown table row: faces, seconds, F-score, precision, recall, Chamfer, accuracy, completeness (the
scene's ``mesh.ply`` at ``--threshold`` world units), and the held-out depth errors of ``mgs eval`` when the
run has results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from momentum_gs.mesh.extract import extract_mesh
from momentum_gs.mesh.settings import MeshSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--trunc", type=float, nargs="+", default=[2.0], help="truncations in voxels")
    parser.add_argument("--voxel", type=float)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--out", default="runs/bench_mesh")
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        results = Path(run) / "eval" / "results.json"
        depth = json.loads(results.read_text()) if results.is_file() else {}
        for trunc in args.trunc:
            out = Path(args.out) / f"{Path(run).name}_t{trunc:g}.ply"
            summary = extract_mesh(Path(run), out, MeshSettings(voxel=args.voxel, trunc_voxels=trunc),
                                   threshold=args.threshold)
            s = summary["ground_truth"]["scene"] if "ground_truth" in summary else {}
            blocks = " / ".join(f"{b['fscore']:.2f}" for b in summary.get("ground_truth", {}).get("blocks", []))
            rows.append(
                f"| {Path(run).name} | {trunc:g} | {summary['voxel']:.4g} | {summary['faces']:,} | {summary['seconds']:.0f} "
                f"| {s.get('fscore', float('nan')):.3f} | {s.get('precision', float('nan')):.3f} "
                f"| {s.get('recall', float('nan')):.3f} | {s.get('chamfer', float('nan')):.4f} "
                f"| {s.get('accuracy', float('nan')):.4f} | {s.get('completeness', float('nan')):.4f} "
                f"| {blocks} "
                f"| {depth.get('depth_abs_error', float('nan')):.3f} | {depth.get('median_depth_abs_error', float('nan')):.3f} |")
            print(rows[-1], flush=True)
    print(f"\n| run | trunc (voxels) | voxel | triangles | s | F-score @{args.threshold:g} | precision | recall "
          "| Chamfer | accuracy | completeness | F per block | depth err (mean) | depth err (median) |")
    print("|---" * 14 + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
