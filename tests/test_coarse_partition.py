"""Cameras assigned by a coarse model's SSIM drop (the reference's criterion) and by the reference's matrices."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.config import DataConfig
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.trained import load_run
from momentum_gs.losses import ssim
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.gaussian_scene import GaussianScene
from momentum_gs.partition import Partition
from momentum_gs.partition.run import partition_main
from momentum_gs.partition.coarse import assign_by_drops, import_camera_matrix, ssim_drops
from tests.helpers.tiny_training import TINY_OVERRIDES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def coarse_run(tiny_scene, tmp_path_factory) -> Path:
    """A one-block run of the tiny scene: the coarse model."""
    from momentum_gs.config import load_config
    from momentum_gs.train.run import train

    cfg = load_config(overrides=TINY_OVERRIDES)
    cfg.data.path, cfg.out = str(tiny_scene), str(tmp_path_factory.mktemp("coarse") / "run")
    train(cfg)
    return Path(cfg.out)


@pytest.fixture(scope="module")
def grid(tiny_scene, tmp_path_factory) -> Partition:
    """The tiny scene in 4 blocks (automatic box and cuts), cameras by centre only."""
    path = tmp_path_factory.mktemp("grid") / "grid.npz"
    partition_main(DataConfig(path=str(tiny_scene)), path, num_blocks=4, coverage_threshold=None)
    return Partition.load(path)


def _without_block(model: GaussianScene, partition: Partition, block: int) -> GaussianScene:
    """The coarse model with block ``block``'s anchors really removed."""
    keep = partition.block_of(model.anchors.positions.double()) != block
    state = {name: value[keep] if torch.is_tensor(value) and value.shape[:1] == keep.shape else value
             for name, value in model.anchors.to_dict().items()}
    return GaussianScene(AnchorSet.from_dict(state), model.decoder, model.appearance)


