"""A georeferenced scene (``georef.json``, as `mgs sfm` writes it) is placed by what `mgs export` and
`mgs mesh` write: a side-car JSON with WGS84 positions, and a PLY header comment."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from plyfile import PlyData

from momentum_gs.cli import main
from momentum_gs.data.georef import enu_to_wgs84, robust_bounds, sidecar, weighted_quantile, wgs84_to_enu
from tests.helpers.tiny_training import train_tiny

ORIGIN = {"lat": -33.8568, "lon": 151.2153, "alt": 40.0}  # southern and eastern hemispheres: signs matter


@pytest.fixture(scope="module")
def georeferenced_run(tiny_scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("georef")
    scene = shutil.copytree(tiny_scene, folder / "scene")
    (scene / "mesh.ply").unlink()  # no ground truth: mgs mesh would spend minutes scoring against it
    (scene / "georef.json").write_text(json.dumps({"origin": ORIGIN, "residual_rms_m": 0.4}))
    return train_tiny(scene, folder / "run", ("optim.steps=8",))


def check_sidecar(path, points: np.ndarray, weights: np.ndarray | None = None) -> None:
    info = json.loads(path.read_text())
    assert info["origin"] == ORIGIN
    middle = np.median(points, 0) if weights is None else [weighted_quantile(points[:, a], weights, 0.5)
                                                           for a in range(3)]
    centre = enu_to_wgs84(np.asarray(middle)[None], [ORIGIN["lat"], ORIGIN["lon"], ORIGIN["alt"]])[0]
    assert info["centre_wgs84"]["lat"] == pytest.approx(centre[0], abs=1e-9)
    assert info["centre_wgs84"]["lon"] == pytest.approx(centre[1], abs=1e-9)
    lats = [c["lat"] for c in info["corners_wgs84"]]
    # the tiny city spans a few tens of units: its corners are within a kilometre of the origin, not at (0, 0)
    assert max(abs(lat - ORIGIN["lat"]) for lat in lats) < 0.01 and len({round(lat, 6) for lat in lats}) == 2


@pytest.mark.slow
def test_export_and_mesh_carry_the_georeference(georeferenced_run, tmp_path, capsys):
    export = ["export", str(georeferenced_run), "--out", str(tmp_path / "e"), "--sh-degree", "0", "--refine", "0"]
    assert main(export) == 0
    assert "georeference" in capsys.readouterr().out
    ply = PlyData.read(str(tmp_path / "e" / "point_cloud.ply"))
    assert any(f"lat {ORIGIN['lat']:.9f} lon {ORIGIN['lon']:.9f}" in c for c in ply.comments)
    means = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    opacities = 1 / (1 + np.exp(-np.asarray(ply["vertex"]["opacity"], np.float64)))  # the PLY keeps logits
    check_sidecar(tmp_path / "e" / "point_cloud.ply.georef.json", means, opacities)
    assert "weighted by opacity" in json.loads((tmp_path / "e" / "point_cloud.ply.georef.json").read_text())[
        "extent_rule"]

    assert main(["mesh", str(georeferenced_run), "--out", str(tmp_path / "m.ply"), "--voxel", "0.5"]) == 0
    mesh = PlyData.read(str(tmp_path / "m.ply"))
    assert any("georef ENU metres" in c for c in mesh.comments)
    check_sidecar(tmp_path / "m.ply.georef.json", np.stack([mesh["vertex"][k] for k in "xyz"], 1).astype(np.float64))


@pytest.mark.slow
def test_a_scene_without_georeference_gets_no_sidecar(tiny_scene, tmp_path):
    run = train_tiny(tiny_scene, tmp_path / "run", ("optim.steps=4",))
    assert main(["export", str(run), "--out", str(tmp_path / "e"), "--sh-degree", "0", "--refine", "0"]) == 0
    assert not list((tmp_path / "e").glob("*.georef.json"))
    assert not any("georef" in c for c in PlyData.read(str(tmp_path / "e" / "point_cloud.ply")).comments)


ORIGIN_LLA = np.array([ORIGIN["lat"], ORIGIN["lon"], ORIGIN["alt"]])
BOX = np.array([[-60.0, -38.0, 0.0], [60.0, 38.0, 10.0]])  # a 120 x 76 m capture, 10 m tall, in ENU metres


def corners_enu(info: dict) -> np.ndarray:
    """[4, 3] the side-car's corners back in ENU metres."""
    return wgs84_to_enu(np.array([[c["lat"], c["lon"], c["alt"]] for c in info["corners_wgs84"]]), ORIGIN_LLA)


