"""``mgs table RUN [RUN ...] --out DIR``: our evaluated runs beside the paper's numbers, as tables and plots.

Reads what ``mgs eval`` (``eval/results.json``) and training (``config.yaml``, ``summary.json``,
``train.log``) left in each run folder, and writes ``results.md``/``.csv`` (ours next to the paper's
SPEC §3.5 numbers where the scene is one of the paper's), with ``--ablation`` ``ablation.md``/``.csv``
(rows a–f, SPEC §3.4), and two PNG plots drawn with OpenCV: PSNR against steps per block and FPS
against storage.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import cv2
import numpy as np

from momentum_gs.config import load_config
from momentum_gs.draw import BLACK, TAB10, blank, dot, draw_axes, put_text, save_png
from momentum_gs.errors import DataWarning, UserError
from momentum_gs.eval.results_file import read_results
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.train_log import read_log
from momentum_gs.partition import Partition
from momentum_gs.trained import read_summary

# The paper's held-out scores (PSNR dB, SSIM, LPIPS-VGG), by dataset (SPEC §3.5).
PAPER_RESULTS = {
    "building": {"psnr": 23.65, "ssim": 0.813, "lpips": 0.194},
    "rubble": {"psnr": 26.66, "ssim": 0.826, "lpips": 0.200},
    "residence": {"psnr": 23.37, "ssim": 0.828, "lpips": 0.196},
    "sciart": {"psnr": 25.06, "ssim": 0.860, "lpips": 0.204},
    "matrixcity": {"psnr": 29.11, "ssim": 0.881, "lpips": 0.180},
}
# The paper's ablation on Rubble (SPEC §3.4); scripts/ablation.py takes the rows' names and numbers from here.
PAPER_ABLATION = {
    "a": {"setting": "one block (Scaffold-GS)", "psnr": 22.25, "ssim": 0.742, "lpips": 0.272},
    "b": {"setting": "4 blocks parallel, shared decoder", "psnr": 23.10, "ssim": 0.790, "lpips": 0.221},
    "c": {"setting": "4 blocks independent", "psnr": 22.85, "ssim": 0.781, "lpips": 0.229},
    "d": {"setting": "8 blocks independent", "psnr": 23.23, "ssim": 0.796, "lpips": 0.211},
    "e": {"setting": "8 blocks + momentum", "psnr": 23.56, "ssim": 0.806, "lpips": 0.205},
    "f": {"setting": "8 blocks + block weighting (full)", "psnr": 23.65, "ssim": 0.813, "lpips": 0.194},
}
DASH = "—"  # shown for a missing value
CC_KEYS = ("psnr_cc", "ssim_cc", "lpips_cc")  # colour-corrected scores, when the evaluation wrote them
CSV_FIELDS = ["run", "label", "dataset", "psnr", "ssim", "lpips", *CC_KEYS, "fps", "storage_mb", "num_anchors",
              "num_gaussians", "num_blocks", "active", "steps_per_block", "train_seconds",
              "paper_psnr", "paper_ssim", "paper_lpips"]


def paper_key(dataset: str | None) -> str | None:
    """The :data:`PAPER_RESULTS` key of a scene folder name ("Mill19/rubble-pixsfm" → "rubble"), or None."""
    name = re.sub(r"[^a-z0-9]", "", (dataset or "").lower())
    return name if name in PAPER_RESULTS else next((k for k in PAPER_RESULTS if name and k in name), None)


def ablation_label(run_name: str) -> str | None:
    """The ablation row a–f of a run folder named ``a``, ``a_one_block``, ``f-full8``..., or None."""
    match = re.fullmatch(r"([a-f])([^a-z].*)?", run_name.lower())
    return match.group(1) if match else None


def gather(run_dirs: list[str | Path], labels: dict[str, str] | None = None) -> list[dict]:
    """One row per run folder: scores, speed, size, training length and the paper's numbers.

    ``labels`` maps a run folder name to its ablation row (a–f); without it the row is the folder name's
    first letter (see :func:`ablation_label`). ``steps_per_block`` is the evaluated global step times
    active / total blocks; ``curve`` holds the (steps per block, training PSNR) points of ``train.log``.
    """
    return [_gather_one(Path(d), labels or {}) for d in run_dirs]


def _gather_one(run: Path, labels: dict[str, str]) -> dict:
    """The row of one run folder (see :func:`gather`)."""
    folder = RunFolder(run)
    results_path = folder.results
    if not results_path.is_file():
        raise UserError(f"{run} has no eval/results.json; run `mgs eval {run}` first")
    results = read_results(results_path)
    summary = read_summary(run) or {}
    cfg = load_config(folder.config) if folder.config.is_file() else None
    dataset = Path(cfg.data.path).name if cfg and cfg.data.path else None
    num_blocks = summary.get("num_blocks") or _partition_blocks(cfg)
    active = cfg.blocks.active if cfg else 1
    scale = active / num_blocks if num_blocks else 1.0  # global step → steps of one block
    step = results.get("step", summary.get("steps"))
    paper = PAPER_RESULTS.get(paper_key(dataset), {})
    return {"run": run.name, "label": labels.get(run.name, ablation_label(run.name)), "dataset": dataset,
            **{k: results.get(k) for k in ("psnr", "ssim", "lpips", *CC_KEYS, "fps", "num_anchors", "num_gaussians")},
            "storage_mb": results.get("storage_mb", _folder_mb(folder.export)),
            "num_blocks": num_blocks, "active": active,
            "steps_per_block": None if step is None else round(step * scale),
            "train_seconds": summary.get("seconds"),
            **{f"paper_{k}": paper.get(k) for k in ("psnr", "ssim", "lpips")},
            "curve": _training_curve(folder.train_log, scale)}


def _partition_blocks(cfg) -> int | None:
    """Number of blocks of the run's partition: 1 without one, None when its file cannot be read."""
    if cfg is None or not cfg.blocks.partition:
        return 1 if cfg is not None else None
    try:
        return Partition.load(cfg.blocks.partition).num_blocks
    except (OSError, UserError, KeyError, ValueError):
        return None