@torch.no_grad()
@pytest.mark.slow
def test_the_drop_is_what_removing_the_blocks_anchors_does_to_the_render(coarse_run, grid, tiny_scene):
    cfg, model, _ = load_run(coarse_run, torch.device("cpu"))
    cameras = load_scene(DataConfig(path=str(tiny_scene))).train
    drops = ssim_drops(model, grid, cameras, cfg.render, show_progress=False)
    assert drops.shape == (len(cameras), grid.num_blocks) and drops.dtype == np.float32
    assert (drops >= 0).all() and (drops > 0.01).any()
    for c in (0, len(cameras) // 2, len(cameras) - 1):
        whole = model.render(cameras[c], cfg.render).output.image.clamp(0, 1)
        for b in range(grid.num_blocks):
            removed = _without_block(model, grid, b).render(cameras[c], cfg.render)
            expected = float(1 - ssim(whole, removed.output.image.clamp(0, 1)))
            assert drops[c, b] == pytest.approx(expected, abs=1e-6), (c, b)


def test_cameras_join_by_centre_or_by_a_drop_above_the_threshold(grid):
    rng = np.random.default_rng(0)
    drops = rng.uniform(0, 0.1, (len(grid.camera_block), grid.num_blocks)).astype(np.float32)
    loose, strict = assign_by_drops(grid, drops, 0.03), assign_by_drops(grid, drops, 0.08)
    for b in range(grid.num_blocks):
        expected = np.flatnonzero((grid.camera_block == b) | (drops[:, b] > 0.03))
        assert np.array_equal(loose.block_cameras[b], expected)
        assert set(strict.block_cameras[b]) <= set(loose.block_cameras[b])
        assert set(np.flatnonzero(grid.camera_block == b)) <= set(strict.block_cameras[b])
    assert loose.criterion == "centre+ssim" and loose.coverage_threshold == 0.03 and "centre+ssim > 0.03" in loose.summary()
    with pytest.raises(UserError, match="between 0 and 1"):
        assign_by_drops(grid, drops, 5)
    lonely = dataclasses.replace(grid, camera_block=np.zeros_like(grid.camera_block))
    with pytest.raises(UserError, match="block 1 .* has no training cameras"):
        assign_by_drops(lonely, np.zeros_like(drops), 0.05)


def test_the_references_matrix_is_read_in_image_name_order(grid, tmp_path):
    names = [f"view_{i:03d}.JPG" for i in range(len(grid.camera_block))][::-1]  # our order: reversed names
    expected = [np.flatnonzero(grid.camera_block == b) for b in range(grid.num_blocks)]
    expected[0] = np.union1d(expected[0], [1, 2])
    matrix = np.zeros((len(names), grid.num_blocks), bool)  # rows: sorted by name, i.e. ours reversed
    for b, cams in enumerate(expected):
        matrix[len(names) - 1 - cams, b] = True
    np.save(tmp_path / "block4_ssim0.05.npy", matrix)
    imported = import_camera_matrix(grid, tmp_path / "block4_ssim0.05.npy", names)
    for b in range(grid.num_blocks):
        assert np.array_equal(imported.block_cameras[b], expected[b])
    assert imported.criterion == "imported from block4_ssim0.05.npy"
    np.save(tmp_path / "wrong.npy", matrix[:, :3])
    with pytest.raises(UserError, match=r"expected booleans of shape \(\d+, 4\)"):
        import_camera_matrix(grid, tmp_path / "wrong.npy", names)
    with pytest.raises(UserError, match="not found"):
        import_camera_matrix(grid, tmp_path / "missing.npy", names)
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(UserError, match="is not a .npy array"):
        import_camera_matrix(grid, tmp_path / "text.npy", names)
    with open(tmp_path / "archive.npy", "wb") as file:  # an .npz under a .npy name: np.load gives an archive
        np.savez(file, matrix=matrix)
    with pytest.raises(UserError, match="is an archive of arrays, not one .npy array"):
        import_camera_matrix(grid, tmp_path / "archive.npy", names)
    counts = matrix.astype(np.int64)
    counts[0, 0] = 2  # a count, not a membership
    np.save(tmp_path / "counts.npy", counts)
    with pytest.raises(UserError, match="holds values other than 0 and 1"):
        import_camera_matrix(grid, tmp_path / "counts.npy", names)


@pytest.mark.slow
def test_mgs_partition_with_a_coarse_run(coarse_run, tiny_scene, tmp_path):
    out = tmp_path / "ssim.npz"
    mgs = [sys.executable, "-m", "momentum_gs.cli", "partition", "--data", str(tiny_scene), "--out", str(out),
           "--blocks", "4", "device=cpu"]
    result = subprocess.run([*mgs, "--coarse", str(coarse_run), "--ssim-threshold", "0.02"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cameras by centre+ssim > 0.02" in result.stdout and out.with_suffix(".png").is_file()
    partition = Partition.load(out)
    assert partition.camera_coverage.shape == (len(partition.camera_block), 4)
    for b in range(4):
        expected = np.flatnonzero((partition.camera_block == b) | (partition.camera_coverage[:, b] > 0.02))
        assert np.array_equal(partition.block_cameras[b], expected)
    both = subprocess.run([*mgs, "--coarse", str(coarse_run), "--cameras-from", str(tmp_path / "x.npy")],
                          capture_output=True, text=True, cwd=REPO)
    assert both.returncode != 0 and "not both" in both.stderr and "Traceback" not in both.stderr
    bad = subprocess.run([*mgs, "--coarse", str(coarse_run), "--ssim-threshold", "5"], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 2 and "argument --ssim-threshold: must be in (0, 1), got '5'" in bad.stderr
    assert "coarse renders" not in bad.stderr
    not_a_run = subprocess.run([*mgs, "--coarse", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert not_a_run.returncode != 0 and "is not a run folder" in not_a_run.stderr


def test_the_threshold_is_checked_from_python_too():
    from momentum_gs.errors import UserError
    from momentum_gs.partition.coarse import check_threshold

    for bad in (5.0, -0.1, float("nan")):
        with pytest.raises(UserError, match="between 0 and 1"):
            check_threshold(bad)
    check_threshold(0.05)
