#!/usr/bin/env python3
"""Run the ablation rows a–f of the paper (SPEC §3.4) on one scene and write the table beside the paper's.

Every row trains the same number of steps per block, as the paper does, with the Momentum-GS settings of
momentum_gs/configs/ablation/*.yaml; a run shorter than the paper's 60k steps per block compresses every step-counted
setting by the one factor steps / 60000 (``schedule_overrides``). The table reports each row's total
block-steps and wall time beside its metrics.

    python scripts/ablation.py --data data/synthetic_city8 --out runs/ablation --steps 500 [--rows abcdef]
        [--seeds 0 1 2] [--jobs 2 --threads 1] [--tag NAME] [key=value ...]

Runs that finished are not trained again, and a killed run resumes from its last checkpoint, so the same
command continues an interrupted sweep. ablation.md gives mean ± standard deviation over the seeds.

Without a scene at --data, the synthetic ``city8`` preset (with per-image exposure variation) is generated.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from momentum_gs.config import load_config
from momentum_gs.data.synthetic import make_synthetic_scene
from momentum_gs.eval.evaluate import evaluate_run
from momentum_gs.eval.table import PAPER_ABLATION
from momentum_gs.io.checkpoint import latest_checkpoint
from momentum_gs.partition.run import partition_main
from momentum_gs.train.run import train

CONFIGS = Path(__file__).resolve().parents[1] / "momentum_gs" / "configs" / "ablation"
# row: (config file, number of blocks); the settings' names and the paper's numbers are in PAPER_ABLATION
ROWS = {"a": ("a_one_block", 1), "b": ("b_parallel4", 4), "c": ("c_independent4", 4),
        "d": ("d_independent8", 8), "e": ("e_momentum8", 8), "f": ("f_full8", 8)}


# The step-counted settings of the paper's runs (60k steps per block; the shipped datasets/*.yaml). A shorter run
# multiplies every one of them by the same factor, steps / 60000 (at least 1 step each). Not compressed:
# strategy.update_interval (25), the number of views whose statistics each growing/pruning decision averages
# (an anchor needs > 0.8 x 25 visits). Compressed to 1 step it let every anchor grow after one view:
# row e at 150 steps per block went from ~5k to 80k anchors per block by its 75th step.
PAPER_STEPS = 60_000
PAPER_SCHEDULE = {"optim.lr_max_steps": 30_000, "strategy.start_stat": 500, "strategy.update_from": 300,
                  "strategy.update_until": 30_000, "blocks.interval": 500, "weighting.eval_interval": 1000,
                  "weighting.warmup": 1000}


def schedule_overrides(steps: int) -> list[str]:
    """The paper's schedule (``PAPER_SCHEDULE``) compressed into a run of ``steps`` steps per block by the one
    factor steps / 60000; the growing window (25 views per decision), learning rates, thresholds and
    everything not counted in steps stay the paper's."""
    factor = steps / PAPER_STEPS
    scaled = [f"{key}={max(round(value * factor), 1)}" for key, value in PAPER_SCHEDULE.items()]
    return [f"optim.steps={steps}", *scaled, "log.progress_every=50", "device=cpu"]


def run_name(row: str, seed: int, tag: str = "") -> str:
    """The run folder of one row, variant tag and seed, e.g. ``e_s1`` or ``e-lcons5_s0``."""
    return f"{row}{'-' + tag if tag else ''}_s{seed}"


