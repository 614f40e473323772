"""The fused C++ compositor, projection and tile lists against the pure-PyTorch ones (the references): outputs
and gradients, float64 and float32, any tile size and channel count, the clamp and early-stop paths, culled and
degenerate Gaussians, determinism, and the switch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from momentum_gs.render import render
from momentum_gs.render.kernels import build, ops
from tests.helpers.render_scenes import PARAMS, crowded_scene, random_scene, with_grad

BUILD = build.build()  # compiled here on the first run on a machine (about 10 s), loaded from the cache after
pytestmark = [pytest.mark.skipif(BUILD.ops is None, reason=f"the C++ kernels did not build: {BUILD.note}"),
              pytest.mark.usefixtures("kernel_threads")]  # each test at 1, 2 and 3 threads (conftest.py)
F64 = torch.float64


def _loss(out, extras=()) -> torch.Tensor:
    """Random weights on every output pixel, drawn in float64 whatever the render's dtype."""
    gen = torch.Generator().manual_seed(1)
    total = 0
    for tensor in [out.image, out.alpha] + [getattr(out, name) for name in extras]:
        total = total + (tensor * torch.randn(tensor.shape, generator=gen, dtype=F64).to(tensor.dtype)).sum()
    return total


def _run(scene: dict, mode: str, monkeypatch, extras=(), **options) -> dict:
    """Render with the compositor ``mode`` and backpropagate ``_loss``: outputs and gradients by name."""
    monkeypatch.setenv(build.KERNELS_VARIABLE, mode)
    inputs = with_grad(scene)
    out = render(**inputs, extras=extras, **options)
    _loss(out, extras).backward()
    maps = {name: getattr(out, name) for name in ("image", "alpha") + tuple(extras)}
    return maps | {k: inputs[k].grad for k in PARAMS} | {"means2d": out.means2d.grad}


def _as(scene: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in scene.items()}


SCENES = {
    "random": lambda: random_scene(200, 37, 29, seed=3, behind=4, opaque=6),  # opaque: α clamped at 0.99
    "crowded": crowded_scene,  # pixels reach the early stop
}


@pytest.mark.parametrize("tile_size", [4, 6, 8, 16])  # 6: 36 pixels, vectors partly padding
@pytest.mark.parametrize("name", list(SCENES))
def test_float64_matches_torch_compositor(name, tile_size, monkeypatch):
    scene, extras = SCENES[name](), ("depth", "normal")
    fast = _run(scene, "cpp", monkeypatch, extras, tile_size=tile_size)
    reference = _run(scene, "torch", monkeypatch, extras, tile_size=tile_size)
    for key, value in reference.items():
        assert value.abs().max() > 0, key
        torch.testing.assert_close(fast[key], value, atol=1e-10 * value.abs().max().item(), rtol=1e-10, msg=key)


@pytest.mark.parametrize("tile_size", [4, 8, 16])
def test_float32_as_accurate_as_torch_compositor(tile_size, monkeypatch):
    """float32 rounding differs between the two; the fused result must be as close to float64 as the torch
    one is (within 2× its error, plus 1e-5 of the largest value: under float32 rounding of the projection a
    pixel at the 1/255 cut or the early stop may flip, which moves one Gaussian's gradient by that much)."""
    scene = SCENES["crowded"]()
    exact = _run(scene, "torch", monkeypatch, tile_size=tile_size)
    fast, reference = (_run(_as(scene, torch.float32), mode, monkeypatch, tile_size=tile_size)
                       for mode in ("cpp", "torch"))
    for key, truth in exact.items():
        assert fast[key].dtype == torch.float32, key
        error, reference_error = ((x.double() - truth).abs().max().item() for x in (fast[key], reference[key]))
        assert error <= 2 * reference_error + 1e-5 * truth.abs().max().item(), key


def test_any_number_of_channels(monkeypatch):
    scene = random_scene(150, 30, 22, seed=9, behind=2, opaque=3)
    for channels in (1, 5):
        colors = torch.rand(150, channels, generator=torch.Generator().manual_seed(channels), dtype=F64)
        case = scene | {"colors": colors, "background": torch.full((channels,), 0.3, dtype=F64)}
        fast, reference = (_run(case, mode, monkeypatch) for mode in ("cpp", "torch"))
        for key, value in reference.items():
            torch.testing.assert_close(fast[key], value, atol=1e-12, rtol=1e-10, msg=key)


