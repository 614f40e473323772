"""``mgs demo``: synthesize a city (when missing), partition it when the config trains blocks, train, evaluate;
the path of results.json is the last line printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from momentum_gs.train.start import AUTO, auto_partition_in_run
from momentum_gs.config import SHIPPED, find_config
from momentum_gs.data.synthetic import make_synthetic_scene
from momentum_gs.errors import UserError
from momentum_gs.eval.evaluate import evaluate_run, summary_lines
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.train.progress import counter_bar
from momentum_gs.train.run import describe, prepare_config, train

DEMO_CONFIG = SHIPPED / "demo.yaml"  # the shipped one, whatever the working folder holds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mgs demo``."""
    parser.add_argument("--data", default="data/synthetic_demo", help="where the synthetic scene is (made if missing)")
    parser.add_argument("--out", default="runs/demo", help="run folder")
    parser.add_argument("--config", default=str(DEMO_CONFIG),
                        help="a config file, or the name of a shipped one (default: demo, Momentum-GS, 4 blocks, "
                             "2 active; demo_single: one block)")
    parser.add_argument("--preset", default="demo", help="the synthetic scene made when --data is missing: tiny, "
                                                         "demo, small or city8")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")


def run(args: argparse.Namespace) -> None:
    """Run the demo and print the path of its results."""
    print(demo(Path(args.data), Path(args.out), args.overrides, args.config, args.preset))


def demo(data_dir: Path, out_dir: Path, overrides: list[str], config: str | Path = DEMO_CONFIG,
         preset: str = "demo") -> Path:
    """Make the synthetic city if missing, partition it when the config (a path, or the name of a shipped one)
    trains blocks, train, evaluate; returns the path of results.json (the strip of held-out views and the map
    lie beside it)."""
    config, folder = find_config(config), RunFolder(out_dir)  # before the city is made
    if folder.ckpt.is_dir():
        raise UserError(f"{out_dir} already holds a run; remove it or pass --out for a new one")
    if not (data_dir / "train").is_dir():
        print(f"generating the synthetic {preset} city in {data_dir}")
        make_synthetic_scene(data_dir, preset, seed=0, progress=counter_bar(f"synth {preset}", "view"))
    cfg = prepare_config(str(config), str(data_dir), str(out_dir), overrides, resume=False)
    if cfg.blocks.partition.startswith(AUTO):  # "auto:N": partition into N blocks inside the run folder
        auto_partition_in_run(cfg)
    summary = train(cfg)
    print(describe(summary))
    results = evaluate_run(out_dir)
    print("\n".join(summary_lines(results, out_dir)[:-1]))
    return folder.results
