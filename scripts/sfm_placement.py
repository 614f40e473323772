"""Where an exported PLY's georeference side-car puts the scene, against the EXIF GPS of the photo nearest
its centre: both as metres east and north of that photo's GPS position.

    python scripts/sfm_placement.py EXPORT/point_cloud.ply SCENE PHOTOS

SCENE is the folder `mgs sfm` wrote (its sparse/0 is in the same ENU frame as the export), PHOTOS the photos.
Reads the EXIF with piexif (the `sfm` extra), independently of COLMAP's reader.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from plyfile import PlyData

from momentum_gs.data.colmap.folder import read_model
from momentum_gs.data.colmap.model import qvec_to_rotmat
from momentum_gs.data.georef import wgs84_to_enu


def exif_gps(path: Path) -> np.ndarray:
    """[3] (lat°, lon°, alt m) of a photo's EXIF GPS."""
    import piexif

    gps = piexif.load(str(path))["GPS"]

    def degrees(dms, ref) -> float:
        value = sum(num / den / 60 ** i for i, (num, den) in enumerate(dms))
        return -value if ref in (b"S", b"W") else value

    return np.array([degrees(gps[2], gps[1]), degrees(gps[4], gps[3]), gps[6][0] / gps[6][1]])


def main(ply_path: str, scene: str, photos: str) -> None:
    side = json.loads(Path(ply_path + ".georef.json").read_text())
    vertex = PlyData.read(ply_path)["vertex"]
    centre = np.median(np.stack([vertex[k] for k in "xyz"], 1).astype(np.float64), 0)
    model = read_model(Path(scene) / "sparse" / "0")
    cams = {im.name: -qvec_to_rotmat(im.qvec).T @ im.tvec for im in model.images.values()}
    name = min(cams, key=lambda n: np.linalg.norm(cams[n][:2] - centre[:2]))
    exif = exif_gps(Path(photos) / name)
    c = side["centre_wgs84"]
    placed = wgs84_to_enu(np.array([[c["lat"], c["lon"], exif[2]]]), exif)[0][:2]
    modelled = centre[:2] - cams[name][:2]
    print(f"nearest photo {name}: EXIF lat {exif[0]:.7f} lon {exif[1]:.7f}; side-car centre lat {c['lat']:.7f} "
          f"lon {c['lon']:.7f}")
    print(f"the side-car's centre from the photo's GPS: {placed[0]:.2f} m east, {placed[1]:.2f} m north; in the model: "
          f"{modelled[0]:.2f} m east, {modelled[1]:.2f} m north; {np.linalg.norm(placed - modelled):.2f} m apart")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
