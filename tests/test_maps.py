"""``mgs ortho``: the map's frame against PROJ, the orthophoto and DSM of the tiny city against the city's own
(vertical rays into the ray-cast scene), the files GIS tools read, and the one-line fallbacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from momentum_gs.cli import main
from momentum_gs.data.synthetic import city_of
from momentum_gs.data.georef import enu_to_wgs84
from momentum_gs.data import map_frame as frames
from momentum_gs.errors import UserError
from momentum_gs.export.las import save_las
from momentum_gs.export.shared import export_formats
from momentum_gs.maps import files
from momentum_gs.maps import make
from momentum_gs.maps.make import make_maps
from momentum_gs.maps.ortho import NODATA, MapGrid, splat_map
from momentum_gs.maps.spread import support_needed
from tests.helpers.map_truth import laid_on_the_city, score, true_maps
from momentum_gs.model.standard import SH_C0, StandardGaussians
from tests.helpers.cli import assert_one_line_error, mgs
from tests.helpers.tiny_training import train_tiny

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
GEOREF = {"origin": {"lat": 46.8426, "lon": -91.9946, "alt": 198.3}}  # Duluth, Minnesota: UTM zone 15N


@pytest.mark.parametrize("lat, lon, epsg", [(46.8426, -91.9946, 32615), (-33.86, 151.21, 32756), (51.5, -0.12, 32630),
                                            (0.5, 179.9, 32660)])
def test_the_utm_frame_is_the_one_proj_gives(lat, lon, epsg):
    """Points of a 2 km site carried by the fitted similarity land within a centimetre of PROJ's UTM."""
    pyproj = pytest.importorskip("pyproj")
    georef = {"origin": {"lat": lat, "lon": lon, "alt": 50.0}}
    lo, hi = np.array([-1000.0, -800.0, -20.0]), np.array([1000.0, 800.0, 60.0])
    frame = frames.georeferenced_frame(georef, lo, hi)
    assert frame.epsg == epsg and frame.residual < 0.01
    rng = np.random.default_rng(0)
    enu = rng.uniform(lo, hi, (200, 3))
    lla = enu_to_wgs84(enu, np.array([lat, lon, 50.0]))
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    east, north = to_utm.transform(lla[:, 1], lla[:, 0])
    placed = frame.to_map(enu)
    assert np.abs(placed[:, 0] - east).max() < 0.01 and np.abs(placed[:, 1] - north).max() < 0.01
    np.testing.assert_allclose(frame.heights(enu), lla[:, 2])  # above the origin's datum, curvature included
    back = frame.to_world(placed[:, :2], placed[:, 2])
    np.testing.assert_allclose(back, enu, atol=1e-6)


def test_an_own_frame_is_right_handed_with_its_up():
    frame = frames.own_frame(np.array([0.0, 0.6, 0.8]), "given")
    assert np.allclose(frame.rotation @ frame.rotation.T, np.eye(3)) and np.isclose(np.linalg.det(frame.rotation), 1)
    assert np.allclose(frame.rotation[2], [0, 0.6, 0.8]) and frame.epsg is None


@pytest.fixture(scope="module")
def run(tiny_scene, tmp_path_factory):
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("maps") / "run", ("optim.steps=200",))