def box_corners(lo, hi) -> np.ndarray:
    return np.array([[lo[0], lo[1], lo[2]], [hi[0], lo[1], lo[2]], [hi[0], hi[1], lo[2]], [lo[0], hi[1], lo[2]]])


def test_sidecar_extent_ignores_a_few_far_outliers():
    rng = np.random.default_rng(0)
    scene = rng.uniform(BOX[0], BOX[1], (10_000, 3))
    directions = rng.normal(size=(20, 3))
    outliers = 600 * directions / np.linalg.norm(directions, axis=1, keepdims=True)  # 600 m out, below ground too
    points = np.concatenate([scene, outliers])
    info = sidecar({"origin": ORIGIN}, points)
    truth = box_corners(*BOX)
    assert np.abs(corners_enu(info) - truth).max() < 5.0
    assert "percentile" in info["extent_rule"] and "weighted" not in info["extent_rule"]
    # min/max (what the side-car used to take) is hundreds of metres off on this scene: the check above can fail
    assert np.abs(box_corners(points.min(0), points.max(0)) - truth).max() > 100
    centre = wgs84_to_enu(np.array([[info["centre_wgs84"][k] for k in ("lat", "lon", "alt")]]), ORIGIN_LLA)[0]
    assert np.abs(centre - BOX.mean(0)).max() < 3.0


def test_sidecar_extent_is_opacity_weighted():
    rng = np.random.default_rng(1)
    solid = rng.uniform(BOX[0], BOX[1], (5_000, 3))
    faint = rng.uniform(-500, 500, (3_000, 3)) + [300.0, 0.0, 0.0]  # many, far, nearly transparent, off to the east
    points = np.concatenate([solid, faint])
    opacities = np.concatenate([rng.uniform(0.5, 1.0, 5_000), np.full(3_000, 1e-4)])
    info = sidecar({"origin": ORIGIN}, points, opacities)
    truth = box_corners(*BOX)
    assert np.abs(corners_enu(info) - truth).max() < 5.0
    assert "weighted by opacity" in info["extent_rule"]
    centre = wgs84_to_enu(np.array([[info["centre_wgs84"][k] for k in ("lat", "lon", "alt")]]), ORIGIN_LLA)[0]
    assert np.abs(centre - BOX.mean(0)).max() < 3.0
    # unweighted, the faint points are 3 in 8 of the scene: the box and centre go far out
    plain = sidecar({"origin": ORIGIN}, points)
    assert np.abs(corners_enu(plain) - truth).max() > 100
    plain_centre = wgs84_to_enu(np.array([[plain["centre_wgs84"][k] for k in ("lat", "lon", "alt")]]), ORIGIN_LLA)
    assert np.abs(plain_centre[0] - BOX.mean(0)).max() > 10


def test_georef_robust_bounds_edge_cases():
    point = np.array([[3.0, -4.0, 5.0]])
    lo, hi = robust_bounds(point)
    assert np.array_equal(lo, point[0]) and np.array_equal(hi, point[0])  # one point is its own bounds
    lo, hi = robust_bounds(point, np.array([0.2]))
    assert np.array_equal(lo, point[0]) and np.array_equal(hi, point[0])
    # non-finite points and zero, negative or NaN weights are left out
    points = np.array([[0.0, 0, 0], [1, 1, 1], [np.nan, 0, 0], [np.inf, 9, 9], [900, 900, 900], [-900, 0, 0],
                       [500, 500, 500]])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0, -1.0, np.nan])
    lo, hi = robust_bounds(points, weights, q=0.0)
    assert np.array_equal(lo, [0, 0, 0]) and np.array_equal(hi, [1, 1, 1])
    # q = 0 is min/max; equal weights are numpy's hazen quantile; a weight counts like that many copies, roughly
    values = np.random.default_rng(2).normal(size=(1_001, 3))
    lo, hi = robust_bounds(values, q=0.0)
    assert np.array_equal(lo, values.min(0)) and np.array_equal(hi, values.max(0))
    lo, hi = robust_bounds(values, q=0.05)
    assert np.allclose(lo, np.quantile(values, 0.05, axis=0, method="hazen"))
    assert np.allclose(hi, np.quantile(values, 0.95, axis=0, method="hazen"))
    # each value sits at the middle of its weight's share: 0 at 1/16, 1 at 3/16, 2 at 10/16 of the total
    assert weighted_quantile(np.array([2.0, 0.0, 1.0]), np.array([6.0, 1.0, 1.0]), 0.5) == pytest.approx(1 + 5 / 7)
    with pytest.raises(ValueError):
        robust_bounds(points[2:4])  # nothing finite
    with pytest.raises(ValueError):
        robust_bounds(values, q=0.5)
