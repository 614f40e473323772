#!/usr/bin/env python3
"""Render speed of a trained run, measured the paper's way, with the time split by phase.

The paper's FPS (SPEC §3.5): the synchronised wall time of one render call per held-out view (anchor
pre-filter + neural-Gaussian decoding + rasterization), the first 5 renders discarded, FPS = 1 / mean. Here
the held-out views are rendered in turn, ``--warmup`` renders first (not timed), then ``--rounds`` passes over
every view, each render call timed alone (RGB only, at the run's evaluation resolution). A second pass
times the three phases apart, synchronised after each (so its total is a little above the first's), and
``--profile`` prints PyTorch's profiler table of a few warm renders.

    python scripts/bench_render.py RUN [--device cuda] [--backend builtin|gsplat] [--rounds 5] [--profile]
        [--downsample N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.trained import load_run
from momentum_gs.model.gaussian_scene import PartsScene, gaussian_tensors, rasterize, resolve_backend
from momentum_gs.model.neural import anchor_mask, generate_gaussians
from momentum_gs.render.kernels import describe_cpu, kernels_in_use


def synchronized(device: torch.device) -> float:
    """Wall-clock seconds after the device's queued work has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def describe_device(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and vector extensions."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{describe_cpu()} (torch {torch.__version__}, {torch.get_num_threads()} thread(s))"


def parts_of(model) -> tuple[list, torch.Tensor | None]:
    """The (anchors, decoder) parts of a merged model and the appearance code evaluation uses (the mean)."""
    if isinstance(model, PartsScene):
        return model.parts, None
    code = None if model.appearance is None else model.appearance.weight.mean(0)
    return [(model.anchors, model.decoder)], code


def phase_times(model, camera, render_cfg, backend: str) -> dict[str, float]:
    """Seconds of one render's pre-filter, decoding (decoder and kept children) and rasterization, each
    synchronised; and the Gaussians rasterized."""
    parts, code = parts_of(model)
    device = model.device
    start = synchronized(device)
    masks = [anchor_mask(anchors, camera, render_cfg.near, render_cfg.anchor_filter) for anchors, _ in parts]
    filtered = synchronized(device)
    decoded = [generate_gaussians(anchors, decoder, camera, code, near=render_cfg.near, visible=mask)
               for (anchors, decoder), mask in zip(parts, masks)]
    tensors = gaussian_tensors(decoded)
    decoded_at = synchronized(device)
    rasterize(tensors, camera, render_cfg, backend)
    done = synchronized(device)
    return {"filter": filtered - start, "decode": decoded_at - filtered, "rasterize": done - decoded_at,
            "gaussians": int(tensors[0].shape[0]), "visible_anchors": int(sum(int(m.sum()) for m in masks))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--device", help="default: the run's config")
    parser.add_argument("--backend", help="builtin or gsplat (default: the run's render.backend)")
    parser.add_argument("--warmup", type=int, default=5, help="renders before the clock starts (the paper's 5)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the held-out views")
    parser.add_argument("--profile", action="store_true", help="print the profiler's table of 3 warm renders")
    parser.add_argument("--downsample", type=int, help="render at this data.downsample instead of the run's")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    device = torch.device(args.device) if args.device else None
    cfg, model, step = load_run(args.run_dir, device)
    model.eval()
    if args.downsample:
        cfg.data.downsample = args.downsample
    device = model.device
    backend = resolve_backend(args.backend or cfg.render.backend, device)
    render_cfg = cfg.render
    cameras = [camera.to(device) for camera in load_scene(cfg.data, images=False).test]
    if not cameras:
        sys.exit(f"bench_render.py: {cfg.data.path} has no held-out views")
    width, height = cameras[0].width, cameras[0].height
    kernels = kernels_in_use(device) if backend == "builtin" else "gsplat"

    with torch.no_grad():
        for i in range(args.warmup):
            model.render(cameras[i % len(cameras)], render_cfg, backend=backend)
        seconds = []
        for _ in range(args.rounds):
            for camera in cameras:
                started = synchronized(device)
                model.render(camera, render_cfg, backend=backend)
                seconds.append(synchronized(device) - started)
        phases = [phase_times(model, camera, render_cfg, backend) for camera in cameras * max(1, args.rounds // 2)]
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=activities) as prof:
                for camera in cameras[:3]:
                    model.render(camera, render_cfg, backend=backend)
                synchronized(device)
            sort = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=sort, row_limit=25))

    mean = statistics.fmean(seconds)
    result = {
        "run": str(args.run_dir), "step": step, "device": describe_device(device), "backend": backend,
        "kernels": kernels, "resolution": f"{width}x{height}", "views": len(cameras), "timed_renders": len(seconds),
        "anchors": model.num_anchors,
        "gaussians_per_view": statistics.fmean(p["gaussians"] for p in phases),
        "visible_anchors_per_view": statistics.fmean(p["visible_anchors"] for p in phases),
        "ms_per_view": 1000 * mean, "fps": 1.0 / mean, "fps_slowest_view": 1.0 / max(seconds),
        "phase_ms": {name: 1000 * statistics.fmean(p[name] for p in phases)
                     for name in ("filter", "decode", "rasterize")},
        "python": platform.python_version(),
    }
    print(f"{result['device']}, {backend} ({kernels}), {width}x{height}, {len(cameras)} views x {args.rounds} rounds "
          f"after {args.warmup} warm-up renders")
    print(f"{result['anchors']} anchors, {result['visible_anchors_per_view']:.0f} visible and "
          f"{result['gaussians_per_view']:.0f} Gaussians per view")
    print(f"render call: {result['ms_per_view']:.2f} ms = {result['fps']:.1f} FPS (slowest view "
          f"{result['fps_slowest_view']:.1f} FPS)")
    print("phases (ms, synchronised apart): " + ", ".join(f"{k} {v:.2f}" for k, v in result["phase_ms"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
