#!/usr/bin/env bash
# Installs momentum_gs into the current Python without ever letting pip choose a PyTorch build.
#  - PyTorch already importable (a GPU user's CUDA build, say): it is kept exactly as it is.
#  - No PyTorch: the CPU build is installed first (a few hundred MB instead of several GB of CUDA wheels).
# Then the package and its other dependencies are installed with torch pinned to the version present.
set -euo pipefail
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
EXTRAS=${EXTRAS:-test,sfm,maps}
cd "$(dirname "$0")/.."
# pip -q says nothing for minutes while it downloads and unpacks: a line every 5 s says it is still at work.
ticking() {
    "$@" & local pid=$! start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        for _ in 1 2 3 4 5; do sleep 1; kill -0 "$pid" 2>/dev/null || break; done
        kill -0 "$pid" 2>/dev/null && echo "setup: pip is still at work ($((SECONDS - start)) s)"
    done
    wait "$pid"
}

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "setup: installing the CPU build of PyTorch $TORCH_VERSION"
    ticking "$PYTHON" -m pip install -q --retries 0 --timeout 15 \
        --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION" 2>/dev/null \
    || ticking "$PYTHON" -m pip install -q "torch==$TORCH_VERSION"
fi
# -W ignore: torch warns "Failed to initialize NumPy" when numpy is not installed yet (it comes next)
installed=$("$PYTHON" -W ignore -c "import torch; print(torch.__version__.split('+')[0])")
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
# A constraint (not a requirement): pip may keep the installed torch but never replace it.
echo "torch==$installed" > "$constraints"
# Installed already, from this checkout? (Asked from another folder, so the checkout itself cannot answer.)
here=$PWD
# The CPU kernels, built now (once per install and CPU target) rather than silently in the first command.
build_kernels() {
    "$PYTHON" -c "from momentum_gs.render.kernels import kernels_in_use; print('setup:', kernels_in_use())"
}
if (cd / && "$PYTHON" -c "import torch, numpy, scipy, plyfile, cv2, tqdm, yaml, tensorboard, ninja, pytest, xdist, hypothesis, pycolmap, piexif, pyproj, rasterio, laspy, viser, websocket" \
    2>/dev/null) \
   && [ "$(cd / && "$PYTHON" -c 'import momentum_gs, pathlib; print(pathlib.Path(momentum_gs.__file__).resolve().parents[1])' 2>/dev/null)" = "$here" ]; then
    echo "setup: momentum_gs and its dependencies are installed (torch $installed)"
    build_kernels
    exit 0
fi
echo "setup: installing momentum_gs[$EXTRAS] (torch $installed kept)"
PIP_CONSTRAINT="$constraints" ticking "$PYTHON" -m pip install -q -e ".[$EXTRAS]"
"$PYTHON" -c "import torch, momentum_gs; print(f'setup: momentum_gs {momentum_gs.__version__} with torch {torch.__version__}')"
build_kernels
