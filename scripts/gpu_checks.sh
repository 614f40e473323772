#!/usr/bin/env bash
# Every check and benchmark that needs a CUDA GPU, in parts that each fit in a few minutes.
#
#   bash scripts/gpu_checks.sh OUT [tests] [bench] [knn] [distributed] [fps] [cores]   (none named: the first five)
#
#   tests        python -m pytest -m cuda tests/: gsplat against the torch backend (image and every gradient,
#                the same PSNR after training), the pinned image loader, blocks restored onto the GPU, and
#                the synchronizing calls of a training step, gsplat's depth and normal maps, a mesh made on the GPU
#   bench        scripts/bench_gpu.py: steps/s, render FPS and peak memory of both backends on the city8
#                synthetic city and on brighton_beach at full resolution (BENCH_STEPS steps, default 2000;
#                BENCH_ARGS passes more arguments, e.g. "--scenes city")
#   knn          scripts/bench_knn.py --device cuda: initial-scale kNN, scipy on the host against the GPU
#   distributed  scripts/bench_distributed.py --device cuda with 1 process and one per GPU (when > 1)
#   fps          brighton_beach at full resolution (1949x1093) trained FPS_STEPS steps (default 2000) with gsplat,
#                then scripts/bench_render.py with each backend: the evaluation render's FPS the paper's way
#                (render call alone, warm, synchronised) and its phases; BRIGHTON names the scene folder
#   cores        one block of brighton_beach at 1/2 on the host's CPU (device=cpu), scripts/bench_views.py: one
#                thread, one process of every core, V view processes of one thread (V = 2, 4, 8 and 15, its
#                training views, up to the cores) and of cores/V threads each, and the ceiling of 4 one-thread
#                runs; one round each (about 5 minutes)
#
# Writes OUT/gpu.txt (the GPU and the software), OUT/<part>.log for each part and OUT/summary.txt (each
# part's exit status); the training runs themselves go under WORK (default runs/gpu_checks). A failing part is reported and the next one still runs; the exit status is the
# number of failed parts. Needs `pip install .[cuda]` (gsplat 1.5.3 compiles its kernels on first use).
set -u
if [ $# -lt 1 ]; then
  echo "usage: bash scripts/gpu_checks.sh OUT [tests] [bench] [knn] [distributed] [fps] [cores]" >&2
  exit 2
fi
out=$(realpath -m "$1")
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests bench knn distributed fps)
for part in "${parts[@]}"; do
  case $part in
    tests|bench|knn|distributed|fps|cores) ;;
    *) echo "gpu_checks.sh: unknown part '$part' (tests, bench, knn, distributed, fps, cores)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
if ! $PYTHON -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_checks.sh: no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)" >&2
  exit 2
fi
work=${WORK:-runs/gpu_checks}
mkdir -p "$out" "$work"
gpus=$($PYTHON -c "import torch; print(torch.cuda.device_count())")
$PYTHON - > "$out/gpu.txt" <<'EOF'
import importlib.util, platform, torch
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB")
gsplat = "gsplat " + __import__("gsplat").__version__ if importlib.util.find_spec("gsplat") else "gsplat not installed"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gsplat}, Python {platform.python_version()}")
EOF
cat "$out/gpu.txt"

run_part() {
  local part=$1
  shift
  echo "== $part: $*"
  local start=$SECONDS
  "$@" 2>&1 | tee "$out/$part.log"
  local status=${PIPESTATUS[0]}
  echo "$part: exit $status after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  return "$status"
}

failed=0
for part in "${parts[@]}"; do
  case $part in
    tests) run_part tests $PYTHON -m pytest -m cuda -rs -q tests ;;
    bench) run_part bench $PYTHON scripts/bench_gpu.py --steps "${BENCH_STEPS:-2000}" --out "$work/bench_gpu" \
             ${BENCH_ARGS:-} ;;
    knn) run_part knn $PYTHON scripts/bench_knn.py --device cuda --json "$out/knn.json" ;;
    distributed)
      procs="1"
      [ "$gpus" -gt 1 ] && procs="1 $gpus"
      # shellcheck disable=SC2086
      run_part distributed $PYTHON scripts/bench_distributed.py --device cuda --procs $procs \
        --data "$work/synthetic_demo" --out "$work/bench_distributed" ;;
    fps)
      brighton=${BRIGHTON:-../shared/datasets/brighton_beach}
      run_part fps bash -c "set -e
        $PYTHON -m momentum_gs.cli train --config brighton_beach.yaml --data '$brighton' --out '$work/fps' \
          data.downsample=1 optim.steps=${FPS_STEPS:-2000} device=cuda render.backend=gsplat log.tensorboard=false
        $PYTHON scripts/bench_render.py '$work/fps' --backend gsplat --rounds 10 --profile --json '$out/fps_gsplat.json'
        $PYTHON scripts/bench_render.py '$work/fps' --backend torch --rounds 3 --json '$out/fps_torch.json'
        $PYTHON -m momentum_gs.cli eval '$work/fps' --no-images" ;;
    cores)
      brighton=${BRIGHTON:-../shared/datasets/brighton_beach}
      count=$($PYTHON -c "from momentum_gs.config.device import cores; print(cores()[0])")
      views="$PYTHON scripts/bench_views.py --data '$brighton' --config brighton_beach.yaml --rounds 1 --steps 64 \
        --warmup 16"
      run_part cores bash -c "set -e
        $views --views 4 --settings threads=1 threads=0 ceiling -- data.downsample=2 device=cpu
        for v in 2 4 8 15; do
          [ \$v -le $count ] || continue
          $views --views \$v --settings views-plain -- data.downsample=2 device=cpu
          if [ \$(($count / \$v)) -ge 2 ]; then
            $views --views \$v --view-threads \$(($count / \$v)) --settings views-plain -- data.downsample=2 device=cpu
          fi
        done" ;;
  esac || failed=$((failed + 1))
done
echo "gpu_checks.sh: ${#parts[@]} part(s), $failed failed; logs in $out"
exit "$failed"
