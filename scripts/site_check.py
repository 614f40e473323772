"""What a site of `mgs run` holds, checked against its photos: the 3D Tiles root box against the photos'
footprint on the ground, the cameras' places against their EXIF GPS, and the held-out scores.

    python scripts/site_check.py SITE [--photos PHOTOS] [--json OUT.json]

The footprint: each training photo's four corner rays met with the ground (the horizontal plane at the SfM
points' median height; the scene is in East-North-Up metres), the box of all those points. The root box: the
tileset root's ``boundingVolume.box`` (in the same ENU frame, the root transform placing it on the globe). With
``--photos``, each camera's position taken to WGS84 through ``georef.json`` is compared with its photo's EXIF GPS
(horizontal metres).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from momentum_gs.config import DataConfig  # noqa: E402
from momentum_gs.data.georef import enu_to_wgs84, read_georef, wgs84_to_enu  # noqa: E402
from momentum_gs.data.scene import load_scene  # noqa: E402
from scripts.sfm_placement import exif_gps  # noqa: E402


def footprint(scene) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) [2] of the photos' footprint on the ground plane (module notes)."""
    ground = float(np.median(scene.points[:, 2]))
    corners = []
    for camera in scene.train:
        to_world = camera.cam_to_world.double()
        K = camera.K.double()
        for u, v in ((0, 0), (camera.width, 0), (0, camera.height), (camera.width, camera.height)):
            ray = to_world[:3, :3] @ torch.linalg.solve(K, torch.tensor([u, v, 1.0], dtype=torch.float64))
            origin = to_world[:3, 3]
            if ray[2] < 0:  # looking down
                t = (ground - origin[2]) / ray[2]
                corners.append((origin + t * ray)[:2].numpy())
    corners = np.array(corners)
    return corners.min(0), corners.max(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    scene = load_scene(DataConfig(path=str(args.site / "scene"), test_every=0), images=False)
    lo, hi = footprint(scene)
    box = json.loads((args.site / "export" / "3dtiles" / "tileset.json").read_text())["root"]["boundingVolume"]["box"]
    centre, half = np.array(box[:3]), np.abs(np.array(box[3:]).reshape(3, 3)).sum(0)
    root = 2 * half[:2]
    row = {"footprint_m": (hi - lo).round(1).tolist(), "root_box_m": root.round(1).tolist(),
           "root_over_footprint": (root / (hi - lo)).round(3).tolist(),
           "root_centre_from_footprint_centre_m": float(np.linalg.norm(centre[:2] - (lo + hi) / 2))}
    georef = read_georef(args.site / "scene")
    if args.photos is not None and georef is not None:
        origin = np.array([georef["origin"][k] for k in ("lat", "lon", "alt")])
        gaps = []
        for camera in scene.train:
            photo = args.photos / camera.name
            if photo.is_file():
                gps = wgs84_to_enu(exif_gps(photo)[None], origin)[0]
                gaps.append(float(np.linalg.norm(camera.center.double().numpy()[:2] - gps[:2])))
        row.update(gps_horizontal_max_m=round(max(gaps), 3), gps_horizontal_median_m=round(float(np.median(gaps)), 3),
                   photos_compared=len(gaps))
        row["root_centre_wgs84"] = enu_to_wgs84(centre[None], origin)[0].round(7).tolist()
    results = args.site / "run" / "eval" / "results.json"
    if results.is_file():
        scores = json.loads(results.read_text())
        row.update(psnr=scores.get("psnr"), ssim=scores.get("ssim"), test_views=scores.get("num_test_views"))
    stages = args.site / "stages.json"
    if stages.is_file():
        row["stages_s"] = {k: v.get("seconds") for k, v in json.loads(stages.read_text())["stages"].items()}
    print(json.dumps(row, indent=1))
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
