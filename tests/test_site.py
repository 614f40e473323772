"""`mgs run`'s pieces: one bake shared by several exports, the floaters an export drops, the stages kept and redone,
and the site's page."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.data import footprint
from momentum_gs.data.scene import load_scene
from momentum_gs.config import DataConfig, load_config
from momentum_gs.errors import UserError
from momentum_gs.export.floaters import Views, drop_floaters, kept_by_views
from momentum_gs.export.bake import with_degree
from momentum_gs.export.shared import export_formats, parse_formats
from momentum_gs.export.standard_ply import load_standard_ply
from momentum_gs.export.tiles.gltf import load_glb
from momentum_gs.site import stages
from momentum_gs.site.folder import Site
from momentum_gs.site.options import AFFECTS, first_changed, options_of
from momentum_gs.site.outputs import outputs
from momentum_gs.site.page import page_html
from tests.helpers.cli import assert_one_line_error, mgs
from tests.helpers.tiles import random_gaussians
from tests.helpers.tiny_training import train_tiny


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    """The tiny scene trained briefly (its own copy, which a test may give a georef)."""
    folder = tmp_path_factory.mktemp("site")
    scene = shutil.copytree(tiny_scene, folder / "scene")
    return train_tiny(scene, folder / "run"), scene


def _leaves(tileset: Path) -> list[Path]:
    """The content files of the tileset's leaves."""
    found = []

    def walk(tile: dict) -> None:
        if tile.get("children"):
            for child in tile["children"]:
                walk(child)
        elif "content" in tile:
            found.append(tileset.parent / tile["content"]["uri"])

    walk(json.loads(tileset.read_text())["root"])
    return found


def _sorted_rows(values: torch.Tensor) -> np.ndarray:
    rows = values.detach().cpu().numpy().astype(np.float64)
    return rows[np.lexsort(rows.T[::-1])]


def test_several_formats_share_one_bake(trained, tmp_path):
    run, _ = trained
    lines = export_formats(run, ["3dtiles", "html", "ply"], out=tmp_path / "out", refine_steps=0,
                           tile_compression="none")
    assert sum(line.startswith("one bake for 3dtiles, html, ply") for line in lines) == 1
    ply = load_standard_ply(tmp_path / "out" / "point_cloud.ply")
    tiles = [load_glb(path) for path in _leaves(tmp_path / "out" / "3dtiles" / "tileset.json")]
    leaves = torch.cat([t.means for t in tiles]), torch.cat([t.opacities.reshape(-1) for t in tiles])
    assert len(leaves[0]) == len(ply) > 0
    # the same Gaussians (the tiles keep float32 positions about their box's centre: equal to rounding)
    np.testing.assert_allclose(_sorted_rows(leaves[0]), _sorted_rows(ply.means), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.sort(leaves[1].numpy()), np.sort(ply.opacities.reshape(-1).numpy()), rtol=0,
                               atol=1e-6)
    assert (tmp_path / "out" / "scene.html").stat().st_size > 0
    assert ply.degree == 3


@pytest.mark.slow
def test_the_ground_the_photos_see_is_worked_out_once_for_the_export_and_the_maps(trained, tmp_path, monkeypatch):
    """A georeferenced site: its export (floaters dropped, sizes capped, refined, capped again) and its maps (extent
    and seen pixels) all stand on one Ground, read from the cameras once."""
    run, scene = trained
    (scene / "georef.json").write_text(json.dumps({"origin": {"lat": 50.8, "lon": -0.1, "alt": 20.0}}))
    calls = []
    real = footprint.ground_of

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for module in list(sys.modules.values()):  # every module that took the function by name
        if getattr(module, "ground_of", None) is real:
            monkeypatch.setattr(module, "ground_of", counted)
    site = Site(tmp_path / "site")
    shutil.copytree(run, site.run)
    (tmp_path / "photos").mkdir()
    site.load()
    site.record["photos"] = str((tmp_path / "photos").resolve())
    for stage in ("sfm", "train", "eval"):
        site.mark(stage, 1.0, {"time": 20.0, "blocks": "auto"})
    try:
        said = []
        stages.run_stages(tmp_path / "photos", site, 20.0, "auto", None, say=said.append)
    finally:
        (scene / "georef.json").unlink()
    assert "== export" in said and "== maps" in said and any("dropped" in line or "one bake" in line for line in said)
    assert (site.maps / "orthophoto.tif").is_file() and (site.export / "point_cloud.ply").is_file()
    assert len(calls) == 1


