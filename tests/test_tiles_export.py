"""``mgs export --format 3dtiles``: a run as a 3D Tiles tileset whose tree follows the partition, tiles bounded,
levels merged, placed on the globe by the scene's georef.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from momentum_gs.cli import main
from momentum_gs.data.georef import enu_to_wgs84, wgs84_to_ecef
from momentum_gs.export.tiles.gltf import COMPRESSION, EXTENSION, load_glb
from momentum_gs.export.tiles.lod import take
from tests.helpers.tileset_rules import tiles, tileset_problems
from tests.helpers.tiny_training import train_two_blocks

ORIGIN = {"lat": 50.8225, "lon": -0.1372, "alt": 12.0}


@pytest.fixture(scope="module")
def block_runs(tiny_scene, tmp_path_factory):
    """The tiny scene trained as 2 blocks; a georef.json beside its photos (written after the training: the
    export reads it)."""
    run, scene = train_two_blocks(tiny_scene, tmp_path_factory.mktemp("tiles"))
    (scene / "georef.json").write_text(json.dumps({"origin": ORIGIN}))
    return run, scene


def _aabb(tile: dict) -> np.ndarray:
    """[2, 3] the axis-aligned box around a tile's oriented box (centre, three half-axes)."""
    box = np.asarray(tile["boundingVolume"]["box"], np.float64)
    reach = np.abs(box[3:].reshape(3, 3)).sum(0)
    return np.stack([box[:3] - reach, box[:3] + reach])


