#!/usr/bin/env bash
# The ablation rows a–f (one block; 4 blocks parallel; 4 and 8 independent blocks; + momentum teacher;
# + block weighting) on one scene, the same steps per block in every row, then the tables and plots.
#
#   scripts/ablation_sweep.sh [OUT_DIR] [--steps N] [--data DIR] [key=value ...]
#
# Without --data, the synthetic city8 (8×4 city blocks, per-image exposure variation) is generated.
# Writes OUT_DIR/<row>_s<seed>/ runs, OUT_DIR/ablation.md (mean ± std over --seeds, block-steps, wall time), and
# OUT_DIR/table/{ablation.md,results.md,*.csv,psnr_vs_steps.png,fps_vs_storage.png} from mgs table.
set -euo pipefail
OUT=${1:-runs/ablation}
shift $(( $# > 0 ? 1 : 0 ))
PYTHON=${PYTHON:-python}
"$PYTHON" "$(dirname "$0")/ablation.py" --out "$OUT" "$@"
RUNS=()
for row in a b c d e f; do  # the first seed's run of each row
    first=$( (ls -d "$OUT/${row}"_s* 2>/dev/null || true) | sort | head -n 1)
    [ -n "$first" ] && [ -f "$first/eval/results.json" ] && RUNS+=("$first")
done
"$PYTHON" -m momentum_gs.cli table "${RUNS[@]}" --ablation --out "$OUT/table"
