"""Files read back and files written: checkpoints, exported models and the readers of other programs' files
refuse in one line what does not fit (before it is loaded or allocated), and no write goes through a symbolic
link that leads out of the folder the user named, nor replaces one."""

from __future__ import annotations

import gzip
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from momentum_gs.config import DataConfig, load_config
from momentum_gs.data.images import MANIFEST
from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.export.shared import export_run
from momentum_gs.export.scaffold import export_scene, load_anchor_ply, load_export, save_anchor_ply
from momentum_gs.export.splat import load_splat, splat_bytes
from momentum_gs.export.spz import HEADER, MAGIC, load_spz, save_spz
from momentum_gs.export.standard_ply import load_standard_ply, ply_columns, save_standard_ply, standard_ply_bytes
from momentum_gs.export.tiles.blocks import export_tiles
from momentum_gs.io.atomic import atomic_write_text, temporary_path
from momentum_gs.io.checkpoint import latest_checkpoint, load_checkpoint, load_verified, save_checkpoint, save_verified
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.standard import StandardGaussians
from momentum_gs.train.run import train
from momentum_gs.trained import load_run
from tests.helpers.cli import assert_ends_in_error, mgs
from tests.helpers.colmap_folder import make_folder
from tests.helpers.run_folders import copy_run
from tests.helpers.tiny_training import train_tiny


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    """A tiny trained run (checkpoints at steps 12 and 24) and its scene; tests copy the run before changing it."""
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("files") / "run", ("log.checkpoint_every=12",)), tiny_scene


def rewrite(path: Path, change, step=None) -> None:
    """Change a checkpoint and write it back with a valid checksum (a file crafted, not damaged)."""
    ckpt = load_checkpoint(path)
    change(ckpt)
    save_checkpoint(path, ckpt["step"] if step is None else step,
                    {k: v for k, v in ckpt.items() if k not in ("format", "version", "step")})


def gaussians(n: int = 4, degree: int = 1) -> StandardGaussians:
    g = torch.Generator().manual_seed(0)
    return StandardGaussians(torch.randn(n, 3, generator=g), torch.nn.functional.normalize(torch.randn(n, 4, generator=g)),
                             torch.rand(n, 3, generator=g) * 0.1 + 0.01, torch.rand(n, generator=g) * 0.9 + 0.05,
                             torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.2)


# ---- checkpoints ---------------------------------------------------------------------------------------------
def test_no_version_skips_the_checksum(tmp_path):
    """A version-1 file (before the checksum), or a version-2 file relabelled 1 after a change, is refused with
    how to make it again, for checkpoints and exported decoders alike."""
    path = tmp_path / "step_5.pt"
    save_checkpoint(path, 5, {"w": torch.arange(4.0)})
    ckpt = torch.load(path, weights_only=True)
    ckpt["version"], ckpt["w"][0] = 1, 7.0  # tampered, and an old number so that the checksum would be skipped
    torch.save(ckpt, path)
    with pytest.raises(UserError, match=r"version 1, written before files carried a checksum.*train the run again"):
        load_checkpoint(path)
    export = tmp_path / "export"
    export.mkdir()
    (export / "point_cloud.ply").write_bytes(b"ply\n")
    torch.save({"format": "momentum_gs.decoder", "version": 1, "decoder": {}}, export / "decoder.pt")
    with pytest.raises(UserError, match=re.escape("checksum, so it cannot be checked and is not loaded; export the run "
                                                  "again: `mgs export RUN --format scaffold`")):
        load_export(export)


@pytest.mark.parametrize("step, fragment", [
    ("24", "stores step '24' (str); a step is a whole number from 0 to"),
    (10**9, "step is 1000000000, expected a whole number in [0, 24] (optim.steps=24 per block × 1 block)"),
    (-1, "stores step -1 (int)"),
])
@pytest.mark.slow
def test_a_step_of_another_type_or_past_the_schedule_is_refused(trained, tmp_path, step, fragment):
    run = copy_run(trained, tmp_path)
    rewrite(latest_checkpoint(run / "ckpt"), lambda ckpt: None, step=step)
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_run(run)


@pytest.mark.parametrize("command", ["eval", "resume"])
@pytest.mark.slow
def test_anchors_of_another_shape_than_the_config_are_one_line(trained, tmp_path, command):
    run = copy_run(trained, tmp_path)
    path = latest_checkpoint(run / "ckpt")
    n = load_checkpoint(path)["blocks"][0]["anchors"]["features"].shape[0]
    rewrite(path, lambda ckpt: ckpt["blocks"][0]["anchors"].update(features=torch.zeros(n, 16)))
    args = {"eval": ("eval", str(run), "--no-images"), "resume": ("train", "--resume", "--out", str(run), "optim.steps=30")}
    assert_ends_in_error(mgs(*args[command]),
                         f"blocks[0].anchors.features has shape ({n}, 16), expected float32 of shape ({n}, 32) "
                         "(model.feat_dim=32)")