def _gaussian_rows(scene: dict, tile_size: int):
    """The compositor's per-Gaussian inputs of ``scene`` (means2d, conics, opacities, colors) and its plan."""
    from momentum_gs.render.projection import project_gaussians
    from momentum_gs.render.tiles import TilePlan, intersect_tiles, reach

    width, height = scene["width"], scene["height"]
    proj = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["world_to_cam"], scene["K"],
                             width, height, 0.01, 1e10, 0.3)
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    extents = reach(proj.covars2d, scene["opacities"], proj.radii)
    ids = intersect_tiles(proj.means2d, extents, proj.depths, tiles_x, tiles_y, tile_size)
    plan = TilePlan(tile_size, tiles_x, tiles_y, *ids, 1 << 18)
    rows = [proj.means2d, proj.conics, scene["opacities"], scene["colors"]]
    return [row.detach().clone().requires_grad_() for row in rows], plan


@pytest.mark.parametrize("tile_size", [4, 8, 16])
def test_gaussian_rows_get_their_pairs_gradients(tile_size, monkeypatch):
    """FusedGaussianTiles against pair_coefficients + gathers + CompositeTiles in float64, gradients of the
    per-Gaussian rows included (conics too, which renders reach only through means, quats and scales); most
    Gaussians here cover several tiles, so each gradient is a sum over pairs."""
    from momentum_gs.render.composite import CompositeTiles, pair_coefficients

    scene = random_scene(60, 40, 28, seed=4, behind=2, opaque=4)
    scene["scales"] = torch.full((60, 3), 0.15, dtype=F64)  # several pixels to tens of pixels wide
    results = []
    for fast in (True, False):
        rows, plan = _gaussian_rows(scene, tile_size)
        means2d, conics, opacities, colors = rows
        if fast:
            out = ops.FusedGaussianTiles.apply(means2d, conics, opacities, colors, plan)
        else:
            coefs = pair_coefficients(means2d, conics, plan)
            out = CompositeTiles.apply(coefs, opacities[plan.gauss_ids], colors[plan.gauss_ids], plan, True)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
        (out * weights).sum().backward()
        results.append([out] + [row.grad for row in rows])
    assert torch.bincount(plan.gauss_ids).max() >= 4  # Gaussians drawn in several tiles
    for name, fast, reference in zip(("out", "means2d", "conics", "opacities", "colors"), *results):
        assert reference.abs().max() > 0, name
        torch.testing.assert_close(fast, reference, atol=1e-10 * reference.abs().max().item(), rtol=1e-10,
                                   msg=name)


def test_fused_render_makes_no_pair_tensors(monkeypatch):
    """A fused render reads the Gaussians' rows in C++: no per-pair coefficients or gathers in PyTorch (the
    median depth, which has no gradient, still makes them); the torch compositor makes them."""
    from momentum_gs.render import builtin

    calls = []
    for module in (ops, builtin):
        made = module.pair_coefficients
        monkeypatch.setattr(module, "pair_coefficients", lambda *a, made=made: calls.append(1) or made(*a))
    scene = random_scene(80, 20, 14, seed=6)
    for mode, extras, expected in (("cpp", ("depth", "normal"), 0), ("torch", (), 1),
                                   ("cpp", ("median_depth",), 1)):
        calls.clear()
        _run(scene, mode, monkeypatch, extras)
        assert len(calls) == expected, (mode, extras)


def test_empty_scenes(monkeypatch):
    for scene in (random_scene(0, 16, 12), random_scene(5, 16, 12, behind=5)):
        fast = _run(scene, "cpp", monkeypatch)
        assert (fast["alpha"] == 0).all() and torch.equal(fast["image"], scene["background"].expand(12, 16, 3))
        assert all((fast[k] == 0).all() for k in PARAMS)


def test_bit_for_bit_reproducible_with_any_thread_count(monkeypatch):
    """Each tile is one thread's, whichever: the same bits run to run and with 1, 2 or 3 threads."""
    scene = _as(random_scene(3000, 192, 144, seed=11, behind=4, opaque=6), torch.float32)  # 432 tiles
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(_run(scene, "cpp", monkeypatch, tile_size=8))
    finally:
        torch.set_num_threads(previous)
    for key in runs[0]:
        assert all(torch.equal(runs[0][key], run[key]) for run in runs[1:]), key


def test_switch_picks_the_compositor(monkeypatch):
    from momentum_gs.render import composite

    calls = []
    weights = composite._weights
    monkeypatch.setattr(composite, "_weights", lambda *a, **k: calls.append(1) or weights(*a, **k))
    scene = random_scene(50, 16, 12, seed=2)
    for mode, torch_calls in (("torch", True), ("cpp", False), ("auto", False)):
        calls.clear()
        _run(scene, mode, monkeypatch)
        assert bool(calls) == torch_calls, mode
        assert build.kernels_in_use().startswith(f"kernels: {'torch' if torch_calls else 'cpp'}")
    monkeypatch.setenv(build.OLD_VARIABLE, "numba")
    with pytest.raises(ValueError, match="MOMENTUM_GS_COMPOSITOR"):
        render(**scene)