@pytest.mark.slow
def test_the_tiny_citys_maps_lie_on_its_own(run, tiny_scene, tmp_path):
    """On the tiny city (200 steps): the orthophoto within a pixel of the city's true orthophoto, the DSM's
    median error under two pixels' worth of metres; the files a GIS tool reads."""
    rasterio = pytest.importorskip("rasterio")
    summary = make_maps(run, tmp_path / "maps", show_progress=False)
    maps = tmp_path / "maps"
    with rasterio.open(maps / "orthophoto.tif") as ortho, rasterio.open(maps / "dsm.tif") as dsm:
        rgba, heights = ortho.read().transpose(1, 2, 0), dsm.read(1)
        assert ortho.crs is None and dsm.nodata == NODATA and ortho.transform == dsm.transform
        assert ortho.transform.a == summary["gsd"]
        assert (ortho.transform.c, ortho.transform.f) == tuple(summary["top_left"])
    grid = MapGrid(*summary["top_left"], summary["gsd"], summary["width"], summary["height"])
    colour, truth, metres = true_maps(tiny_scene, grid)
    scores = score(rgba, heights, colour, truth, metres)
    # 200 steps on 8 photos of 48×36 pixels: the colours land in place, the heights are still loose (±15 m)
    assert scores["covered"] > 0.2 and max(map(abs, scores["shift_px"])) < 1.0 and scores["psnr"] > 14, scores
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        ".momentum_gs", "dsm.tif", "dsm_spread.png", "dsm_spread.tif", "dsm_support.png", "dsm_support.tif",
        "maps.json", "orthophoto.png", "orthophoto.tif"]
    with rasterio.open(maps / "dsm_spread.tif") as spread:  # the DSM's spread over the photos, on its grid
        band = spread.read(1)
        assert spread.transform == ortho.transform and spread.nodata == NODATA
    assert (band[heights == NODATA] == NODATA).all() and (band[band != NODATA] >= 0).all()
    measured = band != NODATA
    assert summary["spread_measured"] == pytest.approx(measured.sum() / (heights != NODATA).sum(), abs=1e-4)
    assert summary["spread_median"] == pytest.approx(np.median(band[measured]), rel=1e-3)
    vouched = np.mean(band[measured] <= files.SPREAD_FULL_PX * summary["gsd"])  # the heights the DSM vouches for
    assert summary["spread_within_vouched"] == pytest.approx(vouched, abs=1e-4)
    assert summary["spread_within_vouched"] >= summary["spread_within_pixel"]
    with rasterio.open(maps / "dsm_support.tif") as file:  # the photos that see a surface at each height
        support = file.read(1)
        assert file.transform == ortho.transform and file.nodata == files.NO_SUPPORT and support.dtype == np.uint16
    assert ((support == files.NO_SUPPORT) == (heights == NODATA)).all()
    counted = support[heights != NODATA]
    assert summary["support_needed"] == support_needed(counted) >= 2 and counted.max() <= 8  # 8 training photos
    assert summary["support_vouched"] == pytest.approx(np.mean(counted >= summary["support_needed"]), abs=1e-4)
    assert summary["support_median"] == np.median(counted) and 0 < summary["support_vouched"] < 1
    picture = cv2.imread(str(maps / "dsm_support.png"), cv2.IMREAD_UNCHANGED)  # red: the heights not to measure on
    red = (picture[..., 3] == 255) & (picture[..., :3][..., ::-1] == files.UNVOUCHED).all(-1)
    assert picture.shape[:2] == heights.shape and ((picture[..., 3] == 255) == (heights != NODATA)).all()
    assert red.sum() == ((support < summary["support_needed"]) & (heights != NODATA)).sum() > 0
    assert "the scene's own frame" in summary["crs"] and json.loads((tmp_path / "maps" / "maps.json").read_text())
    assert summary["despike_window"] == 13 and 0 <= summary["dsm_despiked"] < 0.5  # the spikes: a share of heights
    unguided = make_maps(run, tmp_path / "unguided", show_progress=False, guide=False)
    assert "dsm_guided" not in unguided and 0 < summary["dsm_guided"] < 1 and summary["guide_window"] == 7
    with rasterio.open(tmp_path / "unguided" / "dsm.tif") as dsm:
        kept = dsm.read(1)
    moved, drawn = (kept != heights).mean(), (heights != NODATA).mean()  # by the guide, then by the solve
    assert summary["dsm_guided"] * drawn <= moved + 1e-4 and 0 <= summary["dsm_solved"] * drawn <= moved + 1e-4