def _folder_mb(folder: Path) -> float | None:
    """Size of the files in an export folder in MB (2**20 bytes), or None when there is none."""
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
    return sum(f.stat().st_size for f in files) / 2**20 if files else None


def _training_curve(log: Path, scale: float) -> list[tuple[float, float]]:
    """(steps per block, training PSNR) of each logged step of a ``train.log`` (JSON lines,
    :data:`~momentum_gs.io.train_log.LOG_LINE`). A line that does not fit is left out of the curve and said in
    one warning per file (the first such line, and how many more)."""
    entries, wrong = read_log(log)
    if wrong:
        more = f" (and {len(wrong) - 1} more line{'s' * (len(wrong) > 2)})" if len(wrong) > 1 else ""
        warnings.warn(f"{wrong[0]}; left out of the training curve{more}", DataWarning, stacklevel=2)
    return [(entry["step"] * scale, float(entry["psnr"])) for entry in entries if "psnr" in entry]


def _fmt(value, digits: int) -> str:
    """A number with ``digits`` decimals, or the dash for a missing one."""
    return DASH if value is None else f"{value:.{digits}f}"


def _markdown(header: list[str], lines: list[list[str]]) -> str:
    """A markdown table."""
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows) + "\n"


def results_table(rows: list[dict]) -> str:
    """Markdown: each run's scores next to the paper's for its dataset (the dash where the paper has none)."""
    cc = any(r.get(k) is not None for r in rows for k in CC_KEYS)
    header = ["run", "dataset", "PSNR", "paper PSNR", "SSIM", "paper SSIM", "LPIPS", "paper LPIPS"]
    header += ["PSNR cc", "SSIM cc", "LPIPS cc"] * cc + ["FPS", "storage MB", "anchors", "Gaussians", "steps/block"]
    lines = []
    for r in rows:
        line = [r["run"], r["dataset"] or DASH]
        for key, digits in (("psnr", 2), ("ssim", 3), ("lpips", 3)):
            line += [_fmt(r[key], digits), _fmt(r[f"paper_{key}"], digits)]
        line += [_fmt(r[k], d) for k, d in zip(CC_KEYS, (2, 3, 3))] * cc
        line += [_fmt(r["fps"], 1), _fmt(r["storage_mb"], 1)]
        line += [DASH if r[k] is None else str(r[k]) for k in ("num_anchors", "num_gaussians", "steps_per_block")]
        lines.append(line)
    return _markdown(header, lines)


def ablation_table(rows: list[dict]) -> str:
    """Markdown: the runs labelled a–f in row order, each next to the paper's row (Rubble, SPEC §3.4)."""
    header = ["row", "setting", "run", "blocks (active)", "steps/block", "PSNR", "SSIM", "LPIPS",
              "paper PSNR / SSIM / LPIPS"]
    lines = []
    for r in ablation_rows(rows):
        p = PAPER_ABLATION[r["label"]]
        lines.append([r["label"], p["setting"], r["run"], f"{r['num_blocks'] or DASH} ({r['active']})",
                      DASH if r["steps_per_block"] is None else r["steps_per_block"], _fmt(r["psnr"], 2),
                      _fmt(r["ssim"], 3), _fmt(r["lpips"], 3), f"{p['psnr']:.2f} / {p['ssim']:.3f} / {p['lpips']:.3f}"])
    return _markdown(header, lines)


def ablation_rows(rows: list[dict]) -> list[dict]:
    """The rows labelled a–f, sorted by label (then run name)."""
    return sorted((r for r in rows if r.get("label") in PAPER_ABLATION), key=lambda r: (r["label"], r["run"]))


def write_csv(rows: list[dict], path: str | Path, paper: dict[str, dict] | None = None) -> None:
    """Write the rows (without their training curves) as CSV; missing values are empty cells.

    With ``paper`` (label → numbers, e.g. :data:`PAPER_ABLATION`) the paper columns come from the row's label.
    """
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            if paper is not None:
                r = {**r, **{f"paper_{k}": paper[r["label"]][k] for k in ("psnr", "ssim", "lpips")}}
            writer.writerow({k: "" if r.get(k) is None else r[k] for k in CSV_FIELDS})