def test_format_lists_are_read_and_a_wrong_name_is_one_line():
    assert parse_formats("3dtiles, html,ply,ply") == ["3dtiles", "html", "ply"]
    with pytest.raises(ValueError, match="'glb' is not a format"):
        parse_formats("ply,glb")
    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "export", "RUN", "--format", "ply,glb"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "'glb' is not a format" in result.stderr


def test_cutting_the_colours_keeps_the_gaussians():
    gaussians = random_gaussians(50, degree=3)
    dc = with_degree(gaussians, 0)
    assert dc.degree == 0 and torch.equal(dc.means, gaussians.means) and torch.equal(dc.sh[:, 0], gaussians.sh[:, 0])


def test_gaussians_no_photo_saw_are_dropped_and_the_seen_kept(tiny_scene):
    scene = load_scene(DataConfig(path=str(tiny_scene)))
    points = scene.points.astype(np.float64)
    seen = torch.tensor(points[::7], dtype=torch.float32)  # SfM points: each seen by some photo
    centre = points.mean(0)
    extent = float(np.ptp(points, axis=0).max())
    away = torch.tensor(np.array([centre + [50 * extent, 0, 0], centre + [0, -40 * extent, 0]]), dtype=torch.float32)
    means = torch.cat([seen, away])
    keep = kept_by_views(means, scene.train)
    assert keep[: len(seen)].all() and not keep[len(seen):].any()
    # z up (a georeferenced scene): far under the ground is dropped even where the photos look
    below = torch.tensor([[*centre[:2], points[:, 2].min() - 0.5 * extent]], dtype=torch.float32)
    assert kept_by_views(below, scene.train).all()  # the photos look there: seen through the ground
    assert not kept_by_views(below, scene.train, points, z_up=True).any()
    gaussians = random_gaussians(len(means), degree=0)
    gaussians.means = means
    kept, dropped = drop_floaters(gaussians, Views(scene.train, points, False))
    assert dropped == 2 and len(kept) == len(seen)
    assert drop_floaters(gaussians, None) == (gaussians, 0)


def _site_with_scene(tiny_scene: Path, tmp_path: Path) -> Site:
    """A site whose sfm stage is done: the tiny scene as its scene."""
    site = Site(tmp_path / "site")
    shutil.copytree(tiny_scene, site.scene)
    site.load()
    site.record["photos"] = str((tmp_path / "photos").resolve())
    site.mark("sfm", 1.0)
    (tmp_path / "photos").mkdir()
    return site


