#!/usr/bin/env bash
# The paper's matrixcity run (momentum_gs/configs/datasets/matrixcity.yaml):  scripts/datasets/matrixcity.sh DATA_DIR [RUN_DIR] [key=value ...]
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [RUN_DIR] [key=value ...]}
RUN=${2:-runs/matrixcity}
shift $(( $# < 2 ? $# : 2 ))
exec "$(dirname "$0")/run.sh" "$(dirname "$0")/../../momentum_gs/configs/datasets/matrixcity.yaml" "$DATA" "$RUN" "$@"