def run_row(row: str, data: Path, out: Path, steps: int, extra: list[str], seed: int = 0, tag: str = "",
            threads: int = 0) -> dict:
    """Train (or resume) and evaluate one row with one seed; returns its table entry (kept in the run folder,
    so a finished run is not trained again)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    name, blocks = ROWS[row]
    paper = PAPER_ABLATION[row]
    run = out / run_name(row, seed, tag)
    trained = load_config(run / "config.yaml").optim.steps if (run / "config.yaml").is_file() else steps
    if trained != steps:
        raise SystemExit(f"ablation.py: {run} was trained with {trained} steps per block, not {steps}; "
                         f"use another --out or --tag")
    if (run / "entry.json").is_file():
        return json.loads((run / "entry.json").read_text())
    overrides = schedule_overrides(steps) + [f"data.path={data}", f"out={run}", f"seed={seed}",
                                             "log.tensorboard=false"] + extra
    if blocks > 1:
        overrides.append(f"blocks.partition={out / f'partition_{blocks}.npz'}")
    cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
    cfg.log.checkpoint_every = max(steps * blocks // cfg.blocks.active // 10, 1)  # resumable after a kill
    started = time.perf_counter()
    summary = train(cfg, resume=latest_checkpoint(run / "ckpt") is not None)
    seconds = time.perf_counter() - started
    results = evaluate_run(run, save_images=True)
    weights = [b["weight"] for b in summary.get("blocks", [])]
    # train_seconds: this call's training; a resumed run counts only its last part
    entry = {"row": row, "tag": tag, "seed": seed, "setting": paper["setting"], "blocks": blocks,
             "active": cfg.blocks.active, "steps_per_block": steps, "block_steps": summary["steps"] * cfg.blocks.active,
             "train_seconds": round(seconds, 1), "psnr": round(results["psnr"], 3), "ssim": round(results["ssim"], 4),
             "lpips": results["lpips"], "anchors": results["num_anchors"],
             "validations_min": min((b["validations"] for b in summary.get("blocks", [])), default=0),
             "weight_max": max(weights, default=1.0),
             "paper_psnr": paper["psnr"], "paper_ssim": paper["ssim"], "paper_lpips": paper["lpips"]}
    (run / "entry.json").write_text(json.dumps(entry, indent=1))
    return entry


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0


def write_table(entries: list[dict], out: Path) -> str:
    """Write ``ablation.csv`` (one line per run) and ``ablation.md`` (mean ± standard deviation over the seeds
    of each row and variant) into ``out``; returns the markdown."""
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(entries[0]))
        writer.writeheader()
        writer.writerows(entries)
    groups: dict[tuple[str, str], list[dict]] = {}
    for e in sorted(entries, key=lambda e: (e["row"], e.get("tag", ""), e.get("seed", 0))):
        groups.setdefault((e["row"], e.get("tag", "")), []).append(e)
    lines = ["| row | variant | setting | blocks (active) | steps per block | seeds | PSNR | SSIM | anchors "
             "| paper PSNR / SSIM |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (row, tag), runs in groups.items():
        (p, dp), (q, dq) = _mean_std([r["psnr"] for r in runs]), _mean_std([r["ssim"] for r in runs])
        first = runs[0]
        lines.append(f"| {row} | {tag or '–'} | {first['setting']} | {first['blocks']} ({first['active']}) "
                     f"| {first['steps_per_block']} | {len(runs)} | {p:.2f} ± {dp:.2f} | {q:.3f} ± {dq:.3f} "
                     f"| {sum(r['anchors'] for r in runs) // len(runs)} "
                     f"| {first['paper_psnr']:.2f} / {first['paper_ssim']:.3f} |")
    markdown = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(markdown)
    return markdown


def _run_job(job: tuple) -> dict:
    """``run_row`` for a worker process (one job = one row and seed)."""
    return run_row(*job)


def _run_all(jobs: list[tuple], workers: int):
    """The jobs' entries as they finish: one after the other, or on ``workers`` processes side by side."""
    if workers == 1:
        yield from map(_run_job, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_run_job, jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic_city8"))
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--steps", type=int, default=500, help="training steps per block, the same for every row")
    parser.add_argument("--rows", default="abcdef")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per row and seed")
    parser.add_argument("--tag", default="", help="names a variant (its runs are <row>-<tag>_s<seed>)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (each with --threads threads)")
    parser.add_argument("--threads", type=int, default=0, help="threads per run (0: PyTorch's default)")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides for every row, e.g. data.downsample=2 teacher.lambda_cons=5")
    args = parser.parse_args()
    if args.steps < 1 or args.jobs < 1 or any(row not in ROWS for row in args.rows):
        parser.error("need --steps >= 1, --jobs >= 1 and rows among a-f")
    if not (args.data / "train").is_dir():
        print(f"generating the synthetic city8 scene (exposure varies per image) in {args.data}")
        make_synthetic_scene(args.data, "city8", seed=0, vary_exposure=True)
    args.out.mkdir(parents=True, exist_ok=True)
    scene_cfg = load_config(overrides=[f"data.path={args.data}"] +
                            [o for o in args.overrides if o.startswith(("data.", "partition."))])
    for blocks in sorted({ROWS[row][1] for row in args.rows} - {1}):
        if not (args.out / f"partition_{blocks}.npz").is_file():
            print(partition_main(scene_cfg.data, args.out / f"partition_{blocks}.npz", num_blocks=blocks,
                                 margin=scene_cfg.partition.margin, coverage_threshold=scene_cfg.partition.coverage))
    jobs = [(row, args.data, args.out, args.steps, args.overrides, seed, args.tag, args.threads)
            for seed in args.seeds for row in args.rows]
    done = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/entry.json"))]
    for entry in _run_all(jobs, args.jobs):
        key = (entry["row"], entry["tag"], entry["seed"])
        done = [e for e in done if (e["row"], e["tag"], e["seed"]) != key] + [entry]
        print(write_table(done, args.out), flush=True)
    (args.out / "entries.json").write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