@pytest.mark.slow
def test_a_decoder_of_another_size_is_refused_by_the_library_loaders(trained, tmp_path):
    """load_run (a checkpoint) and load_export (an exported decoder file) check every tensor against the model
    sizes before loading: one line naming the tensor, the shape found and the one expected; an exported anchor
    PLY of other sizes than its decoder is refused too."""
    fragment = "decoder.mlp_cov.2.weight has shape (35, 32), expected float32 of shape (70, 32) (model.feat_dim=32"
    run = copy_run(trained, tmp_path)
    cfg, model, _ = load_run(run)
    export = export_scene(model, cfg.model, tmp_path / "export")
    good = (export / "point_cloud.ply").read_bytes()
    save_anchor_ply(AnchorSet(torch.rand(5, 3), 0.1, feat_dim=4, n_offsets=2), export / "point_cloud.ply")
    with pytest.raises(UserError, match="holds anchors of 2 offsets and 4 features, but decoder.pt decodes 10 and 32"):
        load_export(export)
    (export / "point_cloud.ply").write_bytes(good)
    rewrite(latest_checkpoint(run / "ckpt"), lambda ckpt: ckpt["decoder"].update({"mlp_cov.2.weight": torch.zeros(35, 32)}))
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_run(run)
    meta = load_verified(export / "decoder.pt", "momentum_gs.decoder", 2, "decoder file")
    meta["decoder"]["mlp_cov.2.weight"] = torch.zeros(35, 32)
    save_verified(export / "decoder.pt", {"format": "momentum_gs.decoder", "version": 2},
                  {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_export(export)


# ---- .spz, PLY and .splat readers ------------------------------------------------------------------------------
def _gzip(payload: bytes, zeros: int = 0) -> bytes:
    """``payload`` and ``zeros`` zero bytes as one gzip stream, compressed a megabyte at a time."""
    out = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing
    parts = [out.compress(payload)] + [out.compress(bytes(1 << 20)) for _ in range(zeros >> 20)]
    return b"".join(parts + [out.flush()])


def test_spz_counts_are_bounded_by_the_file_and_the_stream_by_its_header(tmp_path, monkeypatch):
    path = tmp_path / "a.spz"
    path.write_bytes(gzip.compress(HEADER.pack(MAGIC, 3, 0, 0, 12, 0, 0)))
    with pytest.raises(UserError, match="holds no Gaussians"):
        load_spz(path)
    path.write_bytes(gzip.compress(HEADER.pack(MAGIC, 3, 2**32 - 1, 3, 12, 0, 0)))
    with pytest.raises(UserError, match=r"announces 4294967295 Gaussians .*more than 1032 times the file's"):
        load_spz(path)
    save_spz(gaussians(), path)
    good = gzip.decompress(path.read_bytes())
    path.write_bytes(_gzip(good, zeros=64 << 20))  # a bomb: 64 MB more than the header's 4 Gaussians
    with pytest.raises(UserError, match="decompresses to more than its header's 4 Gaussians"):
        load_spz(path)
    path.write_bytes(_gzip(good))
    assert len(load_spz(path)) == 4
    monkeypatch.setattr("momentum_gs.io.budget.available_bytes", lambda device: 1000)
    with pytest.raises(UserError, match=r"reading .*a.spz \(4 Gaussians\) needs about"):
        load_spz(path)


def test_ply_and_splat_files_holding_nan_are_refused(tmp_path):
    g = gaussians()
    g.scales[2, 1] = float("nan")
    (tmp_path / "a.ply").write_bytes(standard_ply_bytes(g))
    with pytest.raises(UserError, match=r"a.ply is not finite: scale_1 holds 1 NaN/inf of 4 values"):
        load_standard_ply(tmp_path / "a.ply")
    g = gaussians()
    g.means[1] = float("inf")
    (tmp_path / "a.splat").write_bytes(splat_bytes(g))
    with pytest.raises(UserError, match=r"a.splat is not finite: position holds 3 NaN/inf of 12 values"):
        load_splat(tmp_path / "a.splat")
    anchors = AnchorSet(torch.rand(5, 3), 0.1, feat_dim=4, n_offsets=2)
    with torch.no_grad():
        anchors.features[1:3, 2] = float("nan")
    save_anchor_ply(anchors, tmp_path / "anchors.ply")
    with pytest.raises(UserError, match=r"anchors.ply is not finite: f_anchor_feat_2 holds 2 NaN/inf of 5 values"):
        load_anchor_ply(tmp_path / "anchors.ply", 0.1)


def test_a_ply_header_announcing_more_vertices_than_the_file_holds_is_one_line(tmp_path):
    path = save_standard_ply(gaussians(4, degree=0), tmp_path / "a.ply")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"element vertex 4\n", b"element vertex 4000000000\n"))
    row = 4 * len(ply_columns(0))  # float32 properties
    with pytest.raises(UserError, match=f"announces 4000000000 vertex, at least {4 * 10**9 * row} bytes of "
                                        f"binary_little_endian data, but the file holds {4 * row} bytes"):
        load_standard_ply(path)
    columns = " ".join(f"property float {c}\n" for c in ("x", "y", "z"))
    path.write_bytes(f"ply\nformat ascii 1.0\nelement vertex 1000000000000\n{columns}end_header\n0 0 0\n".encode())
    with pytest.raises(UserError, match=r"announces 1000000000000 vertex, at least 6000000000000 bytes of ascii"):
        load_standard_ply(path)
    anchors = AnchorSet(torch.rand(5, 3), 0.1, feat_dim=4, n_offsets=2)
    save_anchor_ply(anchors, tmp_path / "anchors.ply")
    data = (tmp_path / "anchors.ply").read_bytes()
    (tmp_path / "anchors.ply").write_bytes(data.replace(b"element vertex 5\n", b"element vertex 50000\n"))
    with pytest.raises(UserError, match="announces 50000 vertex"):
        load_anchor_ply(tmp_path / "anchors.ply", 0.1)


