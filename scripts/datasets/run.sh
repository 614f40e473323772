#!/usr/bin/env bash
# Partition, train and evaluate one scene with one config; what every per-dataset script calls.
#
#   scripts/datasets/run.sh CONFIG DATA_DIR RUN_DIR [key=value ...]
#
# 1. mgs partition with the config's box and grid (skipped when RUN_DIR/partition.npz exists); PARTITION_ARGS
#    adds flags, e.g. PARTITION_ARGS="--cameras-from DATA/data_partitions/block8_ssim0.05.npy" to train on
#    the authors' own camera assignment, or "--coarse COARSE_RUN" to make it by their rule;
# 2. mgs train on every GPU of this machine (torchrun, one process per GPU; plain mgs train with one GPU
#    or none), resuming RUN_DIR when it already holds checkpoints;
# 3. mgs eval (PSNR, SSIM, LPIPS-VGG when its weights are present, colour-corrected columns) and
#    mgs table (ours beside the paper's numbers) into RUN_DIR/table.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG DATA_DIR RUN_DIR [key=value ...]" >&2
    exit 2
fi
CONFIG=$1 DATA=$2 RUN=$3
shift 3
PYTHON=${PYTHON:-python}
MGS=("$PYTHON" -m momentum_gs.cli)
mkdir -p "$RUN"
if [ ! -f "$RUN/partition.npz" ]; then
    # shellcheck disable=SC2086
    "${MGS[@]}" partition --config "$CONFIG" --data "$DATA" --out "$RUN/partition.npz" ${PARTITION_ARGS:-}
fi
RESUME=()
if compgen -G "$RUN/ckpt/step_*.pt" > /dev/null; then
    RESUME=(--resume)
fi
NPROC=${NPROC:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")}
if [ "$NPROC" -gt 1 ]; then
    NPROC=$NPROC "$(dirname "$0")/../train_multi_gpu.sh" --config "$CONFIG" --data "$DATA" --out "$RUN" \
        "${RESUME[@]}" "blocks.partition=$RUN/partition.npz" "$@"
else
    "${MGS[@]}" train --config "$CONFIG" --data "$DATA" --out "$RUN" "${RESUME[@]}" \
        "blocks.partition=$RUN/partition.npz" "$@"
fi
"${MGS[@]}" eval "$RUN"
"${MGS[@]}" table "$RUN" --out "$RUN/table"
