#!/usr/bin/env python3
"""The two render backends on one GPU: training steps/s, render FPS of the trained model, peak GPU memory.

For each scene (the synthetic city at full size; the brighton_beach drone capture at full resolution,
``data.downsample=1``) and each backend ("torch", "gsplat"), trains ``--steps`` steps with
``mgs train ... render.backend=B device=cuda``, evaluates the run with ``mgs eval`` (its results.json gives
the render FPS of the merged model and its peak render memory), and prints one markdown table under the
GPU's name. Peak training memory is ``torch.cuda.max_memory_allocated`` of the training process.
``--device cpu --backends torch`` gives the same table for the CPU (peak resident memory instead).

    python scripts/bench_gpu.py --steps 2000 [--scenes city brighton] [--backends torch gsplat] [key=value ...]

The city (``mgs synth --preset city8`` by default) is generated and partitioned into --blocks blocks under
--out when missing, and trained block-wise with the shipped demo.yaml; brighton_beach with its own config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "momentum_gs" / "configs"  # the shipped configs
SHARED = Path(os.environ.get("MGS_SHARED", REPO.parent / "shared"))

# `mgs ARGS` in a child process (argv: peak file, device, ARGS) that afterwards writes its peak memory (MB) to
# the peak file: memory allocated by PyTorch on a CUDA device, the process's peak resident memory otherwise
# (ru_maxrss is in KiB on Linux, bytes on macOS).
MGS_WITH_PEAK = (
    "import json, resource, sys, torch\n"
    "from momentum_gs.cli import main\n"
    "status = main(sys.argv[3:])\n"
    "if sys.argv[2].startswith('cuda'):\n"
    "    peak = torch.cuda.max_memory_allocated(sys.argv[2]) / 2**20\n"
    "else:\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == 'darwin' else 2**10)\n"
    "open(sys.argv[1], 'w').write(json.dumps(peak))\n"
    "sys.exit(status)\n"
)


def scenes(args) -> dict[str, tuple[Path, list[str]]]:
    """Scene name -> (data folder, mgs train arguments that set it up)."""
    city, partition = args.out / f"synthetic_{args.city_preset}", args.out / f"{args.city_preset}_blocks.npz"
    if "city" in args.scenes and not (city / "train").is_dir():
        mgs("synth", str(city), "--preset", args.city_preset)
    if "city" in args.scenes and not partition.is_file():
        mgs("partition", "--data", str(city), "--out", str(partition), "--blocks", str(args.blocks))
    if "brighton" in args.scenes and not (args.brighton / "sparse").is_dir():
        sys.exit(f"bench_gpu.py: brighton_beach not found at {args.brighton}; pass --brighton PATH")
    table = {"city": (city, ["--config", str(CONFIGS / "demo.yaml"), f"blocks.partition={partition}"]),
             "brighton": (args.brighton, ["--config", str(CONFIGS / "brighton_beach.yaml"),
                                          "data.downsample=1"])}
    return {name: table[name] for name in args.scenes}


def mgs(*args: str) -> None:
    """Run ``mgs ARGS`` in a child process; stop on failure."""
    subprocess.run([sys.executable, "-m", "momentum_gs.cli", *args], check=True, cwd=REPO)


def bench(data: Path, setup: list[str], backend: str, args) -> dict:
    """Train and evaluate one run; returns its row of the table."""
    out = args.out / f"{data.name}_{backend}"
    shutil.rmtree(out, ignore_errors=True)
    peak_file = args.out / f"{out.name}_peak.json"
    train = ["train", "--data", str(data), "--out", str(out), *setup, f"optim.steps={args.steps}",
             f"render.backend={backend}", f"device={args.device}", "log.tensorboard=false", *args.overrides]
    subprocess.run([sys.executable, "-c", MGS_WITH_PEAK, str(peak_file), args.device, *train], check=True,
                   cwd=REPO)
    mgs("eval", str(out), "--no-images")
    summary = json.loads((out / "summary.json").read_text())
    results = json.loads((out / "eval" / "results.json").read_text())
    return {"steps_per_second": summary["steps_per_second"], "train_mb": json.loads(peak_file.read_text()),
            "fps": results["fps"], "render_mb": results["peak_render_memory_mb"], "psnr": results["psnr"]}


def warm_up_gsplat() -> None:
    """Render one splat with gsplat, so that its CUDA extension is compiled (JIT, minutes the first time on a
    machine; cached in TORCH_EXTENSIONS_DIR) before any timed run."""
    from momentum_gs.render import render

    print("gsplat: loading its CUDA extension (compiled on first use)", flush=True)
    one = dict(means=torch.tensor([[0.0, 0.0, 2.0]]), quats=torch.tensor([[1.0, 0, 0, 0]]),
               scales=torch.full((1, 3), 0.1), opacities=torch.tensor([0.5]), colors=torch.ones(1, 3),
               world_to_cam=torch.eye(4), K=torch.tensor([[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]]))
    render(**{k: v.cuda() for k, v in one.items()}, width=16, height=16, backend="gsplat")
    torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps of every run (optim.steps)")
    parser.add_argument("--scenes", nargs="+", choices=["city", "brighton"], default=["city", "brighton"])
    parser.add_argument("--backends", nargs="+", choices=["torch", "gsplat"], default=["torch", "gsplat"])
    parser.add_argument("--city-preset", default="city8", help="mgs synth preset of the synthetic city")
    parser.add_argument("--blocks", type=int, default=4, help="blocks of the city (demo.yaml trains 2 at a time)")
    parser.add_argument("--brighton", type=Path, default=SHARED / "datasets" / "brighton_beach")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_gpu")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a baseline of the torch backend")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for every run")
    args = parser.parse_args()
    try:
        torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a device (cuda, cuda:1, cpu)")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU: torch.cuda.is_available() is False (CPU-only torch, or no GPU); "
                 "--device cpu --backends torch measures the CPU")
    if "gsplat" in args.backends:
        from momentum_gs.render.gsplat_backend import gsplat_problem

        if (problem := gsplat_problem(args.device)) is not None:
            sys.exit(f"bench_gpu.py: {problem}; or pass --backends torch")
        warm_up_gsplat()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        rows = [(name, backend, bench(data, setup, backend, args))
                for name, (data, setup) in scenes(args).items() for backend in args.backends]
    except subprocess.CalledProcessError as exc:
        sys.exit(f"bench_gpu.py: a run failed (exit status {exc.returncode}); its error is above")
    on_gpu = args.device.startswith("cuda")
    machine = torch.cuda.get_device_name(args.device) if on_gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{machine}, {args.steps} steps per run\n")
    memory = "peak train memory (MB)" if on_gpu else "peak train RSS (MB)"
    print(f"| scene | backend | train steps/s | {memory} | render FPS | peak render memory (MB) | PSNR (dB) |")
    print("|---|---|---|---|---|---|---|")
    for name, backend, r in rows:
        render_mb = "–" if r["render_mb"] is None else f"{r['render_mb']:.0f}"
        print(f"| {name} | {backend} | {r['steps_per_second']:.2f} | {r['train_mb']:.0f} | {r['fps']:.1f} "
              f"| {render_mb} | {r['psnr']:.2f} |")


if __name__ == "__main__":
    main()