@pytest.mark.slow
def test_the_tileset_follows_the_blocks_and_is_placed_on_the_globe(block_runs, tmp_path, capsys):
    run, _ = block_runs
    out = tmp_path / "tiles"
    assert main(["export", str(run), "--format", "3dtiles", "--tile-size", "300", "--sh-degree", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "placed on the globe" in printed and f"{ORIGIN['lat']:.6f}" in printed
    tileset = json.loads((out / "tileset.json").read_text())
    root = tileset["root"]
    assert [child["content"]["uri"] for child in root["children"]] == ["tiles/b0.glb", "tiles/b1.glb"]
    assert root["refine"] == "REPLACE" and tileset["geometricError"] >= root["geometricError"] > 0
    # SPZ tiles by default, which the tileset declares as required (what CesiumJS asks before it draws splats)
    assert tileset["extensions"]["3DTILES_content_gltf"]["extensionsRequired"] == [EXTENSION, COMPRESSION]
    assert "in SPZ streams" in printed
    total = 0
    for tile in tiles(root):
        g = load_glb(out / tile["content"]["uri"])
        assert 0 < len(g) <= 300 and g.sh.shape[1] == 4
        for child in tile.get("children", []):
            assert child["geometricError"] <= tile["geometricError"]
            assert np.all(_aabb(child)[0] >= _aabb(tile)[0] - 1e-6) and np.all(_aabb(child)[1] <= _aabb(tile)[1] + 1e-6)
        if not tile.get("children"):
            assert tile["geometricError"] == 0
            total += len(g)
    assert f"exported {total} standard 3D Gaussians" in printed
    # the root's transform takes the ENU origin to the ECEF position of the georef's origin
    matrix = np.asarray(root["transform"], np.float64).reshape(4, 4).T  # column-major
    ecef = wgs84_to_ecef(np.array([[ORIGIN["lat"], ORIGIN["lon"], ORIGIN["alt"]]]))[0]
    assert np.allclose(matrix[:3, 3], ecef, atol=1e-3)
    centre = np.asarray(root["boundingVolume"]["box"][:3])
    lla = enu_to_wgs84(centre[None], [ORIGIN["lat"], ORIGIN["lon"], ORIGIN["alt"]])[0]
    assert abs(lla[0] - ORIGIN["lat"]) < 0.01 and abs(lla[1] - ORIGIN["lon"]) < 0.01


@pytest.mark.slow
def test_without_a_georeference_the_tileset_stays_in_the_scene_frame(block_runs, tmp_path, capsys):
    run, scene = block_runs
    georef = scene / "georef.json"
    kept = georef.read_text()
    georef.unlink()
    try:
        assert main(["export", str(run), "--format", "3dtiles", "--tile-compression", "none",
                     "--out", str(tmp_path / "t")]) == 0
    finally:
        georef.write_text(kept)
    assert "not placed on the globe" in capsys.readouterr().out
    tileset = json.loads((tmp_path / "t" / "tileset.json").read_text())
    assert "transform" not in tileset["root"]
    assert tileset["extensions"]["3DTILES_content_gltf"] == {"extensionsUsed": [EXTENSION]}  # float32 tiles
    assert len(load_glb(tmp_path / "t" / tileset["root"]["content"]["uri"])) > 0


@pytest.mark.slow
def test_the_tiles_refuse_a_refinement_in_one_line(block_runs, tmp_path, capsys):
    run, _ = block_runs
    assert main(["export", str(run), "--format", "3dtiles", "--refine", "5", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--refine" in err[0] and "3dtiles" in err[0]


def test_the_levels_above_five_generated_blocks_pair_them_up_to_one_root(tmp_path):
    """Blocks 0-3 pair up into g0-3, block 4 waits alone; the root merges the two. Every tile is written once,
    every Gaussian is in one leaf, an empty block is skipped but keeps the numbering."""
    from tests.helpers.standard_city import generated_city
    from momentum_gs.export.tiles.blocks import write_tiles

    blocks = list(generated_city(5, 1500, degree=0))
    blocks.insert(2, take(blocks[0], np.arange(0)))
    written = write_tiles(iter(blocks), tmp_path, tile_size=400)
    tileset = json.loads((tmp_path / "tileset.json").read_text())
    root = tileset["root"]
    assert root["content"]["uri"] == "tiles/root.glb"
    assert [c["content"]["uri"] for c in root["children"]] == ["tiles/g0-4.glb", "tiles/b5.glb"]
    assert [c["content"]["uri"] for c in root["children"][0]["children"]] == ["tiles/g0-1.glb", "tiles/g3-4.glb"]
    every = list(tiles(root))
    assert written.tiles == len(every) == len(list((tmp_path / "tiles").glob("*.glb")))
    assert written.blocks == 5 and written.gaussians == 7500 and written.levels == 1 + 2 + 3
    leaves = [load_glb(tmp_path / t["content"]["uri"]) for t in every if "children" not in t]
    assert sum(len(g) for g in leaves) == 7500
    assert tileset_problems(tmp_path) == []
    for tile in every:
        assert len(load_glb(tmp_path / tile["content"]["uri"])) <= 400
        assert all(child["geometricError"] <= tile["geometricError"] for child in tile.get("children", []))


def test_small_blocks_gather_until_they_fill_a_tile(tmp_path):
    """Blocks of 300 Gaussians under tiles of 1000: blocks 0-3 fill one tile of theirs; blocks 4 and 5, 600
    together, join the root as they are rather than as a copy of theirs; every tile above the blocks merges."""
    from tests.helpers.standard_city import generated_city
    from momentum_gs.export.tiles.blocks import write_tiles

    write_tiles(generated_city(6, 300, degree=0), tmp_path, tile_size=1000)
    root = json.loads((tmp_path / "tileset.json").read_text())["root"]
    uris = lambda tile: [c["content"]["uri"] for c in tile.get("children", [])]  # noqa: E731
    assert uris(root) == ["tiles/g0-3.glb", "tiles/b4.glb", "tiles/b5.glb"]
    assert uris(root["children"][0]) == [f"tiles/b{b}.glb" for b in range(4)]
    assert root["geometricError"] > root["children"][0]["geometricError"] > 0
    assert tileset_problems(tmp_path) == []


def _first_leaf(tileset: dict) -> dict:
    return next(t for t in tiles(tileset["root"]) if "children" not in t)


def _moved(box: list[float]) -> list[float]:
    return [c + 50.0 for c in box[:3]] + box[3:]


MISTAKES = {  # words of the problem found: a mistake made on a copy of the tileset
    "geometricError": lambda t: _first_leaf(t).update(geometricError=t["root"]["geometricError"] + 1),
    "positions leave the tile's box": lambda t: _first_leaf(t)["boundingVolume"].update(box=_moved(_first_leaf(t)["boundingVolume"]["box"])),
    "not a file inside": lambda t: _first_leaf(t)["content"].update(uri="../outside.glb"),
    "refine": lambda t: t["root"].update(refine="MERGE"),
}


@pytest.mark.parametrize("compression", ["spz", "none"])
@pytest.mark.slow
def test_the_tileset_keeps_the_rules_of_3d_tiles(block_runs, tmp_path, compression):
    """The rules a 3D Tiles validator checks (tests/helpers/tileset_rules.py): none broken; and each of four
    mistakes made on purpose is found."""
    out = tmp_path / "t"
    assert main(["export", str(block_runs[0]), "--format", "3dtiles", "--tile-size", "300",
                 "--tile-compression", compression, "--out", str(out)]) == 0
    assert tileset_problems(out) == []
    written = (out / "tileset.json").read_text()
    for words, mistake in MISTAKES.items():
        broken = json.loads(written)
        mistake(broken)
        (out / "tileset.json").write_text(json.dumps(broken))
        assert any(words in p for p in tileset_problems(out)), (words, tileset_problems(out))
