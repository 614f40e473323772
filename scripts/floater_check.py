"""What dropping the Gaussians no photo saw costs a run's held-out views: the run baked at SH degree 0, rendered
at every held-out photo with all its Gaussians and with those `mgs export` keeps (momentum_gs.export.floaters).

    python scripts/floater_check.py RUN [--no-floor]

Prints the Gaussians dropped, the mean held-out PSNR both ways and the extent of the Gaussians both ways.
``--no-floor`` leaves out the test under the ground (as in a scene without a georef)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.data.georef import read_georef  # noqa: E402
from momentum_gs.data.images import ImageLoader  # noqa: E402
from momentum_gs.data.scene import load_scene  # noqa: E402
from momentum_gs.export.floaters import drop_floaters, views_of  # noqa: E402
from momentum_gs.export.formats import merged_model  # noqa: E402
from momentum_gs.io.run_folder import RunFolder  # noqa: E402
from momentum_gs.losses import psnr  # noqa: E402
from momentum_gs.model.standard import bake  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--no-floor", action="store_true")
    args = parser.parse_args()
    cfg, model = merged_model(RunFolder(args.run))
    scene = load_scene(cfg.data)
    baked = bake(model, scene.train, cfg.render, degree=0, show_progress=False)
    georef = None if args.no_floor else read_georef(Path(cfg.data.path))
    kept, dropped = drop_floaters(baked, views_of(scene, georef, False))
    loader = ImageLoader(scene.test)
    scores = {"all": [], "kept": []}
    with torch.no_grad():
        for i, camera in enumerate(scene.test):
            truth = loader[i]
            truth = truth if truth.dtype == torch.float32 else truth.float() / 255
            for name, gaussians in (("all", baked), ("kept", kept)):
                scores[name].append(float(psnr(gaussians.render(camera, cfg.render).clamp(0, 1), truth)))
    extent = lambda g: (g.means.max(0).values - g.means.min(0).values).numpy().round(1).tolist()  # noqa: E731
    print(f"{args.run}: dropped {dropped} of {len(baked)}; held-out PSNR {np.mean(scores['all']):.3f} dB with all, "
          f"{np.mean(scores['kept']):.3f} dB with those kept; extent {extent(baked)} -> {extent(kept)}")


if __name__ == "__main__":
    main()