@pytest.mark.parametrize("depth", ["mean", "median"])
def test_gaussians_on_the_citys_surface_give_its_orthophoto_and_heights(tiny_scene, depth):
    """Flat Gaussians laid on the city's surfaces with their colours (from vertical rays on a grid twice as fine):
    splatted onto the map, they give the city's orthophoto in place and its heights. The rasterizer's low-pass
    (0.3 pixel²) widens what stands above the ground by about half a pixel: roof and tree edges miss by their
    height there, and trees look larger than the truth's 3 × 3 rays a pixel see them (PSNR about 19.5 dB)."""
    city, metres = city_of(tiny_scene)
    grid = MapGrid(-3.6, 3.6, 0.1, 72, 72)  # model units: the 72 × 72 m city in 1 m pixels
    gaussians = laid_on_the_city(city, metres, grid)
    rasters = splat_map(gaussians, frames.own_frame(np.array([0.0, 0.0, 1.0]), "z"), grid, show_progress=False,
                        depth=depth)
    truth_colour, truth_height, _ = true_maps(tiny_scene, grid)
    scores = score(rasters.rgba, rasters.dsm, truth_colour, truth_height, metres)
    assert scores["covered"] == 1.0 and max(map(abs, scores["shift_px"])) < 0.25 and scores["psnr"] > 17, scores
    assert scores["dsm_median_abs_m"] < 1e-6 and scores["dsm_rmse_m"] < 2.5 * grid.gsd * metres, scores
    flat = rasters.dsm[truth_height == 0]  # the open ground: exactly 0 where no edge is near
    assert np.mean(np.abs(flat) < 1e-6) > 0.6  # 71 % measured: the rest beside what stands up


@pytest.mark.slow
def test_the_check_scores_perfect_geometry_on_the_runs_own_grid(run, tmp_path):
    """``scripts/ortho_check.py --floor``: beside the run's scores, those of flat Gaussians laid on the city's true
    surfaces on the same grid and under the same cameras. Their median height error is 0 and, away from height
    steps, their RMSE is a small share of a pixel; what is left is the renderer's band at the steps, which no
    training beats, so the run's RMSE is not below it."""
    make_maps(run, tmp_path / "maps", show_progress=False)
    out = tmp_path / "check.json"
    subprocess.run([sys.executable, str(SCRIPTS / "ortho_check.py"), str(run), "--maps", str(tmp_path / "maps"),
                    "--json", str(out), "--floor", "--seen"], check=True, capture_output=True, timeout=600)
    found = json.loads(out.read_text())
    floor, trained, gsd = found["floor_under_cameras"], found["truth_under_cameras"], found["truth"]["gsd_m"]
    assert floor["pixels"] > 100 and floor["dsm_median_abs_m"] < 1e-6, floor
    assert floor["dsm_rmse_away_from_steps_m"] < 0.2 * gsd < floor["dsm_rmse_m"] <= trained["dsm_rmse_m"], found
    # --seen: the pixels the photos see, fewer for each photo more asked for, most seen by at least one
    rows = found["seen_under_cameras"]["by_photos"]
    shares = [row["share"] for row in rows]
    assert rows[0]["at_least"] == 1 and shares[0] > 0.9 and shares == sorted(shares, reverse=True), rows
    # the error away from steps where the DSM's spread vouches for it: more pixels for each wider spread
    vouched = found["spread_under_cameras"]["away_from_steps_by_spread"]
    assert [row["share"] for row in vouched] == sorted(row["share"] for row in vouched), vouched
    # and where enough photos confirm its heights: fewer pixels for each photo more asked for, one row vouched for
    confirmed = found["support_under_cameras"]
    assert [row["share"] for row in confirmed] == sorted((row["share"] for row in confirmed), reverse=True), confirmed
    assert sum(row["vouched"] for row in confirmed) == 1 and confirmed[0]["support_at_least"] == 2, confirmed


