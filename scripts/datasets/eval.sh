#!/usr/bin/env bash
# Evaluate trained runs again (e.g. after placing the LPIPS weights) and gather them into one table.
#
#   scripts/datasets/eval.sh OUT_DIR RUN_DIR [RUN_DIR ...]
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR RUN_DIR [RUN_DIR ...]}
shift
PYTHON=${PYTHON:-python}
for run in "$@"; do
    "$PYTHON" -m momentum_gs.cli eval "$run"
done
"$PYTHON" -m momentum_gs.cli table "$@" --out "$OUT"
