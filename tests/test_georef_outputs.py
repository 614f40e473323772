"""A georeferenced scene (``georef.json``, as `mgs sfm` writes it) is placed by what `mgs export` and
`mgs mesh` write: a side-car JSON with WGS84 positions, and a PLY header comment."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from plyfile import PlyData

from momentum_gs.cli import main
from momentum_gs.data.georef import enu_to_wgs84
from tests.conftest import train_tiny

ORIGIN = {"lat": -33.8568, "lon": 151.2153, "alt": 40.0}  # southern and eastern hemispheres: signs matter


@pytest.fixture(scope="module")
def georeferenced_run(tiny_scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("georef")
    scene = shutil.copytree(tiny_scene, folder / "scene")
    (scene / "mesh.ply").unlink()  # no ground truth: mgs mesh would spend minutes scoring against it
    (scene / "georef.json").write_text(json.dumps({"origin": ORIGIN, "residual_rms_m": 0.4}))
    return train_tiny(scene, folder / "run", ("optim.steps=8",))


def check_sidecar(path, points: np.ndarray) -> None:
    info = json.loads(path.read_text())
    assert info["origin"] == ORIGIN
    centre = enu_to_wgs84(np.median(points, 0)[None], [ORIGIN["lat"], ORIGIN["lon"], ORIGIN["alt"]])[0]
    assert info["centre_wgs84"]["lat"] == pytest.approx(centre[0], abs=1e-9)
    assert info["centre_wgs84"]["lon"] == pytest.approx(centre[1], abs=1e-9)
    lats = [c["lat"] for c in info["corners_wgs84"]]
    # the tiny city spans a few tens of units: its corners are within a kilometre of the origin, not at (0, 0)
    assert max(abs(lat - ORIGIN["lat"]) for lat in lats) < 0.01 and len({round(lat, 6) for lat in lats}) == 2


def test_export_and_mesh_carry_the_georeference(georeferenced_run, tmp_path, capsys):
    export = ["export", str(georeferenced_run), "--out", str(tmp_path / "e"), "--sh-degree", "0", "--refine", "0"]
    assert main(export) == 0
    assert "georeference" in capsys.readouterr().out
    ply = PlyData.read(str(tmp_path / "e" / "point_cloud.ply"))
    assert any(f"lat {ORIGIN['lat']:.9f} lon {ORIGIN['lon']:.9f}" in c for c in ply.comments)
    means = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    check_sidecar(tmp_path / "e" / "point_cloud.ply.georef.json", means)

    assert main(["mesh", str(georeferenced_run), "--out", str(tmp_path / "m.ply"), "--voxel", "0.5"]) == 0
    mesh = PlyData.read(str(tmp_path / "m.ply"))
    assert any("georef ENU metres" in c for c in mesh.comments)
    check_sidecar(tmp_path / "m.ply.georef.json", np.stack([mesh["vertex"][k] for k in "xyz"], 1).astype(np.float64))


def test_a_scene_without_georeference_gets_no_sidecar(tiny_scene, tmp_path):
    run = train_tiny(tiny_scene, tmp_path / "run", ("optim.steps=4",))
    assert main(["export", str(run), "--out", str(tmp_path / "e"), "--sh-degree", "0", "--refine", "0"]) == 0
    assert not list((tmp_path / "e").glob("*.georef.json"))
    assert not any("georef" in c for c in PlyData.read(str(tmp_path / "e" / "point_cloud.ply")).comments)