@pytest.mark.slow
def test_the_maps_of_the_exported_ply_are_the_maps_of_the_bake(run, tmp_path):
    """An export's PLY (the same bake, no refinement, SH degree 3 against the map's 1) gives the same coverage and
    heights as a bake of its own: the map reads the shared Gaussians in the scene's frame. (Without the guided median:
    its colours are the PLY's, whose SH degree differs, and weigh the heights a little differently.)"""
    export_formats(run, ["ply"], out=tmp_path / "export", refine_steps=0)
    ply = tmp_path / "export" / "point_cloud.ply"
    read = make_maps(run, tmp_path / "from_ply", show_progress=False, gaussians=ply, guide=False)
    baked = make_maps(run, tmp_path / "baked", show_progress=False, guide=False)
    assert read["bake"] == f"read from {ply}" and read["gaussians"] == baked["gaussians"]
    grid = ("top_left", "width", "height")
    assert [read[key] for key in grid] == [baked[key] for key in grid]
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(tmp_path / "from_ply" / "dsm.tif") as a, rasterio.open(tmp_path / "baked" / "dsm.tif") as b:
        mine, theirs = a.read(1), b.read(1)
    drawn = (mine != NODATA) & (theirs != NODATA)
    assert drawn.sum() >= 0.99 * (theirs != NODATA).sum() and np.abs(mine - theirs)[drawn].max() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("depth, expected", [("median", "builtin"), ("mean", "gsplat")])
def test_the_median_depth_is_drawn_by_the_builtin_rasterizer_where_gsplat_is_chosen(run, tmp_path, monkeypatch,
                                                                                     depth, expected):
    """On a CUDA device "auto" picks gsplat, which has no median depth: the default DSM takes the builtin
    rasterizer there, the mean depth keeps gsplat."""
    used = []

    def splat(gaussians, frame, grid, backend, show_progress, depth):
        used.append(backend)
        raise UserError("stop here")

    monkeypatch.setattr(make, "resolve_backend", lambda name, device: "gsplat")
    monkeypatch.setattr(make, "splat_map", splat)
    with pytest.raises(UserError, match="stop here"):
        make.make_maps(run, tmp_path / "maps", show_progress=False, depth=depth)
    assert used == [expected]


@pytest.mark.slow
def test_the_spread_takes_the_builtin_rasterizer_where_the_mean_depth_keeps_gsplat(run, tmp_path, monkeypatch):
    """The spread is drawn from each photo's median depth, which gsplat has not: with the DSM on gsplat (here the
    builtin standing in for it, on a CPU), the spread still renders with the builtin rasterizer."""
    asked = []

    def splat(gaussians, frame, grid, backend, show_progress, depth):
        asked.append(backend)
        return splat_map(gaussians, frame, grid, "builtin", show_progress, depth)

    monkeypatch.setattr(make, "resolve_backend", lambda name, device: "gsplat")
    monkeypatch.setattr(make, "splat_map", splat)
    summary = make.make_maps(run, tmp_path / "maps", show_progress=False, depth="mean")
    assert asked == ["gsplat"] and summary["spread_measured"] > 0 and (tmp_path / "maps" / "dsm_spread.tif").is_file()


@pytest.mark.slow
def test_without_rasterio_plain_tiffs_with_world_files_and_one_line(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "has_rasterio", lambda: False)
    assert main(["ortho", str(run), "--out", str(tmp_path / "maps"), "--gsd", "0.2"]) == 0
    said = capsys.readouterr().out
    assert "rasterio is not installed" in said and "world files" in said
    assert "spread over the photos" in said and (tmp_path / "maps" / "dsm_spread.tfw").is_file()
    assert "weighted by the orthophoto's colours" in said
    assert main(["ortho", str(run), "--out", str(tmp_path / "unguided"), "--gsd", "0.2", "--no-guide"]) == 0
    assert "dsm_guided" not in json.loads((tmp_path / "unguided" / "maps.json").read_text())
    world = (tmp_path / "maps" / "orthophoto.tfw").read_text().split()
    summary = json.loads((tmp_path / "maps" / "maps.json").read_text())
    assert float(world[0]) == 0.2 and float(world[4]) == pytest.approx(summary["top_left"][0] + 0.1)
    import cv2

    dsm = cv2.imread(str(tmp_path / "maps" / "dsm.tif"), cv2.IMREAD_UNCHANGED)
    assert dsm.dtype == np.float32 and dsm.shape == (summary["height"], summary["width"]) and (dsm != NODATA).any()
    capsys.readouterr()
    assert main(["ortho", str(run), "--out", str(tmp_path / "bare"), "--gsd", "0.2", "--no-spread"]) == 0
    assert not (tmp_path / "bare" / "dsm_spread.tif").exists()
    bare = json.loads((tmp_path / "bare" / "maps.json").read_text())
    assert "spread_median" not in bare and bare["despike_window"] == 13  # despiked without the spread too
    assert bare["dsm_guided"] is None  # the guide weighs by the spread: asked for, not done, and said so
    assert "were not guided by the orthophoto" in capsys.readouterr().out
    assert main(["ortho", str(run), "--out", str(tmp_path / "kept"), "--gsd", "0.2", "--no-spread",
                 "--despike", "0"]) == 0
    assert "dsm_despiked" not in json.loads((tmp_path / "kept" / "maps.json").read_text())
    kept = cv2.imread(str(tmp_path / "kept" / "dsm.tif"), cv2.IMREAD_UNCHANGED)
    despiked = cv2.imread(str(tmp_path / "bare" / "dsm.tif"), cv2.IMREAD_UNCHANGED)
    changed = (kept != despiked).mean()
    assert changed == pytest.approx(bare["dsm_despiked"] * (kept != NODATA).mean(), abs=1e-4)


