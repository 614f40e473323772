"""Tables and plots of evaluated runs (``mgs table``), on hand-written run folders."""

from __future__ import annotations

import csv

import cv2
import pytest

from momentum_gs.errors import UserError
from momentum_gs.cli import main
from momentum_gs.eval.table import PAPER_ABLATION, PAPER_RESULTS, gather, paper_key, table_main
from tests.helpers.cli import assert_one_line_error, mgs
from tests.helpers.run_folders import make_run


def test_paper_numbers_and_dataset_names():
    assert PAPER_RESULTS["sciart"] == {"psnr": 25.06, "ssim": 0.860, "lpips": 0.204}
    assert PAPER_ABLATION["f"]["psnr"] == PAPER_RESULTS["building"]["psnr"] == 23.65
    assert [paper_key(n) for n in ("Sci-Art", "rubble-pixsfm", "matrix_city", "synthetic_city8", None)] == \
        ["sciart", "rubble", "matrixcity", None, None]


def test_results_table_and_csv(tmp_path):
    runs = [make_run(tmp_path, "ours_rubble", psnr=24.5, lpips=None, steps=300, blocks=8, active=2,
                     storage_mb=42.0, psnr_cc=25.1),
            make_run(tmp_path, "synthetic", dataset="synthetic_city8", psnr=30.25, lpips=0.1234)]
    summary = table_main(runs, tmp_path / "out", ablation=False)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert markdown in summary
    lines = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines()}
    ours = lines["ours_rubble"].split(" | ")
    assert ours[1:8] == ["rubble-pixsfm", "24.50", "26.66", "0.800", "0.826", "—", "0.200"]  # LPIPS null → —
    assert "25.10" in ours and "42.0" in ours and ours[-1].startswith("300")  # colour-corrected, MB, steps/block
    synthetic = lines["synthetic"].split(" | ")
    assert synthetic[2:8] == ["30.25", "—", "0.800", "—", "0.123", "—"]  # no paper entry for this scene
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["ours_rubble", "synthetic"]
    assert float(rows[0]["paper_psnr"]) == 26.66 and rows[0]["lpips"] == "" and rows[1]["paper_psnr"] == ""
    assert rows[0]["steps_per_block"] == "300" and rows[0]["storage_mb"] == "42.0"


def test_ablation_table_order_and_labels(tmp_path):
    runs = [make_run(tmp_path, name, psnr=20 + i) for i, name in enumerate(["f_full8", "b", "a", "full", "other"])]
    table_main(runs, tmp_path / "out", ablation=True, labels={"full": "e"})
    body = (tmp_path / "out" / "ablation.md").read_text().splitlines()[2:]
    assert [line.split(" | ")[0].strip("| ") for line in body] == ["a", "b", "e", "f"]
    assert body[0].split(" | ")[2] == "a" and body[2].split(" | ")[2] == "full"
    assert body[3].endswith("| 23.65 / 0.813 / 0.194 |") and "20.00" in body[3]
    with open(tmp_path / "out" / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["a", "b", "e", "f"] and float(rows[0]["paper_psnr"]) == 22.25


def test_plots_are_drawn(tmp_path):
    runs = [make_run(tmp_path, "one", steps=100, storage_mb=10.0),
            make_run(tmp_path, "eight", steps=200, blocks=8, active=2, storage_mb=30.0, fps=20.0)]
    table_main(runs, tmp_path / "out")
    for name in ("psnr_vs_steps.png", "fps_vs_storage.png"):
        image = cv2.imread(str(tmp_path / "out" / name))
        assert image is not None and image.shape == (480, 820, 3)
        assert len({tuple(p) for p in image.reshape(-1, 3)[::7]}) > 10  # axes, text and coloured data


def test_steps_per_block_and_training_curve(tmp_path):
    row = gather([make_run(tmp_path, "blocks", steps=200, blocks=4, active=2)])[0]
    assert row["steps_per_block"] == 200 and row["num_blocks"] == 4 and row["train_seconds"] == 12.5
    assert row["curve"][-1] == (200.0, 23.0) and len(row["curve"]) == 40  # the cut-short line is skipped


def test_missing_results_is_a_user_error(tmp_path):
    (tmp_path / "not_evaluated").mkdir()
    with pytest.raises(UserError, match="not_evaluated.*mgs eval"):
        gather([make_run(tmp_path, "fine"), tmp_path / "not_evaluated"])


def test_command_line(tmp_path, capsys):
    run_dir = make_run(tmp_path, "best")
    assert main(["table", str(run_dir), "--out", str(tmp_path / "out"), "--ablation", "--label", "best=f"]) == 0
    assert "| f | 8 blocks + block weighting (full) | best |" in capsys.readouterr().out
    assert main(["table", str(run_dir), "--out", str(tmp_path / "out"), "--label", "best=z"]) == 2
    assert "RUN=ROW" in capsys.readouterr().err


def test_an_out_that_is_a_file_is_one_line_and_the_file_is_kept(tmp_path):
    run = make_run(tmp_path, "ours_rubble")
    out = tmp_path / "tables.md"
    out.write_text("mine\n")
    assert_one_line_error(mgs("table", str(run), "--out", str(out)), f"--out {out} is a file")
    assert out.read_text() == "mine\n"