def test_cached_build_loads_in_under_a_second():
    code = "from momentum_gs.render.kernels.build import build; b = build(); print(b.ops is not None, b.seconds)"
    ok, seconds = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split()
    assert ok == "True" and float(seconds) < 1.0


def _projection_scene(dtype=F64) -> tuple[list, dict]:
    """(means, quats, scales, world_to_cam, K) and the image size: Gaussians in front of, behind and beside a
    camera (the Jacobian's clamp), near quaternions of tiny norm, and points (scales 0: Σ₂d is 0 at eps2d 0)."""
    scene = random_scene(400, 48, 36, seed=12, behind=20)
    gen = torch.Generator().manual_seed(12)
    means = scene["means"].clone()
    means[20:60, :2] *= 6  # far beside the image: the ray slopes are clamped
    quats = scene["quats"].clone()
    quats[60:70] *= 1e-9
    scales = scene["scales"].clone()
    scales[70:90] = 0  # points: Σ₂d = eps2d·I
    scales[90:100] = torch.rand(10, 3, generator=gen, dtype=F64) * 3  # large: many tiles each
    tensors = [t.to(dtype) for t in (means, quats, scales, scene["world_to_cam"], scene["K"])]
    return tensors, {"width": scene["width"], "height": scene["height"]}


@pytest.mark.parametrize("eps2d", [0.3, 0.0])
def test_fused_projection_matches_torch(eps2d):
    from momentum_gs.render.projection import project_gaussians

    tensors, size = _projection_scene()
    results = []
    for project in (ops.project, project_gaussians):
        inputs = [t.clone().requires_grad_() for t in tensors[:3]]
        proj = project(*inputs, *tensors[3:], **size, eps2d=eps2d)
        gen = torch.Generator().manual_seed(3)
        loss = sum((out * torch.randn(out.shape, generator=gen, dtype=F64)).sum()
                   for out in (proj.means2d, proj.conics, proj.depths))
        loss.backward()
        results.append([proj.means2d, proj.covars2d, proj.conics, proj.depths] + [t.grad for t in inputs])
        results[-1].append(proj.radii)
    names = ("means2d", "covars2d", "conics", "depths", "means", "quats", "scales")
    for name, fast, reference in zip(names, *results):
        assert torch.isfinite(reference).all() and reference.abs().max() > 0, name
        torch.testing.assert_close(fast, reference, atol=1e-10 * reference.abs().max().item(), rtol=1e-10, msg=name)
    radii, reference_radii = results[0][-1], results[1][-1]
    assert radii.dtype == torch.int32 and torch.equal(radii, reference_radii)
    culled = reference_radii == 0
    assert culled[:20].all() and culled[20:60].any() and not culled.all()  # behind, beside, drawn
    if eps2d == 0:
        assert culled[70:90].all()  # Σ₂d = 0: det 0