@pytest.mark.slow
def test_the_photos_agree_on_the_heights_that_are_right(run, tmp_path):
    """``scripts/photo_agreement.py`` on the tiny city: its two groups, in the table and the JSON it prints; a height
    within a pixel of the truth is about the same point as the true one, so the photos agree about as well on it."""
    make_maps(run, tmp_path / "maps", show_progress=False)
    said = subprocess.run([sys.executable, str(SCRIPTS / "photo_agreement.py"), str(run), "--maps",
                           str(tmp_path / "maps"), "--off", "2"], check=True, capture_output=True, text=True,
                          timeout=600).stdout
    found = json.loads(said[said.index("{"):])
    right, wrong = found["within a pixel of the truth"], found["over 2 pixels off"]
    assert right["heights"] > 100 and right["measured"] == right["heights"], found
    assert abs(right["DSM"]["median"] - right["truth"]["median"]) < 3, found
    assert wrong["heights"] > 0 and "| over 2 pixels off |" in said, found


@pytest.mark.slow
def test_bad_requests_are_one_line(run, tmp_path):
    assert_one_line_error(mgs("ortho", str(run), "--gsd", "0"), "--gsd")
    assert_one_line_error(mgs("ortho", str(run), "--depth", "max"), "--depth")
    assert_one_line_error(mgs("ortho", str(run), "--despike", "4"), "--despike 4: the window has a middle cell only")
    assert_one_line_error(mgs("ortho", str(run), "--despike", "-1"), "--despike")
    assert_one_line_error(mgs("ortho", str(run), "--gaussians", str(tmp_path / "none.ply")), "not found")
    assert_one_line_error(mgs("ortho", str(run), "--gsd", "1e-6"), "give --gsd")
    assert_one_line_error(mgs("ortho", str(run), "--gsd", "1e30"), "under 8 pixels across; give --gsd")
    assert_one_line_error(mgs("ortho", str(tmp_path / "nothing")), "not a run folder")
    assert_one_line_error(mgs("ortho", str(tmp_path / "nothing"), "--gaussians", str(tmp_path / "x.ply")),
                          "nothing is not a run folder")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    assert_one_line_error(mgs("ortho", str(run), "--out", str(tmp_path / "mine")), "holds files that are not the maps")


