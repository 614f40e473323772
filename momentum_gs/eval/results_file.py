"""What is read back of a run's ``eval/results.json`` (``mgs table``, and ``mgs eval``'s LPIPS note): its
declared shape, :data:`RESULTS`, and :func:`read_results`.

``mgs eval`` writes more (per-block scores, depth errors, the peak render memory); only what the readers use is
declared, the rest is not looked into. Each range says what the number means: a PSNR is a finite number of dB,
an SSIM lies in [-1, 1], an LPIPS distance is at least 0, counts are whole.
"""

from __future__ import annotations

from pathlib import Path

from momentum_gs.io.schema import Flag, Maybe, Number, Obj, Text, read_json
from momentum_gs.ranges import AT_LEAST_0, MAX_STEPS, POSITIVE, Range

PSNR = Maybe(Number(note="dB"))
SSIM = Maybe(Number(Range(-1, 1), note="structural similarity"))
LPIPS = Maybe(Number(AT_LEAST_0, note="a distance"))
COUNT = Number(AT_LEAST_0, whole=True)
RESULTS = Obj({"psnr": PSNR, "ssim": SSIM, "lpips": LPIPS},
              {"psnr_cc": PSNR, "ssim_cc": SSIM, "lpips_cc": LPIPS,
               "fps": Number(POSITIVE, note="frames a second"),
               "storage_mb": Number(AT_LEAST_0, note="MB"),
               "num_test_views": COUNT, "num_anchors": COUNT, "num_gaussians": COUNT,
               "step": Number(Range(0, MAX_STEPS), whole=True, note="the global step evaluated"),
               "lpips_note": Text(), "lpips_note_said_before": Flag()})


def read_results(path: str | Path) -> dict:
    """The evaluation results at ``path`` checked against :data:`RESULTS`; a UserError in one line names the file,
    the key and what was expected."""
    return read_json(path, RESULTS, "the evaluation results", "run mgs eval on the run again to write it")
