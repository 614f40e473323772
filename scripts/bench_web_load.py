"""How long the one-file HTML viewer (``mgs export --format html``) takes to show its first frame in headless
Chromium, against the number of Gaussians it carries.

    nice python scripts/bench_web_load.py [--gaussians 100000 250000 500000 1000000 2000000] [--limit 120]

For each count, a page of that many generated Gaussians (small, in front of the camera it opens on) is written
with ``momentum_gs.export.web.viewer_page`` and opened from disk in headless Chromium with software WebGL
(SwiftShader), through the DevTools harness of the tests (tests/helpers/browser.py, an 800 × 600 tab). The time
runs from the navigation to the moment the page's script has decoded the Gaussians, sorted them and drawn its
first frame (``gl.finish()`` answered, asked for as soon as the page takes questions); then one more frame is
timed as the page draws it after each move of the camera (sort on the CPU, upload, draw). A page that takes
longer than ``--limit`` seconds, or whose tab dies, is reported as such.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.data.camera import Camera  # noqa: E402
from momentum_gs.export.web import viewer_page  # noqa: E402
from momentum_gs.model.standard import StandardGaussians  # noqa: E402
from momentum_gs.render.kernels import describe_cpu  # noqa: E402
from tests.helpers.browser import CHROMIUM, Browser  # noqa: E402

READY = "typeof gaussians !== 'undefined' && typeof gl !== 'undefined' ? (gl.finish(), gaussians.count) : null"
REDRAW = "(() => { const t = performance.now(); draw(); gl.finish(); return (performance.now() - t) / 1000; })()"


def page_of(n: int, seed: int = 0) -> tuple[str, Camera]:
    """The viewer page of ``n`` generated Gaussians and the camera it opens on."""
    g = torch.Generator().manual_seed(seed)
    gaussians = StandardGaussians(means=torch.randn(n, 3, generator=g) * torch.tensor([2.0, 1.5, 1.0]) +
                                  torch.tensor([0.0, 0.0, 6.0]),
                                  quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                                  scales=torch.rand(n, 3, generator=g) * 0.02 + 0.005,
                                  opacities=torch.rand(n, generator=g) * 0.9 + 0.1,
                                  sh=torch.rand(n, 1, 3, generator=g) * 3 - 1.5)
    camera = Camera(name="c", width=800, height=600, K=torch.tensor([[700.0, 0, 400], [0, 700.0, 300], [0, 0, 1]]),
                    world_to_cam=torch.eye(4))
    return viewer_page(gaussians, camera, (0.0, 0.0, 0.0)), camera


def load_seconds(path: Path, profile: Path, limit: float) -> tuple[float, float] | None:
    """(seconds from opening ``path`` to its first frame drawn, seconds of the next frame), or None past
    ``limit`` seconds or a dead tab."""
    browser = Browser(profile, 800, 600)
    try:
        started = time.perf_counter()
        browser.open(path.as_uri() + "#nohelp")
        while time.perf_counter() - started < limit:
            try:
                if browser.evaluate(READY):
                    return time.perf_counter() - started, browser.evaluate(REDRAW)
            except RuntimeError:  # the page is busy past the harness's wait, or its tab died
                if browser.process.poll() is not None:
                    return None
            time.sleep(0.05)
        return None
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 250_000, 500_000, 1_000_000, 2_000_000])
    parser.add_argument("--limit", type=float, default=120.0)
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("needs Chromium (apt-get install chromium)")
    print(f"{describe_cpu()}; Chromium {CHROMIUM}; load average {os.getloadavg()[0]:.1f}")
    print("| Gaussians | page, MB | first frame, s | next frame, s |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.gaussians:
            page = Path(folder) / f"scene_{n}.html"
            page.write_text(page_of(n)[0], encoding="utf-8")
            seconds = load_seconds(page, Path(folder) / f"profile_{n}", args.limit)
            shown = f"{seconds[0]:.1f} | {seconds[1]:.2f}" if seconds else f"not within {args.limit:.0f} | "
            print(f"| {n:,} | {page.stat().st_size / 2**20:.1f} | {shown} |", flush=True)
            page.unlink()


if __name__ == "__main__":
    main()