def test_the_las_export_holds_the_centres_in_utm_with_their_colours(tmp_path):
    laspy = pytest.importorskip("laspy")
    pyproj = pytest.importorskip("pyproj")
    rng = np.random.default_rng(1)
    n = 500
    enu = rng.uniform([-300, -200, -5], [300, 200, 40], (n, 3))
    colour = rng.uniform(0, 1, (n, 3))
    gaussians = StandardGaussians(torch.tensor(enu), torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4),
                                  torch.full((n, 3), 0.1, dtype=torch.float64),
                                  torch.full((n,), 0.5, dtype=torch.float64),
                                  torch.tensor((colour - 0.5) / SH_C0)[:, None, :])
    path = save_las(gaussians, tmp_path / "points.las", GEOREF)
    cloud = laspy.read(path)
    assert str(cloud.header.version) == "1.4" and cloud.header.point_format.id == 7
    assert cloud.header.parse_crs().to_epsg() == 32615
    lla = enu_to_wgs84(enu, np.array([46.8426, -91.9946, 198.3]))
    east, north = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32615", always_xy=True).transform(lla[:, 1], lla[:, 0])
    assert np.abs(np.asarray(cloud.x) - east).max() < 0.01 and np.abs(np.asarray(cloud.y) - north).max() < 0.01
    assert np.abs(np.asarray(cloud.z) - lla[:, 2]).max() < 0.002
    np.testing.assert_allclose(np.asarray(cloud.red) / 65535, colour[:, 0], atol=1e-4)
    assert (np.asarray(cloud.intensity) == 32768).all()
    plain = laspy.read(save_las(gaussians, tmp_path / "plain.las", None))  # no georef: the scene's coordinates
    assert plain.header.parse_crs() is None and np.abs(np.asarray(plain.x) - enu[:, 0]).max() < 0.001


def test_a_5_km_corridor_at_a_zone_edge_is_exact_per_point_in_the_las(tmp_path):
    """A 5 km corridor at 11.95° E, 0.05° from zone 32's edge, where the similarity the rasters are drawn with misses
    by about a centimetre: every LAS point is PROJ's own conversion, to the file's millimetre."""
    laspy = pytest.importorskip("laspy")
    pyproj = pytest.importorskip("pyproj")
    rng = np.random.default_rng(2)
    n = 2000
    enu = np.c_[rng.uniform(-2500, 2500, n), rng.uniform(-100, 100, n), rng.uniform(-5, 40, n)]
    gaussians = StandardGaussians(torch.tensor(enu), torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4),
                                  torch.full((n, 3), 0.1, dtype=torch.float64),
                                  torch.full((n,), 0.5, dtype=torch.float64), torch.zeros(n, 1, 3, dtype=torch.float64))
    origin = np.array([47.4, 11.95, 500.0])
    georef = {"origin": {"lat": origin[0], "lon": origin[1], "alt": origin[2]}}
    cloud = laspy.read(save_las(gaussians, tmp_path / "corridor.las", georef))
    assert cloud.header.parse_crs().to_epsg() == 32632
    lla = enu_to_wgs84(enu, origin)
    east, north = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lla[:, 1], lla[:, 0])
    assert np.abs(np.asarray(cloud.x) - east).max() < 0.002 and np.abs(np.asarray(cloud.y) - north).max() < 0.002