# --- plots -------------------------------------------------------------------------------------------------

SIZE, PLOT_BOX = (820, 480), (70, 40, 620, 420)  # canvas (w, h); axes (left, top, right, bottom) in pixels
NOTE_GREY = (90, 90, 90)


def _legend(img: np.ndarray, names: list[str], notes: list[str] = ()) -> None:
    """Colour swatches and names to the right of the axes, then grey notes."""
    x, y = PLOT_BOX[2] + 15, PLOT_BOX[1] + 10
    for i, name in enumerate(names):
        cv2.rectangle(img, (x, y + 20 * i - 9), (x + 14, y + 20 * i + 1), TAB10[i % len(TAB10)], -1)
        put_text(img, name[:22], x + 20, y + 20 * i)
    for j, note in enumerate(notes):
        put_text(img, note, x, y + 20 * (len(names) + j) + 10, 0.38, NOTE_GREY)


def _smooth(values: np.ndarray) -> np.ndarray:
    """Trailing mean over ~1/30 of the curve: training PSNR is of one view per step, so it jitters."""
    window = max(1, len(values) // 30)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def plot_psnr_vs_steps(rows: list[dict], path: str | Path) -> None:
    """PNG: training PSNR (smoothed line, from ``train.log``) and held-out PSNR (dot) against steps per block."""
    img = blank(*SIZE)
    held_out = [(r["steps_per_block"], r["psnr"]) for r in rows]
    xs = [x for r in rows for x, _ in r["curve"]] + [x for x, y in held_out if None not in (x, y)]
    ys = [y for r in rows for _, y in r["curve"]] + [y for x, y in held_out if None not in (x, y)]
    to_px = draw_axes(img, PLOT_BOX, xs, ys, "steps per block", "PSNR (dB)", "PSNR against training steps per block")
    for i, (r, (x, y)) in enumerate(zip(rows, held_out)):
        color = TAB10[i % len(TAB10)]
        if r["curve"]:
            steps, values = np.array(r["curve"]).T
            line = np.array([to_px(s, v) for s, v in zip(steps, _smooth(values))], np.int32)
            cv2.polylines(img, [line], False, color, 2, cv2.LINE_AA)
        if None not in (x, y):
            dot(img, to_px(x, y), 6, color, rim=BLACK)
    _legend(img, [r["run"] for r in rows], ["line: training PSNR", "dot: held-out PSNR"])
    save_png(path, img)


def plot_fps_vs_storage(rows: list[dict], path: str | Path) -> None:
    """PNG: a scatter of rendering speed (FPS) against storage (MB), each dot labelled with its run."""
    img = blank(*SIZE)
    points = [(i, r["storage_mb"], r["fps"]) for i, r in enumerate(rows) if None not in (r["storage_mb"], r["fps"])]
    to_px = draw_axes(img, PLOT_BOX, [p[1] for p in points], [p[2] for p in points], "storage (MB)", "FPS",
                      "Rendering speed against storage")
    for i, mb, fps in points:
        px, py = to_px(mb, fps)
        dot(img, (px, py), 6, TAB10[i % len(TAB10)], rim=BLACK)
        put_text(img, rows[i]["run"], px + 9, py - 7)
    notes = [] if points else ["no run has both FPS and", "storage (eval/results.json", "storage_mb or export/)"]
    _legend(img, [r["run"] for r in rows], notes)
    save_png(path, img)


# --- command line ------------------------------------------------------------------------------------------

def table_main(run_dirs: list[str | Path], out_dir: str | Path, ablation: bool = False,
               labels: dict[str, str] | None = None) -> str:
    """Write the tables and plots of ``run_dirs`` into ``out_dir``; returns the tables and what was written."""
    if not run_dirs:
        raise UserError("give at least one run folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; mgs table writes a folder of tables and plots: name a folder")
    rows = gather(run_dirs, labels)
    out.mkdir(parents=True, exist_ok=True)
    text = results_table(rows)
    (out / "results.md").write_text(text)
    write_csv(rows, out / "results.csv")
    written = ["results.md", "results.csv"]
    if ablation:
        labelled = ablation_rows(rows)
        if not labelled:
            raise UserError("no run is an ablation row: name the run folders a..f (e.g. runs/abl/a) "
                            "or give --label RUN=ROW")
        (out / "ablation.md").write_text(ablation_table(rows))
        write_csv(labelled, out / "ablation.csv", PAPER_ABLATION)
        text += "\n" + ablation_table(rows)
        written += ["ablation.md", "ablation.csv"]
    plot_psnr_vs_steps(rows, out / "psnr_vs_steps.png")
    plot_fps_vs_storage(rows, out / "fps_vs_storage.png")
    written += ["psnr_vs_steps.png", "fps_vs_storage.png"]
    return text + f"\n{len(rows)} run{'s' * (len(rows) != 1)}; wrote {', '.join(written)} into {out}"