def test_fused_projection_gradcheck():
    tensors, size = _projection_scene()
    keep = torch.cat([torch.arange(20, 30), torch.arange(100, 115)])  # clamped slopes, ordinary ones

    def outputs(means, quats, scales):
        proj = ops.project(means, quats, scales, *tensors[3:], **size)
        return proj.means2d, proj.conics, proj.depths

    inputs = [t[keep].clone().requires_grad_() for t in tensors[:3]]
    assert torch.autograd.gradcheck(outputs, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_projection_with_a_camera_gradient_takes_torch():
    """The fused projection gives no gradient to the camera: a pose that requires one takes the reference."""
    tensors, size = _projection_scene()
    pose = tensors[3].clone().requires_grad_()
    proj = ops.project(*tensors[:3], pose, tensors[4], **size)
    proj.means2d.sum().backward()
    assert pose.grad is not None and pose.grad.abs().max() > 0


def _intersect_inputs(seed: int, dtype=F64) -> tuple[list, int, int, int]:
    """means2d, extents, depths of 300 Gaussians on a 7 × 5 grid of 8-pixel tiles: some not drawn (extent
    0), some partly or wholly off the image, some with equal depths, one with a NaN mean."""
    gen = torch.Generator().manual_seed(seed)
    means2d = (torch.rand(300, 2, generator=gen, dtype=F64) * 1.6 - 0.3) * torch.tensor([56.0, 40.0], dtype=F64)
    extents = torch.rand(300, 2, generator=gen, dtype=F64) * 20
    extents[::7] = 0
    extents[1::11, 0] = 0  # zero on one axis only
    depths = torch.rand(300, generator=gen, dtype=F64) * 5
    depths[::5] = 2.5  # ties: ordered by index
    means2d[3] = float("nan")
    return [t.to(dtype) for t in (means2d, extents, depths)], 7, 5, 8


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("seed", [0, 1])
def test_fused_tile_lists_equal_torch(seed, dtype):
    from momentum_gs.render.tiles import intersect_tiles

    inputs, tiles_x, tiles_y, tile_size = _intersect_inputs(seed, dtype)
    gauss_ids, tile_ids, offsets = ops.intersect(*inputs, tiles_x, tiles_y, tile_size)
    reference_gauss, reference_tiles = intersect_tiles(*inputs, tiles_x, tiles_y, tile_size)
    assert len(reference_gauss) > 1000
    assert torch.equal(gauss_ids, reference_gauss) and torch.equal(tile_ids, reference_tiles)
    counts = torch.bincount(reference_tiles, minlength=tiles_x * tiles_y)
    assert torch.equal(offsets, torch.cat([counts.new_zeros(1), counts.cumsum(0)]))


def test_fused_tile_lists_of_nothing():
    inputs, tiles_x, tiles_y, tile_size = _intersect_inputs(0)
    inputs[1] = torch.zeros_like(inputs[1])
    gauss_ids, tile_ids, offsets = ops.intersect(*inputs, tiles_x, tiles_y, tile_size)
    assert gauss_ids.numel() == tile_ids.numel() == 0 and torch.equal(offsets, torch.zeros(36, dtype=torch.long))


def test_projection_and_tile_lists_bit_for_bit_with_any_thread_count():
    tensors, size = _projection_scene(torch.float32)
    big = [t.repeat(20, 1) for t in tensors[:3]]  # 8000 Gaussians: several parallel chunks
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            inputs = [t.clone().requires_grad_() for t in big]
            proj = ops.project(*inputs, *tensors[3:], **size)
            (proj.means2d.sum() + proj.conics.sum()).backward()
            extents = proj.covars2d.diagonal(dim1=1, dim2=2).sqrt() * 3 * (proj.radii > 0)[:, None]
            lists = ops.intersect(proj.means2d, extents, proj.depths, 6, 5, 8)
            runs.append([proj.means2d, proj.conics, *lists] + [t.grad for t in inputs])
    finally:
        torch.set_num_threads(previous)
    assert runs[0][2].numel() > 0
    for run in runs[1:]:
        assert all(torch.equal(first, other) for first, other in zip(runs[0], run))


def test_row_culling_keeps_every_row_where_alpha_rounds_to_the_cut():
    """A wide Gaussian with o a few ulp above 1/255: α falls so slowly that float32 rounding draws a row just
    outside the exact 1/255 band; the culled kernel must draw it too (bit for bit the unculled per-pair one)."""
    from momentum_gs.render.composite import pair_coefficients
    from momentum_gs.render.tiles import TilePlan

    opacity = torch.tensor(1 / 255, dtype=torch.float32)
    for _ in range(6):
        opacity = torch.nextafter(opacity, torch.ones_like(opacity))
    means2d, conics = torch.tensor([[4.5, 3.5037594]]), torch.tensor([[0.25, 0.0, 1 / 5.249e5]])
    colors, ids = torch.ones(1, 1), torch.zeros(1, dtype=torch.long)
    plan = TilePlan(8, 1, 1, ids, ids, 1 << 18)
    culled = ops.FusedGaussianTiles.apply(means2d, conics, opacity.reshape(1), colors, plan)
    unculled = ops.FusedCompositeTiles.apply(pair_coefficients(means2d, conics, plan), opacity.reshape(1), colors,
                                               plan)
    assert (unculled[0, -1].reshape(8, 8) > 0).any(1).sum() >= 2  # more than the one row of the exact band
    assert torch.equal(culled, unculled)


@pytest.mark.parametrize("tile_size", [16, 32])
def test_column_culling_keeps_every_column_where_alpha_rounds_to_the_cut(tile_size):
    """The same Gaussian turned on its side, its centre beside the middle of a tile row: where a vector of pixels
    is part of a row (a 16-pixel row is two AVX2 vectors, a 32-pixel row two AVX-512 ones) the kernel skips the
    vectors outside the Gaussian's columns, and the column that rounding draws across that border must stay."""
    from momentum_gs.render.composite import pair_coefficients
    from momentum_gs.render.tiles import TilePlan

    opacity = torch.tensor(1 / 255, dtype=torch.float32)
    for _ in range(6):
        opacity = torch.nextafter(opacity, torch.ones_like(opacity))
    means2d = torch.tensor([[tile_size / 2 - 0.5 + 0.0037594, tile_size / 2 + 0.5]])
    conics = torch.tensor([[1 / 5.249e5, 0.0, 0.25]])
    colors, ids = torch.ones(1, 1), torch.zeros(1, dtype=torch.long)
    plan = TilePlan(tile_size, 1, 1, ids, ids, 1 << 18)
    culled = ops.FusedGaussianTiles.apply(means2d, conics, opacity.reshape(1), colors, plan)
    unculled = ops.FusedCompositeTiles.apply(pair_coefficients(means2d, conics, plan), opacity.reshape(1), colors,
                                               plan)
    drawn = (unculled[0, -1].reshape(tile_size, tile_size) > 0).any(0).nonzero().flatten().tolist()
    assert drawn == [tile_size // 2 - 1, tile_size // 2]  # the exact band's column and the one across the middle
    assert torch.equal(culled, unculled)


def test_more_channels_than_the_kernels_stack_row(monkeypatch):
    """40 colour channels (the backward's per-pair row on the stack holds 32), at each thread count."""
    scene = random_scene(120, 24, 16, seed=13, opaque=2)
    colors = torch.rand(120, 40, generator=torch.Generator().manual_seed(1), dtype=F64)
    case = scene | {"colors": colors, "background": torch.zeros(40, dtype=F64)}
    fast, reference = (_run(case, mode, monkeypatch) for mode in ("cpp", "torch"))
    for key, value in reference.items():
        torch.testing.assert_close(fast[key], value, atol=1e-12, rtol=1e-10, msg=key)


def test_a_huge_gaussian_is_drawn_with_the_largest_radius():
    """A radius beyond int32 is clamped to its largest value in both projections (it wrapped to a negative
    number, which culled the Gaussian)."""
    from momentum_gs.render.projection import RADIUS_MAX, project_gaussians

    tensors, size = _projection_scene()
    scales = tensors[2].clone()
    scales[100:102] = torch.tensor([1e8, 1e30], dtype=F64)[:, None]
    for project in (ops.project, project_gaussians):
        radii = project(tensors[0], tensors[1], scales, *tensors[3:], **size).radii
        assert radii[100] == radii[101] == RADIUS_MAX


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("tile_size", [6, 8])  # 37 × 29 is a multiple of neither: the crop is exercised
def test_render_without_gradients_untiles_in_one_pass_with_the_same_bits(dtype, tile_size, monkeypatch):
    """A render nobody differentiates (eval, video) takes ``ops.composite_image``: the same image, alpha and
    maps bit for bit as the differentiable path's separate untiling, crop and background ops. Its tiles
    buffer is reused from render to render, so the second scene (fewer Gaussians, on the first's buffer)
    must show nothing of the first, and its tiles without pairs are background."""
    monkeypatch.setenv(build.KERNELS_VARIABLE, "cpp")
    extras = ("depth", "normal")
    for seed, num in ((5, 60), (6, 8)):
        scene = _as(random_scene(num, 37, 29, seed=seed, behind=2, opaque=3), dtype)
        scene["background"] = torch.tensor([0.3, 0.55, 0.9], dtype=dtype)
        with torch.no_grad():
            one_pass = render(**scene, extras=extras, tile_size=tile_size)
        several = render(**with_grad(scene), extras=extras, tile_size=tile_size)
        for name in ("image", "alpha") + extras:
            assert getattr(one_pass, name).shape == getattr(several, name).shape, name
            assert torch.equal(getattr(one_pass, name), getattr(several, name).detach()), name
        empty = one_pass.alpha[..., 0] == 0
        assert empty.any() and (one_pass.image[empty] == scene["background"]).all()


def test_a_lock_left_by_a_killed_build_does_not_stop_the_next_build():
    """torch's build lock is a file: a build killed half-way (Ctrl-C during the first run) leaves it, and torch
    then waits for it for ever. ``build.build`` removes it under a lock of its own, which the kernel releases."""
    from pathlib import Path

    from torch.utils.cpp_extension import _get_build_directory

    if build.build().ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    stale = Path(_get_build_directory(f"momentum_gs_kernels_{build._build_digest(build.march())}", False)) / "lock"
    stale.touch()
    try:
        program = "from momentum_gs.render.kernels.build import build; print(build().note)"
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    finally:
        left = stale.exists()
        stale.unlink(missing_ok=True)
    assert result.returncode == 0 and result.stdout.startswith("ready in"), result.stdout + result.stderr
    assert not left
