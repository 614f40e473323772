"""Baking a trained scene into standard 3D Gaussians: SH evaluation, the PLY layout, and what a viewer sees."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from plyfile import PlyData

from momentum_gs.data.scene import load_scene
from momentum_gs.errors import UserError
from momentum_gs.export.standard_ply import load_standard_ply, ply_columns, save_standard_ply
from momentum_gs.losses import psnr
from momentum_gs.model.standard import SH_C0, StandardGaussians, bake, eval_sh, sh_basis
from momentum_gs.trained import load_run
from tests.helpers.tiny_training import train_tiny


def _random_dirs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed),
                                                     dtype=torch.float64), dim=-1)


def test_the_sh_basis_is_orthonormal_over_the_sphere():
    """∫ Y_i Y_j dΩ = δ_ij: a Monte-Carlo check over 400k directions for every degree."""
    dirs = _random_dirs(400_000)
    for degree in range(4):
        basis = sh_basis(dirs, degree)
        gram = 4 * math.pi * basis.T @ basis / len(dirs)
        torch.testing.assert_close(gram, torch.eye((degree + 1) ** 2, dtype=torch.float64), atol=0.02, rtol=0)
    with pytest.raises(UserError, match="SH degree must be 0, 1, 2 or 3"):
        sh_basis(dirs[:2], 4)
    # the original 3DGS code's order and signs: degree 1 is (-C1·y, C1·z, -C1·x), then e.g. C2[0]·x·y
    axes = torch.eye(3, dtype=torch.float64)
    c1 = 0.4886025119029199
    torch.testing.assert_close(sh_basis(axes, 1)[:, 1:], torch.tensor([[0, 0, -c1], [-c1, 0, 0], [0, c1, 0]],
                                                                      dtype=torch.float64))
    diagonal = torch.nn.functional.normalize(torch.ones(1, 3, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(sh_basis(diagonal, 2)[0, 4], torch.tensor(1.0925484305920792 / 3, dtype=torch.float64))


def test_a_constant_sh_is_a_constant_colour_and_the_fit_recovers_a_known_field():
    dirs = _random_dirs(64, seed=1)
    dc = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    sh = torch.zeros(1, 16, 3, dtype=torch.float64)
    sh[:, 0] = dc
    torch.testing.assert_close(eval_sh(sh.expand(64, 16, 3), dirs), (SH_C0 * dc + 0.5).expand(64, 3))
    # a degree-2 colour field sampled along 64 directions is fitted back exactly by least squares
    truth = torch.randn(9, 3, dtype=torch.float64) * 0.1
    basis = sh_basis(dirs, 2)
    fitted = torch.linalg.lstsq(basis, basis @ truth).solution
    torch.testing.assert_close(fitted, truth, atol=1e-10, rtol=0)


def test_the_ply_round_trips_in_the_3dgs_layout(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 50
    gaussians = StandardGaussians(means=torch.randn(n, 3, generator=g),
                                  quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                                  scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01,
                                  opacities=torch.rand(n, generator=g) * 0.9 + 0.05,
                                  sh=torch.randn(n, 16, 3, generator=g) * 0.2)
    path = save_standard_ply(gaussians, tmp_path / "point_cloud.ply")
    vertex = PlyData.read(str(path))["vertex"]
    assert list(vertex.data.dtype.names) == ply_columns(3) and len(ply_columns(3)) == 62
    # f_rest is channel-major: f_rest_{c * 15 + i} is coefficient i + 1 of channel c
    np.testing.assert_allclose(vertex["f_rest_17"], gaussians.sh[:, 3, 1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(vertex["opacity"], torch.logit(gaussians.opacities).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vertex["scale_2"], gaussians.scales[:, 2].log().numpy(), rtol=1e-6)
    back = load_standard_ply(path)
    for name in ("means", "quats", "scales", "opacities", "sh"):
        torch.testing.assert_close(getattr(back, name), getattr(gaussians, name), rtol=1e-5, atol=1e-6)
    (tmp_path / "other.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n")
    with pytest.raises(UserError, match="not a standard 3DGS PLY"):
        load_standard_ply(tmp_path / "other.ply")


def test_a_flattened_axis_is_written_as_a_ply_we_can_read_back(tmp_path):
    """A scale of exactly 0 (a sigmoid that underflowed in the bake) was written as log 0 = -inf, a file our own
    reader refuses: it is written as the smallest normal float32 instead."""
    scales = torch.tensor([[0.1, 0.2, 0.0], [0.3, 0.4, 0.5]])
    gaussians = StandardGaussians(means=torch.zeros(2, 3), quats=torch.tensor([[1.0, 0, 0, 0]] * 2), scales=scales,
                                  opacities=torch.full((2,), 0.5), sh=torch.zeros(2, 1, 3))
    path = save_standard_ply(gaussians, tmp_path / "flat.ply")
    assert np.isfinite(PlyData.read(str(path))["vertex"]["scale_2"]).all()
    back = load_standard_ply(path)
    assert 0 < back.scales[0, 2] < 1e-37
    torch.testing.assert_close(back.scales[1], scales[1])


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    return train_tiny(tiny_scene, tmp_path_factory.mktemp("bake") / "run", ("optim.steps=60",))


@pytest.mark.slow
def test_the_baked_file_renders_what_the_model_renders(trained, tmp_path):
    """Baked from the training views, read back by the standard loader, rendered with SH: close to the model
    on its training views, and a higher SH degree fits them at least as well."""
    cfg, model, _ = load_run(trained, torch.device("cpu"))
    cameras = load_scene(cfg.data).train
    scores = {}
    for degree in (0, 3):
        path = save_standard_ply(bake(model, cameras, cfg.render, degree=degree, show_progress=False),
                                 tmp_path / f"sh{degree}.ply")
        baked = load_standard_ply(path)
        assert baked.sh.shape[1] == (degree + 1) ** 2 and len(baked) > 0
        with torch.no_grad():
            scores[degree] = np.mean([float(psnr(baked.render(c, cfg.render).clamp(0, 1),
                                                 model.render(c, cfg.render).output.image.clamp(0, 1)))
                                      for c in cameras[:6]])
    # measured 36.2 and 38.5 dB; the same Gaussians in flat grey (colours not baked) score 21.3 dB
    assert scores[0] > 30 and scores[3] >= scores[0] - 0.1, scores


@pytest.mark.slow
def test_export_from_the_command_line_writes_a_standard_ply_and_refuses_bad_input(trained, tmp_path):
    import subprocess
    import sys

    def mgs(*args):
        return subprocess.run([sys.executable, "-m", "momentum_gs.cli", *args], capture_output=True, text=True)

    result = mgs("export", str(trained), "--out", str(tmp_path / "e"), "--sh-degree", "1", "--refine", "0")
    assert result.returncode == 0, result.stderr
    assert "standard 3D Gaussians (SH degree 1, baked from the training views)" in result.stdout
    assert load_standard_ply(tmp_path / "e" / "point_cloud.ply").sh.shape[1] == 4
    bad = mgs("export", str(trained), "--sh-degree", "4")
    assert bad.returncode == 2 and "invalid choice: 4" in bad.stderr
    scaffold = mgs("export", str(trained), "--format", "scaffold", "--out", str(tmp_path / "s"))
    assert scaffold.returncode == 0 and (tmp_path / "s" / "decoder.pt").is_file()
    negative = mgs("export", str(trained), "--refine", "-1", "--out", str(tmp_path / "n"))
    assert negative.returncode == 2 and "argument --refine: must be in [0, 1000000000], got '-1'" in negative.stderr
    assert not (tmp_path / "n").exists()


@pytest.mark.slow
def test_a_bake_that_cannot_fit_in_memory_is_refused_before_it_starts(trained, tmp_path, capsys, monkeypatch):
    from momentum_gs.cli import main
    from momentum_gs.io import budget

    cfg, model, _ = load_run(trained, torch.device("cpu"))
    n = model.anchors.num_anchors * model.anchors.n_offsets
    need = {0: n * 21 * 8, 3: n * 321 * 8}  # the float64 sums of a degree-0 and a degree-3 bake
    monkeypatch.setattr(budget, "available_bytes", lambda device: (need[0] + need[3]) // 2)
    assert main(["export", str(trained), "--out", str(tmp_path / "e"), "--refine", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: baking {n:,} Gaussians with SH degree 3 needs about") and "--sh-degree" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "e").exists()
    assert main(["export", str(trained), "--out", str(tmp_path / "e"), "--refine", "0", "--sh-degree", "0"]) == 0


@pytest.mark.slow
def test_refining_the_bake_fits_the_photos_better(trained, tmp_path):
    """``--refine N`` trains the baked Gaussians: closer to the training photos than the bake alone, the same
    Gaussians (none pruned here) in the same layout."""
    import subprocess
    import sys

    from momentum_gs.data.images import ImageLoader

    cfg, _, _ = load_run(trained, torch.device("cpu"))
    cameras = load_scene(cfg.data).train
    photos = ImageLoader(cameras, cache=False)
    scores = {}
    for steps in (0, 40):
        out = tmp_path / f"r{steps}"
        result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "export", str(trained), "--out", str(out),
                                 "--sh-degree", "1", "--refine", str(steps)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert ("refined 40 steps" in result.stdout) == (steps == 40)
        assert ("s a step here: about" in result.stderr and "--refine N to shorten" in result.stderr) == (steps == 40)
        g = load_standard_ply(out / "point_cloud.ply")
        with torch.no_grad():
            scores[steps] = (len(g), np.mean([float(psnr(g.render(c, cfg.render).clamp(0, 1), photos[i]))
                                              for i, c in enumerate(cameras)]))
    assert scores[40][0] <= scores[0][0] and scores[40][1] > scores[0][1] + 0.3, scores


@pytest.mark.slow
def test_the_refinement_is_cut_to_its_time_budget(trained, tmp_path):
    """Its first steps are timed; the steps that fit in ``--refine-budget`` run, the schedules over them."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "export", str(trained), "--out",
                             str(tmp_path / "e"), "--sh-degree", "0", "--refine", "400", "--refine-budget", "0.001"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "refine: " in result.stderr and "5 of the 400 steps fit in the 0 s budget" in result.stderr
    assert "--refine N to choose" in result.stderr and "distill" not in result.stderr
    assert "refined 5 steps (of 400, in 0 s)" in result.stdout


