"""``mgs mesh`` end to end on the tiny city: one stitched mesh near the ground truth, block pieces, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from momentum_gs.errors import UserError
from momentum_gs.eval import geometry
from momentum_gs.eval.geometry import sample_surface
from momentum_gs.io.mesh import read_mesh
from momentum_gs.mesh import blocks, extract
from momentum_gs.mesh.extract import extract_mesh
from momentum_gs.mesh.marching import Surface, stitch
from momentum_gs.mesh.settings import MeshSettings
from tests.helpers.cli import assert_one_line_error, mgs
from tests.helpers.tiny_training import train_tiny

pytestmark = pytest.mark.slow  # each test meshes a trained run (a module fixture trains it)


@pytest.fixture(scope="module")
def block_run(tiny_scene, tmp_path_factory) -> Path:
    """The tiny city trained for 24 steps in 2 blocks."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.config import load_config
    from momentum_gs.partition import auto_partition

    folder = tmp_path_factory.mktemp("mesh_run")
    auto_partition(load_scene(load_config(overrides=[f"data.path={tiny_scene}"]).data), 2).save(folder / "part.npz")
    return train_tiny(tiny_scene, folder / "run", (f"blocks.partition={folder / 'part.npz'}", "blocks.active=1",
                                                   "blocks.interval=4", "optim.steps=24"))


@pytest.fixture(autouse=True)
def fewer_score_samples(monkeypatch):
    monkeypatch.setattr(geometry, "SCORE_SAMPLES", 50_000)


def _edges(surface: Surface) -> dict[tuple[int, int], int]:
    """{(key, key): triangles} per triangle edge of ``surface``, named by the grid edges of its two ends; edges
    between different vertices of the same keys (an unwelded seam) are counted apart, one of them kept."""
    faces = surface.faces
    pairs, uses = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1),
                            axis=0, return_counts=True)
    return dict(zip(map(tuple, np.sort(surface.keys[pairs], axis=1).tolist()), uses.tolist()))


def test_mesh_of_a_block_run(block_run, tiny_scene, tmp_path, monkeypatch):
    stitched = []  # the blocks' pieces and the stitched surface: the grid-edge names the PLY does not keep

    def keep_stitch(pieces):
        stitched.append((pieces, stitch(pieces)))
        return stitched[-1][1]

    monkeypatch.setattr(extract, "stitch", keep_stitch)
    out = tmp_path / "city.ply"
    summary = extract_mesh(block_run, out, MeshSettings(), block_meshes=True)
    vertices, faces, colors = read_mesh(out)
    assert len(faces) == summary["faces"] > 1000 and colors is not None and colors.std() > 5
    # One mesh: each grid edge's vertex once, the blocks' shared border ones merged. Not each position once:
    # edges out of a grid point where the TSDF is about 0 cross next to it, maybe the same float32 (marching.py).
    [(block_pieces, surface)] = stitched
    assert len(vertices) == len(surface.keys) == len(np.unique(surface.keys))
    np.testing.assert_array_equal(faces, surface.faces)
    shared = np.intersect1d(block_pieces[0].keys, block_pieces[1].keys)
    assert len(shared) > 0 and len(vertices) == sum(len(p.keys) for p in block_pieces) - len(shared)
    # and closed along the seam: a triangle edge both blocks made is between a triangle of each, not a crack
    seam = _edges(block_pieces[0]).keys() & _edges(block_pieces[1]).keys()
    uses = _edges(surface)
    assert len(seam) > 10 and all(uses[edge] == 2 for edge in seam)
    assert sorted(path.name for path in (tmp_path / "city_blocks").iterdir()) == [".momentum_gs", "block0.ply",
                                                                                  "block1.ply"]
    pieces = [read_mesh(tmp_path / "city_blocks" / f"block{b}.ply") for b in range(2)]
    assert sum(len(p[1]) for p in pieces) == len(faces) and all(len(p[1]) > 100 for p in pieces)
    assert len(vertices) < sum(len(p[0]) for p in pieces)  # shared border vertices counted once
    # in the scene's frame, near the ground truth: the median distance is about 2 pixels' footprint
    gt_vertices, gt_faces, _ = read_mesh(tiny_scene / "mesh.ply")
    samples = sample_surface(vertices, faces, 20_000, np.random.default_rng(0))
    distance, _ = cKDTree(sample_surface(gt_vertices, gt_faces, 200_000, np.random.default_rng(1))).query(samples)
    altitude = 4.5  # the tiny preset's flight height, model units
    assert np.median(distance) < 0.1 * altitude
    truth = summary["ground_truth"]
    assert truth["scene"]["fscore"] > 0.15 and len(truth["blocks"]) == 2  # a mesh shifted by 1 unit scores 0
    assert json.loads(out.with_suffix(".json").read_text())["faces"] == len(faces)
    picture = out.with_suffix(".png")
    assert picture.is_file() and picture.stat().st_size > 10_000


