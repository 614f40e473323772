#!/usr/bin/env bash
# Train on every GPU of this machine, one process per GPU:
#
#   scripts/train_multi_gpu.sh --config ablation/f_full8.yaml --data data/city --out runs/city8 \
#       blocks.partition=runs/city8/partition.npz blocks.active=4
#
# NPROC sets the number of processes (default: the number of GPUs, or 2 CPU processes on a machine without
# one, which then share its cores through gloo). blocks.active must be at least NPROC. A worker that dies
# makes torchrun restart the job up to MAX_RESTARTS times (default 3); it resumes from the last checkpoint
# (set log.checkpoint_every to choose how much can be lost).
set -euo pipefail
PYTHON=${PYTHON:-python}
NPROC=${NPROC:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count() or 2)")}
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
    --max-restarts="${MAX_RESTARTS:-3}" -m momentum_gs.cli train "$@"