@pytest.mark.slow
@pytest.mark.heavy
def test_a_small_survey_from_photos_to_maps_on_the_globe(tmp_path):
    """16 generated photos with GPS (640 × 480, Zürich; a 4 × 4 grid 15 m apart, 50 m up, 10-25° off straight
    down in four headings) → mgs sfm → 150 steps → make_maps: a projected EPSG CRS, the map's centre within
    10 m of the photos' GPS, pixels of at most 0.25 m, half or more of the ground the photos see covered."""
    pytest.importorskip("pycolmap")
    pytest.importorskip("piexif")
    rasterio = pytest.importorskip("rasterio")
    from momentum_gs.data.georef import wgs84_to_enu
    from momentum_gs.data.synthetic import SynthPreset, look_at_pose
    from momentum_gs.data.synthetic.survey import ORIGIN, city_for, write_photo

    poses = []
    for row, y in enumerate(np.linspace(-30, 15, 4)):
        for col, x in enumerate(np.linspace(-22.5, 22.5, 4)[:: 1 if row % 2 == 0 else -1]):
            yaw, pitch = np.radians(90.0 * (row + col)), np.radians(65.0 + 5 * col)
            poses.append(look_at_pose(np.array([x, y, 50.0 + 2 * col]), yaw, pitch))
    preset = SynthPreset(width=640, height=480, hfov_deg=70.0)
    city = city_for(poses, 50.0, preset.hfov_deg)
    centres = np.stack([-p[:3, :3].T @ p[:3, 3] for p in poses])
    (tmp_path / "photos").mkdir()
    for i, (pose, lla) in enumerate(zip(poses, enu_to_wgs84(centres, ORIGIN))):
        write_photo(tmp_path / "photos" / f"view{i:02d}.jpg", city, preset, pose, lla)
    assert main(["sfm", str(tmp_path / "photos"), "--out", str(tmp_path / "scene"), "--threads", "1"]) == 0
    run = train_tiny(tmp_path / "scene", tmp_path / "run", ("optim.steps=150",))
    summary = make_maps(run, show_progress=False)
    with rasterio.open(run / "maps" / "orthophoto.tif") as ortho:
        assert ortho.crs.to_epsg() == 32632 and ortho.crs.is_projected and ortho.res[0] <= 0.25
        covered = (ortho.read(4) >= 128).mean()
        corners = [(x, y) for x in (ortho.bounds.left, ortho.bounds.right) for y in (ortho.bounds.bottom, ortho.bounds.top)]
    pyproj = pytest.importorskip("pyproj")  # the bounds the site's globe lays the orthophoto in, checked by PROJ
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(*np.array(corners).T)
    assert summary["bounds_wgs84"] == pytest.approx([min(lon), min(lat), max(lon), max(lat)], abs=1e-7)
    with rasterio.open(run / "maps" / "dsm.tif") as dsm:
        assert dsm.transform == ortho.transform and dsm.shape == ortho.shape
    centre = wgs84_to_enu(np.array([[*summary["centre_wgs84"], 0.0]]), ORIGIN)[0, :2]
    gps = centres[:, :2].mean(0)
    assert summary["covered"] == pytest.approx(covered, abs=1e-3)
    assert np.linalg.norm(centre - gps) <= 10.0 and summary["seen_covered"] >= 0.5, (centre, gps, summary)


def test_a_5_km_corridor_at_a_zone_edge_lands_on_the_grid_where_proj_puts_it():
    """Small round Gaussians along a 5 km corridor 0.05° from zone 32's edge, splatted onto a 0.1 m UTM grid: each
    blob's centre lies where PROJ puts its point, within a centimetre (one similarity over the site missed by up
    to 1.8 cm there; each tile now has its own)."""
    pyproj = pytest.importorskip("pyproj")
    origin = np.array([47.4, 11.95, 500.0])
    georef = {"origin": {"lat": origin[0], "lon": origin[1], "alt": origin[2]}}
    enu = np.c_[np.linspace(-2490, 2490, 9), np.linspace(-6, 6, 9), np.zeros(9)]
    n = len(enu)
    gaussians = StandardGaussians(torch.tensor(enu), torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4),
                                  torch.full((n, 3), 0.15, dtype=torch.float64),
                                  torch.full((n,), 0.9, dtype=torch.float64), torch.ones(n, 1, 3, dtype=torch.float64))
    frame = frames.site_frame(enu, georef)
    assert frame.residual > 0.01  # one similarity over the corridor misses by over a centimetre
    lla = enu_to_wgs84(enu, origin)
    east, north = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lla[:, 1], lla[:, 0])
    gsd = 0.1
    grid = MapGrid(np.floor(east.min() - 5), np.ceil(north.max() + 5), gsd,
                   int((np.ceil(east.max() + 5) - np.floor(east.min() - 5)) / gsd),
                   int((np.ceil(north.max() + 5) - np.floor(north.min() - 5)) / gsd))
    alpha = splat_map(gaussians, frame, grid, show_progress=False).rgba[..., 3].astype(np.float64)
    for e, nn in zip(east, north):
        u, v = (e - grid.x0) / gsd, (grid.y0 - nn) / gsd  # the point's pixel position (pixel centres at +0.5)
        r0, c0 = int(v) - 15, int(u) - 15
        patch = alpha[r0:r0 + 31, c0:c0 + 31]
        rows, cols = np.mgrid[r0:r0 + 31, c0:c0 + 31] + 0.5
        centre = np.array([(cols * patch).sum(), (rows * patch).sum()]) / patch.sum()
        assert np.hypot(*(centre - [u, v])) * gsd < 0.01, (e, nn, centre, u, v)