@pytest.mark.slow
def test_stages_run_once_are_kept_and_redone_from_the_one_asked(tiny_scene, tmp_path, monkeypatch):
    site = _site_with_scene(tiny_scene, tmp_path)
    said = []
    stages.run_stages(tmp_path / "photos", site, 30.0, "auto", None, say=said.append)
    assert [stage for stage in stages.STAGES if Site(site.root).load().done(stage)] == list(stages.STAGES)
    assert "sfm: done before" in said[0]
    trained = load_config(site.run / "config.yaml")
    geometry = trained.geometry  # trained for maps: heights anchored to SfM points
    assert geometry.preset == "maps" and geometry.lambda_sparse_depth == 0.2 and geometry.lambda_multiview == 0.15
    assert trained.distributed.views_per_process == 2  # one block: two views a process
    checkpoint = next((site.run / "ckpt").glob("*.pt"))
    stamp = checkpoint.stat().st_mtime_ns
    page = site.page.read_text()
    assert "held-out views" in page and "export/point_cloud.ply" in page and "run/eval/strip.png" in page
    said.clear()
    stages.run_stages(tmp_path / "photos", site, 30.0, "auto", None, say=said.append)
    assert all("done before" in line for line in said)
    said.clear()
    stages.run_stages(tmp_path / "photos", site, 30.0, "auto", "export", say=said.append)
    assert checkpoint.stat().st_mtime_ns == stamp and "== export" in said and "== page" in said
    # another --time: the training and what follows it are redone, and the line says why
    said.clear()
    stages.run_stages(tmp_path / "photos", site, 36.0, "auto", None, say=said.append)
    assert said[0] == "--time was 30 s, now 36 s: redoing train and the stages after it"
    assert "sfm: done before" in said[1] and [line for line in said if line.startswith("== ")] == [
        f"== {stage}" for stage in stages.STAGES[1:]]
    retrained = json.loads((site.run / "summary.json").read_text())
    assert retrained["budget_s"] == 36.0
    checkpoint = next((site.run / "ckpt").glob("*.pt"))
    stamp = checkpoint.stat().st_mtime_ns
    assert all(entry["options"] == options_of(36.0, "auto")
               for entry in Site(site.root).load().record["stages"].values() if "options" in entry)
    # the same options again: every stage is skipped
    said.clear()
    stages.run_stages(tmp_path / "photos", site, 36.0, "auto", None, say=said.append)
    assert len(said) == len(stages.STAGES) and all("done before" in line for line in said)
    assert checkpoint.stat().st_mtime_ns == stamp

    def broken(*args, **kwargs):
        raise UserError("the export broke")

    monkeypatch.setattr(stages, "export_formats", broken)
    with pytest.raises(UserError, match="the export broke"):
        stages.run_stages(tmp_path / "photos", site, 36.0, "auto", "export", say=said.append)
    record = Site(site.root).load()
    assert record.done("train") and record.done("eval") and not record.done("export")
    assert checkpoint.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_site_trained_in_two_blocks_goes_to_the_page(tiny_scene, tmp_path):
    """--blocks 2: the run holds a partition of two blocks and a model for each, and every later stage (the
    evaluation, the one bake, the maps, the page) works from the blocks as from one."""
    site = _site_with_scene(tiny_scene, tmp_path)
    # 30 s: the budget counts from the start, and on a loaded machine 20 s left under 30 steps for the training
    stages.run_stages(tmp_path / "photos", site, 30.0, "2", None, say=lambda line: None)
    record = Site(site.root).load()
    assert all(record.done(stage) for stage in stages.STAGES)
    summary = json.loads((site.run / "summary.json").read_text())
    assert summary["num_blocks"] == 2 and (site.run / "partition.png").is_file()
    assert json.loads((site.run / "eval" / "results.json").read_text())["psnr"] > 10.0
    page = site.page.read_text()
    assert "2 block(s)" in page and "run/partition.png" in page and "maps/orthophoto.png" in page
    assert (site.export / "point_cloud.ply").is_file() and (site.root / "maps" / "orthophoto.tif").is_file()


def test_a_site_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "site").write_text("a user's file")
    assert_one_line_error(mgs("run", str(tmp_path / "photos"), "--out", str(tmp_path / "site")),
                          "is a file; the site needs a folder")
    assert (tmp_path / "site").read_text() == "a user's file"


def test_a_changed_option_redoes_the_first_stage_it_affects():
    done = {"done": True, "seconds": 1.0}
    record = {"stages": {"sfm": {**done, "options": {"time": 60.0, "blocks": "auto"}},
                         "train": {**done, "options": {"time": 60.0, "blocks": "auto"}},
                         "eval": {**done, "options": {"time": 60.0, "blocks": "auto"}}}}
    same = {"time": 60.0, "blocks": "auto"}
    assert first_changed(stages.STAGES, record, same) is None
    assert first_changed(stages.STAGES, record, {"time": 60.0, "blocks": "2"}) == (
        "train", "--blocks was auto, now 2: redoing train and the stages after it")
    assert first_changed(stages.STAGES, record, {"time": None, "blocks": "auto"})[1] == (
        "--time was 60 s, now none (the config's steps): redoing train and the stages after it")
    old = {"stages": {stage: done for stage in stages.STAGES}}  # a site of before the options were recorded
    assert first_changed(stages.STAGES, old, {"time": 1.0, "blocks": "3"}) is None
    assert set(AFFECTS.values()) <= set(stages.STAGES)