def test_mean_depth_gives_a_mesh_too(block_run, tmp_path):
    median = extract_mesh(block_run, tmp_path / "a.ply", MeshSettings(voxel=0.15))
    mean = extract_mesh(block_run, tmp_path / "b.ply", MeshSettings(voxel=0.15, depth="mean"))
    assert mean["faces"] > 300 and mean["faces"] != median["faces"]


@pytest.mark.parametrize("args, fragment", [
    (("--voxel", "1e-5"), "give a larger --voxel"),
    (("--voxel", "1000"), "give no surface"),
    (("--voxel", "-1"), "argument --voxel: must be in (0, 3.40282e+38], got '-1'"),
])
def test_bad_mesh_settings_are_one_line(block_run, tmp_path, args, fragment):
    out = tmp_path / "m.ply"
    assert_one_line_error(mgs("mesh", str(block_run), "--out", str(out), *args), fragment)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bad_mesh_input_is_one_line(block_run, tmp_path):
    assert_one_line_error(mgs("mesh", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.ply")),
                          "not a run folder")
    assert_one_line_error(mgs("mesh", str(block_run), "--out", str(tmp_path / "m.obj")), "ending in .ply")


KILLED_MESH = """
import os, sys
from momentum_gs.mesh import extract
real = extract.write_mesh
def dying(path, *args, **kwargs):
    real(path, *args, **kwargs)
    if path.name == "block0.ply":
        os._exit(9)  # as a kill after the first piece: nothing runs after it
extract.write_mesh = dying
from momentum_gs.cli import main
sys.exit(main(["mesh", sys.argv[1], "--out", sys.argv[2], "--voxel", "0.15", "--blocks"]))
"""


def _files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_block_meshes_killed_midway_then_made_again_are_a_clean_set(block_run, tmp_path):
    clean = extract_mesh(block_run, tmp_path / "clean.ply", MeshSettings(voxel=0.15), block_meshes=True)
    assert _files(Path(clean["block_meshes"])) == [".momentum_gs", "block0.ply", "block1.ply"]
    out = tmp_path / "city.ply"
    killed = subprocess.run([sys.executable, "-c", KILLED_MESH, str(block_run), str(out)], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert not (tmp_path / "city_blocks").exists()  # no half a set where the pieces go
    extract_mesh(block_run, out, MeshSettings(voxel=0.15), block_meshes=True)
    assert _files(tmp_path / "city_blocks") == _files(Path(clean["block_meshes"]))
    assert not [path.name for path in tmp_path.iterdir() if ".partial" in path.name]  # the kill's leftovers gone
    (tmp_path / "other.ply").write_bytes(b"")
    (tmp_path / "other_blocks").mkdir()
    (tmp_path / "other_blocks" / "notes.txt").write_text("a user's file")
    assert_one_line_error(mgs("mesh", str(block_run), "--out", str(tmp_path / "other.ply"), "--blocks"),
                          "holds files that are not the blocks' meshes")
    assert (tmp_path / "other_blocks" / "notes.txt").read_text() == "a user's file"


def test_a_block_no_view_sees_is_refused(block_run, tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "sees_box", lambda *args: False)
    with pytest.raises(UserError, match="block 0: no training view sees its cell"):
        extract_mesh(block_run, tmp_path / "m.ply")
    assert not (tmp_path / "m.ply").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_mesh_made_on_a_gpu_is_the_cpu_one(block_run, tmp_path):
    """Rendering and fusing on the GPU (the builtin backend there too: median depth) gives the CPU's mesh up to
    the rounding of a few TSDF values at the zero crossing."""
    cpu = extract_mesh(block_run, tmp_path / "cpu.ply", device=torch.device("cpu"))
    gpu = extract_mesh(block_run, tmp_path / "gpu.ply", device=torch.device("cuda"))
    assert abs(gpu["faces"] - cpu["faces"]) <= 0.01 * cpu["faces"]
    assert gpu["ground_truth"]["scene"]["fscore"] == pytest.approx(cpu["ground_truth"]["scene"]["fscore"], abs=0.01)


def test_a_one_block_mesh_says_its_time_after_its_first_views(tiny_scene, tmp_path, monkeypatch, capsys):
    """The bar counts views over every block, so a mesh of one block is sized too (a bar over blocks had one
    item, too few to measure, and stayed silent until the end)."""
    from momentum_gs import estimate

    run = train_tiny(tiny_scene, tmp_path / "run")
    monkeypatch.setattr(estimate, "QUIET_BELOW_S", 0.0)
    extract_mesh(run, tmp_path / "mesh.ply", MeshSettings(depth="mean"))
    err = capsys.readouterr().err.replace("\r", "\n")
    line = next((line for line in err.splitlines() if "a view here" in line), None)
    assert line is not None and line.startswith("mesh: ") and line.endswith("(a larger --voxel to shorten)"), err