# ---- a camera matrix, a lock, config values --------------------------------------------------------------------
@pytest.mark.parametrize("content, fragment", [(b"", "is empty (0 bytes)"),
                                               (None, "is not a .npy array (mmap length is greater than file size)")])
@pytest.mark.slow
def test_a_camera_matrix_that_is_empty_or_shorter_than_its_header_is_one_line(trained, tmp_path, content, fragment):
    matrix = tmp_path / "block2_ssim0.05.npy"
    if content is None:  # a header announcing a million × a million cameras, and no data
        with open(matrix, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|b1", "fortran_order": False, "shape": (10**6, 10**6)})
    else:
        matrix.write_bytes(content)
    assert_ends_in_error(mgs("partition", "--data", str(trained[1]), "--blocks", "2", "--out", str(tmp_path / "p.npz"),
                             "--cameras-from", str(matrix)), fragment)


@pytest.mark.slow
def test_a_lock_that_is_a_folder_is_one_line(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    (run / ".lock").mkdir()
    assert_ends_in_error(mgs("train", "--resume", "--out", str(run), "optim.steps=30"),
                         ".lock is a folder, not a run's lock file")


@pytest.mark.parametrize("override, fragment", [
    ("log.tensorboard=[1]", "'log.tensorboard' expects bool, got [1]"),
    ("log.tensorboard=2", "'log.tensorboard' expects bool, got 2"),
    ("log.tensorboard=~", "'log.tensorboard' expects bool, got None"),
    ("teacher.enabled={a: 1}", "'teacher.enabled' expects bool"),
    ("optim.steps=true", "'optim.steps' expects int, got True"),
    ("data.path=[1]", "'data.path' expects str, got [1]"),
])
def test_bool_keys_take_only_true_or_false_and_other_keys_take_no_bool(override, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_config(overrides=[override])
    for text, value in (("1", True), ("0", False), ("yes", True), ("false", False)):
        assert load_config(overrides=[f"log.tensorboard={text}"]).log.tensorboard is value


# ---- no write through a link -----------------------------------------------------------------------------------
def test_an_atomic_write_never_replaces_a_link_nor_writes_through_one(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    folder = tmp_path / "run"
    folder.mkdir()
    for name, write in (("config.yaml", lambda p: atomic_write_text(p, "new")),
                        ("step_1.pt", lambda p: save_checkpoint(p, 1, {"w": torch.zeros(2)}))):
        (folder / name).symlink_to(outside)
        with pytest.raises(UserError, match=f"{name} is a link to .*outside.txt; it is not replaced or written"):
            write(folder / name)
        assert (folder / name).is_symlink()
    temporary_path(folder / "summary.json").symlink_to(outside)  # a link where the temporary file goes
    atomic_write_text(folder / "summary.json", "new")
    assert (folder / "summary.json").read_text() == "new" and outside.read_text() == "keep"


@pytest.mark.parametrize("link", ["cache folder outside", "manifest", "cache folder inside"])
def test_the_image_cache_never_writes_through_a_link_leading_elsewhere(tmp_path, link):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    make_folder(data, n=3)
    elsewhere.mkdir()
    (elsewhere / "m.json").write_text("{}")
    if link == "manifest":
        (data / "images_2").mkdir()
        (data / "images_2" / MANIFEST).symlink_to(elsewhere / "m.json")
    else:
        target = elsewhere if link == "cache folder outside" else data / "own_cache"
        target.mkdir(exist_ok=True)
        (data / "images_2").symlink_to(target)
    cfg = DataConfig(path=str(data), downsample=2, test_every=0)
    if link == "cache folder inside":  # a link that stays in the dataset is followed
        assert load_scene(cfg).train[0].image_path.is_file() and (data / "own_cache" / MANIFEST).is_file()
        return
    with pytest.raises(UserError, match=r"images_2(/\.mgs_cache\.json)? is a link to .*elsewhere"):
        load_scene(cfg)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["m.json"] and (elsewhere / "m.json").read_text() == "{}"
    assert (data / "images_2" / MANIFEST).is_symlink() or link != "manifest"


@pytest.mark.slow
def test_a_run_folder_link_leading_outside_is_refused(trained, tmp_path):
    run, outside = copy_run(trained, tmp_path), tmp_path / "outside"
    shutil.move(run / "ckpt", outside)
    (run / "ckpt").symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    cfg = load_config(run / "config.yaml", ["optim.steps=30", f"out={run}"])
    with pytest.raises(UserError, match=r"ckpt is a link to .*outside, outside .*run: nothing is written through it"):
        train(cfg, resume=True)
    assert_ends_in_error(mgs("eval", str(run), "--no-images"), "ckpt is a link to")
    assert sorted(p.name for p in outside.iterdir()) == before and not (run / "eval").exists()


@pytest.mark.slow
def test_exports_never_write_through_a_link(trained, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.splat").write_bytes(b"keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "scene.splat").symlink_to(outside / "keep.splat")
    with pytest.raises(UserError, match="scene.splat is a link to"):
        export_run(trained[0], format="splat", out=out, refine_steps=0)
    assert (out / "scene.splat").is_symlink() and (outside / "keep.splat").read_bytes() == b"keep"
    (out / "tiles").symlink_to(outside)
    with pytest.raises(UserError, match="holds files that are not a 3D Tiles export"):  # the .splat link is not ours
        export_tiles(trained[0], out)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.splat"]
    (out / "scene.splat").unlink()  # a folder of a tiles link only looks like an export of ours: replaced whole
    export_tiles(trained[0], out)
    assert not (out / "tiles").is_symlink() and sorted(p.name for p in outside.iterdir()) == ["keep.splat"]


def test_a_resume_drops_log_lines_whose_step_is_not_a_number(tmp_path):
    from momentum_gs.train.progress import _open_log

    log = tmp_path / "train.log"
    lines = ['{"step": 5, "loss": 1}\n', '{"step": "7"}\n', '[1, 2]\n', '{"step": NaN}\n', '{"step": 12}\n',
             '{"step": 3, "loss": 2}\n', '{"ste']
    log.write_text("".join(lines))
    _open_log(log, start=10).close()  # used to raise TypeError comparing "7" with 10
    assert log.read_text() == lines[0] + lines[5]


def test_the_three_files_the_long_fuzz_run_broke_are_refused_in_one_line(tmp_path):
    """Found by scripts/fuzz_readers.py: an 11-byte file in torch's old layout announcing a 3 GB string, a mesh
    PLY whose colours are NaN, a camera path whose pose entries overflow a matrix product."""
    import json
    import warnings

    from momentum_gs.eval.camera_path_json import read_path_json
    from momentum_gs.io.checkpoint import load_checkpoint
    from momentum_gs.io.mesh import read_mesh

    tiny = tmp_path / "step_1.pt"
    tiny.write_bytes(b'X\xcf\xaf\xee\xbef"\x92rc\xca')
    with pytest.raises(UserError, match="is not a zip archive as torch.save writes"):
        load_checkpoint(tiny)
    mesh = tmp_path / "mesh.ply"
    mesh.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                    "property float red\nproperty float green\nproperty float blue\nelement face 1\n"
                    "property list uchar int vertex_indices\nend_header\n0 0 0 nan 0 0\n1 0 0 0 0 0\n0 1 0 0 0 0\n"
                    "3 0 1 2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match="colours that are not numbers"):
            read_mesh(mesh)
    pose = [1e300, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"render_width": 48, "render_height": 36,
                                "camera_path": [{"camera_to_world": pose, "fov": 50}] * 2}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match=r"camera_path\[0\]\.camera_to_world .*16 numbers within ±1e15"):
            read_path_json(path)