def test_new_ground_control_redoes_the_sfm(tmp_path):
    done = {"done": True, "seconds": 1.0}
    before = options_of(60.0, "auto")
    record = {"stages": {stage: {**done, "options": before} for stage in stages.STAGES}}
    (tmp_path / "gcp_list.txt").write_text("EPSG:4326\n")
    assert first_changed(stages.STAGES, record, options_of(60.0, "auto")) is None
    now = options_of(60.0, "auto", gcp=tmp_path / "gcp_list.txt")
    assert first_changed(stages.STAGES, record, now) == (
        "sfm", f"--gcp was none, now {(tmp_path / 'gcp_list.txt').resolve()}: redoing sfm and the stages after it")


def test_a_site_made_from_other_photos_is_refused(tiny_scene, tmp_path):
    site = _site_with_scene(tiny_scene, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UserError, match="was made from the photos in"):
        stages.run_stages(other, site, None, "auto", None, say=lambda line: None)


def test_the_page_shows_what_the_stages_recorded(tmp_path):
    site = Site(tmp_path / "site").load()
    (site.export / "3dtiles").mkdir(parents=True)
    (site.export / "scene.html").write_text("<html></html>")
    (site.export / "3dtiles" / "tileset.json").write_text("{}")
    page = page_html(site, globe=False)
    assert "scene.html" not in page and "No export to show yet" in page  # nothing recorded: nothing shown
    site.mark("export", 2.0, None, outputs("export", site))
    page = page_html(site, globe=False)
    assert '<iframe src="export/scene.html">' in page and "npm install -g cesium" in page
    assert "stage export</td><td>2 s" in page and '<a href="export/scene.html">' in page
    globe = page_html(site, globe=True)
    assert 'Cesium.Cesium3DTileset.fromUrl("export/3dtiles/tileset.json")' in globe
    assert "const ground = null;" in globe  # no maps: the globe has no ground layer
    site.maps.mkdir()
    (site.maps / "orthophoto.png").write_bytes(b"png")
    (site.maps / "maps.json").write_text(json.dumps({"width": 10, "height": 8, "gsd": 0.5, "covered": 0.9,
                                                     "bounds_wgs84": [-0.2, 50.8, -0.1, 50.9],
                                                     "low_ground_height": 12.5, "support_vouched": 0.9812,
                                                     "support_needed": 4}))
    site.mark("maps", 1.0, None, outputs("maps", site))
    globe = page_html(site, globe=True)
    assert ('const ground = {"picture": "maps/orthophoto.png", "west_south_east_north": [-0.2, 50.8, -0.1, 50.9], '
            '"height": 12.5};' in globe) and "RectangleGeometry" in globe
    assert "10 × 8 pixels of 0.5 m, 90 % covered" in globe and '<img src="maps/orthophoto.png">' in globe
    assert "98 % of them, seen there by at least 4 photos (dsm_support.tif)" in globe


def test_a_tile_size_that_would_write_too_many_files_is_refused_before_the_first(trained, tmp_path, monkeypatch):
    from momentum_gs.export.shared import export_run
    from momentum_gs.export.tiles import lod

    assert lod.tiles_at_most([32768], 32768) == 2 and lod.tiles_at_most([40000], 32768) == 4  # 1 or 3, + 1 above
    with pytest.raises(UserError, match=r"--tile-size 1 would cut 228,357 Gaussians into up to 524,288 tile files, "
                                        r"more than the 100,000 one export may write; --tile-size 8 or more"):
        lod.check_tile_count([228_357], 1)
    lod.check_tile_count([228_357], 8)
    run, _ = trained
    monkeypatch.setattr(lod, "MAX_TILE_FILES", 6)
    for name in ("3dtiles", "ply,3dtiles"):
        out = tmp_path / name
        with pytest.raises(UserError, match="would cut"):
            export_formats(run, parse_formats(name), out=out, tile_size=64, refine_steps=0) if "," in name else \
                export_run(run, format=name, out=out, tile_size=64)
        assert not (out / "tiles").exists() and not (out / "3dtiles").exists() and not (out / "point_cloud.ply").exists()
