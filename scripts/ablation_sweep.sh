#!/usr/bin/env bash
# The ablation rows a–f (one block; 4 blocks parallel; 4 and 8 independent blocks; + momentum teacher;
# + block weighting) on one scene, the same steps per block in every row, then the tables and plots.
#
#   scripts/ablation_sweep.sh [OUT_DIR] [--steps N] [--data DIR] [key=value ...]
#
# Without --data, the synthetic city8 (8×4 city blocks, per-image exposure variation) is generated.
# Writes OUT_DIR/{a..f}/ runs, OUT_DIR/ablation.md (with block-steps and wall time per row), and
# OUT_DIR/table/{ablation.md,results.md,*.csv,psnr_vs_steps.png,fps_vs_storage.png} from mgs table.
set -euo pipefail
OUT=${1:-runs/ablation}
shift $(( $# > 0 ? 1 : 0 ))
PYTHON=${PYTHON:-python}
"$PYTHON" "$(dirname "$0")/ablation.py" --out "$OUT" "$@"
RUNS=()
for row in a b c d e f; do
    [ -f "$OUT/$row/eval/results.json" ] && RUNS+=("$OUT/$row")
done
"$PYTHON" -m momentum_gs.cli table "${RUNS[@]}" --ablation --out "$OUT/table"
