"""How well the training photos agree on a synthetic scene's surface model, where it is right and where it is wrong.

    python scripts/photo_agreement.py RUN [--maps DIR] [--agree 3] [--off 20] [--cells 100000]

A synthetic scene (`mgs synth`) only: its true heights are known. Each DSM height under the cameras is a point
above its pixel; the point is projected into every training photo in whose image it lies (in front of the camera;
no test of what hides it), and the photos' colours there are compared. Its agreement is the smallest, over the
photos, of the mean RGB distance (0-255) from one photo's colour to its ``--agree`` − 1 nearest others': 0 when
that many photos show the same colour there. The same is measured at the true height above the pixel. The table
gives, for the heights within a pixel of the truth and those more than ``--off`` pixels off it, the median
agreement at the DSM's height and at the true one, and the share of each under 3 levels. Where photos agree as
well on a wrong height as on the right one, their colours cannot tell the two apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.config import load_config  # noqa: E402
from momentum_gs.data.map_frame import frame_of  # noqa: E402
from momentum_gs.data.scene import load_scene  # noqa: E402
from momentum_gs.data.scene_info import read_scene_info  # noqa: E402
from momentum_gs.maps.ortho import NODATA, SOLID, MapGrid  # noqa: E402
from ortho_check import read_maps, under_cameras  # noqa: E402  (a script beside this one)
from tests.helpers.map_truth import true_maps  # noqa: E402

SEEN_AT_MOST = 24  # photos compared at a point, the first that see it
LEVELS = 3.0  # RGB levels under which an agreement counts as the same colour


def sample(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[N, 3] bilinear colours of ``image`` [H, W, 3] float32 at pixel coordinates ``u``, ``v`` (pixel centres at
    +0.5; OpenCV's, at integers)."""
    xs, ys = (np.asarray(a - 0.5, np.float32)[None] for a in (u, v))
    return cv2.remap(image, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]


def colours(world: np.ndarray, cameras: list, images: list[np.ndarray]) -> np.ndarray:
    """[N, SEEN_AT_MOST, 3] the colours of the first photos in whose image each of the [N, 3] ``world`` points lies
    (NaN past the photos that do)."""
    found = np.full((len(world), SEEN_AT_MOST, 3), np.nan, np.float32)
    filled = np.zeros(len(world), int)
    for camera, image in zip(cameras, images):
        to_cam = camera.world_to_cam.double().numpy()
        K = camera.K.double().numpy()
        local = world @ to_cam[:3, :3].T + to_cam[:3, 3]
        z = np.where(local[:, 2] > 0, local[:, 2], np.inf)
        u, v = K[0, 0] * local[:, 0] / z + K[0, 2], K[1, 1] * local[:, 1] / z + K[1, 2]
        seen = np.isfinite(z) & (u >= 1) & (u < camera.width - 1) & (v >= 1) & (v < camera.height - 1)
        seen &= filled < SEEN_AT_MOST
        found[seen, filled[seen]] = sample(image, u[seen], v[seen])
        filled[seen] += 1
    return found


def agreement(found: np.ndarray, agree: int, chunk: int = 4096) -> np.ndarray:
    """[N] each point's agreement (module notes) from its photos' colours [N, S, 3]; inf where fewer than
    ``agree`` photos see it."""
    out = []
    for part in np.array_split(found, max(1, len(found) // chunk)):
        distance = np.sqrt(((part[:, :, None] - part[:, None, :]) ** 2).sum(-1))  # NaN where a photo is missing
        distance = np.where(np.isnan(distance), np.inf, distance)
        distance[:, np.arange(SEEN_AT_MOST), np.arange(SEEN_AT_MOST)] = np.inf
        nearest = np.sort(distance, -1)[..., :agree - 1].mean(-1)
        out.append(np.where(np.isfinite(nearest), nearest, np.inf).min(-1))
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--maps", type=Path, default=None)
    parser.add_argument("--agree", type=int, default=3, help="photos that have to agree on a colour")
    parser.add_argument("--off", type=float, default=20.0, help="pixels off the truth from which a height is wrong")
    parser.add_argument("--cells", type=int, default=100_000, help="heights measured at most in each group")
    args = parser.parse_args()
    rgba, dsm, summary = read_maps(args.maps or args.run / "maps")
    grid = MapGrid(*summary["top_left"], summary["gsd"], summary["width"], summary["height"])
    cfg = load_config(args.run / "config.yaml")
    data, info = Path(cfg.data.path), read_scene_info(Path(cfg.data.path))
    if info is None or "settings" not in info:
        sys.exit(f"{data} is not a synthetic scene (mgs synth): there are no true heights to compare with")
    _, heights, metres = true_maps(data, grid)
    scene = load_scene(cfg.data)
    frame = frame_of(np.zeros((1, 3)), scene.train, None, str(data))
    images = [cv2.imread(str(camera.image_path))[..., ::-1].astype(np.float32) for camera in scene.train]
    drawn = (rgba[..., 3] >= round(255 * SOLID)) & (dsm != NODATA) & (under_cameras(args.run, grid) > 0)
    off = np.abs(dsm * metres - heights) / (grid.gsd * metres)
    rng = np.random.default_rng(0)
    rows = {}
    print(f"| DSM heights under the cameras | heights | agreement at the DSM's height (share under {LEVELS:g}) | "
          "at the true height |\n|---|---:|---:|---:|")
    for name, group in (("within a pixel of the truth", drawn & (off <= 1)), (f"over {args.off:g} pixels off", drawn &
                                                                             (off > args.off))):
        cells = np.flatnonzero(group)
        if cells.size == 0:
            print(f"| {name} | 0 | - | - |")
            rows[name] = {"heights": 0}
            continue
        cells = np.sort(rng.choice(cells, min(args.cells, len(cells)), replace=False))
        r, c = np.divmod(cells, grid.width)
        xy = np.column_stack([grid.x0 + (c + 0.5) * grid.gsd, grid.y0 - (r + 0.5) * grid.gsd])
        found = {}
        for where, up in (("DSM", dsm.ravel()[cells]), ("truth", heights.ravel()[cells] / metres)):
            score = agreement(colours(frame.to_world(xy, up.astype(np.float64)), scene.train, images), args.agree)
            score = score[np.isfinite(score)]  # points fewer than --agree photos see have none
            found[where] = {"median": round(float(np.median(score)), 2) if score.size else None,
                            "under_3": round(float(np.mean(score < LEVELS)), 3) if score.size else None}
        rows[name] = {"heights": int(group.sum()), "measured": len(cells), **found}
        said = [f"{f['median']:.2f} ({f['under_3']:.0%})" if f["median"] is not None else "-"
                for f in (found["DSM"], found["truth"])]
        print(f"| {name} | {int(group.sum())} | {said[0]} | {said[1]} |", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
