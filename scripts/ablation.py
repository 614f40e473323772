#!/usr/bin/env python3
"""Run the ablation rows a–f of the paper (SPEC §3.4) on one scene and write the table beside the paper's.

Every row trains the same number of steps per block, as the paper does, with the Momentum-GS settings of
configs/ablation/*.yaml; a run shorter than the paper's 60k steps per block compresses every step-counted
setting by the one factor steps / 60000 (``schedule_overrides``). The table reports each row's total
block-steps and wall time beside its metrics.

    python scripts/ablation.py --data data/synthetic_city8 --out runs/ablation --steps 500 [--rows abcdef]

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
from momentum_gs.partition import partition_main
from momentum_gs.train.run import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ablation"
# row: (config file, number of blocks); the settings' names and the paper's numbers are in PAPER_ABLATION
ROWS = {"a": ("a_one_block", 1), "b": ("b_parallel4", 4), "c": ("c_independent4", 4),
        "d": ("d_independent8", 8), "e": ("e_momentum8", 8), "f": ("f_full8", 8)}


# The step-counted settings of the paper's runs (60k steps per block; configs/datasets/*.yaml). A shorter run
# multiplies every one of them by the same factor, steps / 60000 (at least 1 step each).
PAPER_STEPS = 60_000
PAPER_SCHEDULE = {"optim.lr_max_steps": 30_000, "strategy.start_stat": 500, "strategy.update_from": 300,
                  "strategy.update_interval": 25, "strategy.update_until": 30_000, "blocks.interval": 500,
                  "weighting.eval_interval": 1000, "weighting.warmup": 1000}


def schedule_overrides(steps: int) -> list[str]:
    """The paper's schedule (``PAPER_SCHEDULE``) compressed into a run of ``steps`` steps per block by the one
    factor steps / 60000; learning rates, thresholds and everything not counted in steps stay the paper's."""
    factor = steps / PAPER_STEPS
    scaled = [f"{key}={max(round(value * factor), 1)}" for key, value in PAPER_SCHEDULE.items()]
    return [f"optim.steps={steps}", *scaled, "log.progress_every=50", "device=cpu"]


def run_row(row: str, data: Path, out: Path, steps: int, extra: list[str]) -> dict:
    """Train and evaluate one row; returns its table entry."""
    name, blocks = ROWS[row]
    paper = PAPER_ABLATION[row]
    overrides = schedule_overrides(steps) + [f"data.path={data}", f"out={out / row}"] + extra
    if blocks > 1:
        overrides.append(f"blocks.partition={out / f'partition_{blocks}.npz'}")
    cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
    started = time.perf_counter()
    summary = train(cfg)
    seconds = time.perf_counter() - started
    results = evaluate_run(out / row, save_images=True)
    return {"row": row, "setting": paper["setting"], "blocks": blocks, "active": cfg.blocks.active,
            "steps_per_block": steps, "block_steps": summary["steps"] * cfg.blocks.active,
            "train_seconds": round(seconds, 1), "psnr": round(results["psnr"], 2), "ssim": round(results["ssim"], 4),
            "lpips": results["lpips"], "anchors": results["num_anchors"],
            "paper_psnr": paper["psnr"], "paper_ssim": paper["ssim"], "paper_lpips": paper["lpips"]}


def write_table(entries: list[dict], out: Path) -> str:
    """Write ``ablation.csv`` and ``ablation.md`` into ``out``; returns the markdown."""
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(entries[0]))
        writer.writeheader()
        writer.writerows(entries)
    lines = ["| row | setting | blocks (active) | block-steps | train s | PSNR | SSIM | LPIPS | anchors "
             "| paper PSNR / SSIM / LPIPS |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        lpips = "–" if e["lpips"] is None else f"{e['lpips']:.3f}"
        lines.append(f"| {e['row']} | {e['setting']} | {e['blocks']} ({e['active']}) | {e['block_steps']} "
                     f"| {e['train_seconds']:.0f} | {e['psnr']:.2f} | {e['ssim']:.3f} | {lpips} | {e['anchors']} "
                     f"| {e['paper_psnr']:.2f} / {e['paper_ssim']:.3f} / {e['paper_lpips']:.3f} |")
    markdown = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(markdown)
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic_city8"))
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--steps", type=int, default=500, help="training steps per block, the same for every row")
    parser.add_argument("--rows", default="abcdef")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides for every row, e.g. data.downsample=2 partition.margin=0.5")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"generating the synthetic city8 scene (exposure varies per image) in {args.data}")
        make_synthetic_scene(args.data, "city8", seed=0, vary_exposure=True)
    args.out.mkdir(parents=True, exist_ok=True)
    scene_cfg = load_config(overrides=[f"data.path={args.data}"] +
                            [o for o in args.overrides if o.startswith(("data.", "partition."))])
    for blocks in sorted({ROWS[row][1] for row in args.rows} - {1}):
        print(partition_main(scene_cfg.data, args.out / f"partition_{blocks}.npz", num_blocks=blocks,
                             margin=scene_cfg.partition.margin, coverage_threshold=scene_cfg.partition.coverage))
    entries = []
    for row in args.rows:
        entries.append(run_row(row, args.data, args.out, args.steps, args.overrides))
        (args.out / "entries.json").write_text(json.dumps(entries, indent=1))
        print(write_table(entries, args.out))


if __name__ == "__main__":
    main()