def test_a_splat_file_round_trips_within_its_quantisation(tmp_path):
    from momentum_gs.export.splat import load_splat, save_splat

    g = torch.Generator().manual_seed(3)
    n = 200
    gaussians = StandardGaussians(means=torch.randn(n, 3, generator=g) * 5,
                                  quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                                  scales=torch.rand(n, 3, generator=g) * 0.2 + 0.01,
                                  opacities=torch.rand(n, generator=g),
                                  sh=torch.rand(n, 1, 3, generator=g) * 3 - 1.5)
    path = save_splat(gaussians, tmp_path / "scene.splat")
    assert path.stat().st_size == 32 * n
    back = load_splat(path)
    importance = gaussians.scales.prod(-1) * gaussians.opacities
    order = torch.argsort(-importance, stable=True)  # most important first, as the web viewer expects
    torch.testing.assert_close(back.means, gaussians.means[order])  # float32: exact
    torch.testing.assert_close(back.scales, gaussians.scales[order])
    colour = (0.5 + SH_C0 * gaussians.sh[order, 0]).clamp(0, 1)
    assert (eval_sh(back.sh, back.means) - colour).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit colour
    assert (back.opacities - gaussians.opacities[order]).abs().max() <= 0.5 / 255 + 1e-6
    same = (back.quats * gaussians.quats[order]).sum(-1).abs()  # q and -q are one rotation
    assert same.min() > 0.999
    (tmp_path / "bad.splat").write_bytes(b"\0" * 33)
    with pytest.raises(UserError, match="not a multiple of 32"):
        load_splat(tmp_path / "bad.splat")


@pytest.mark.slow
def test_export_as_splat_from_the_command_line(trained, tmp_path):
    import subprocess
    import sys

    from momentum_gs.export.splat import load_splat

    result = subprocess.run([sys.executable, "-m", "momentum_gs.cli", "export", str(trained), "--format", "splat",
                             "--out", str(tmp_path / "e"), "--refine", "0", "--keep-floaters"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    splat = load_splat(tmp_path / "e" / "scene.splat")
    ply = load_standard_ply(save_standard_ply(bake(*_model_and_cameras(trained), degree=0, show_progress=False),
                                              tmp_path / "sh0.ply"))
    assert len(splat) == len(ply) > 0
    cfg, model, _ = load_run(trained, torch.device("cpu"))
    camera = load_scene(cfg.data).train[0]
    with torch.no_grad():  # the 8-bit file renders like the float PLY it comes from
        assert float(psnr(splat.render(camera, cfg.render), ply.render(camera, cfg.render))) > 35


def _model_and_cameras(run):
    cfg, model, _ = load_run(run, torch.device("cpu"))
    return model, load_scene(cfg.data).train, cfg.render
