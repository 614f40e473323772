"""The fused C++ compositor against the pure-PyTorch one (the reference): outputs and gradients, float64 and
float32, any tile size and channel count, the clamp and early-stop paths, determinism, and the switch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from momentum_gs.render import fused, render
from tests.test_rasterize import PARAMS, _crowded_scene, _with_grad, random_scene

BUILD = fused.build()  # compiled here on the first run on a machine (about 10 s), loaded from the cache after
pytestmark = pytest.mark.skipif(BUILD.ops is None, reason=f"the fused compositor did not build: {BUILD.note}")
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
    monkeypatch.setenv(fused.MODE_VARIABLE, mode)
    inputs = _with_grad(scene)
    out = render(**inputs, extras=extras, **options)
    _loss(out, extras).backward()
    maps = {name: getattr(out, name) for name in ("image", "alpha") + tuple(extras)}
    return maps | {k: inputs[k].grad for k in PARAMS} | {"means2d": out.means2d.grad}


def _as(scene: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in scene.items()}


SCENES = {
    "random": lambda: random_scene(200, 37, 29, seed=3, behind=4, opaque=6),  # opaque: α clamped at 0.99
    "crowded": _crowded_scene,  # pixels reach the early stop
}


@pytest.mark.parametrize("tile_size", [4, 6, 8, 16])  # 6: 36 pixels, vectors partly padding
@pytest.mark.parametrize("name", list(SCENES))
def test_float64_matches_torch_compositor(name, tile_size, monkeypatch):
    scene, extras = SCENES[name](), ("depth", "normal")
    fast = _run(scene, "fused", monkeypatch, extras, tile_size=tile_size)
    reference = _run(scene, "torch", monkeypatch, extras, tile_size=tile_size)
    for key, value in reference.items():
        assert value.abs().max() > 0, key
        torch.testing.assert_close(fast[key], value, atol=1e-10 * value.abs().max().item(), rtol=1e-10, msg=key)


@pytest.mark.parametrize("tile_size", [4, 8, 16])
def test_float32_as_accurate_as_torch_compositor(tile_size, monkeypatch):
    """float32 rounding differs between the two; the fused result must be as close to float64 as the torch
    one is (within 2× its error, plus 1e-6 of the largest value)."""
    scene = SCENES["crowded"]()
    exact = _run(scene, "torch", monkeypatch, tile_size=tile_size)
    fast, reference = (_run(_as(scene, torch.float32), mode, monkeypatch, tile_size=tile_size)
                       for mode in ("fused", "torch"))
    for key, truth in exact.items():
        assert fast[key].dtype == torch.float32, key
        error, reference_error = ((x.double() - truth).abs().max().item() for x in (fast[key], reference[key]))
        assert error <= 2 * reference_error + 1e-6 * truth.abs().max().item(), key


def test_any_number_of_channels(monkeypatch):
    scene = random_scene(150, 30, 22, seed=9, behind=2, opaque=3)
    for channels in (1, 5):
        colors = torch.rand(150, channels, generator=torch.Generator().manual_seed(channels), dtype=F64)
        case = scene | {"colors": colors, "background": torch.full((channels,), 0.3, dtype=F64)}
        fast, reference = (_run(case, mode, monkeypatch) for mode in ("fused", "torch"))
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
            out = fused.FusedGaussianTiles.apply(means2d, conics, opacities, colors, plan)
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
    from momentum_gs.render import rasterize

    calls = []
    for module in (fused, rasterize):
        made = module.pair_coefficients
        monkeypatch.setattr(module, "pair_coefficients", lambda *a, made=made: calls.append(1) or made(*a))
    scene = random_scene(80, 20, 14, seed=6)
    for mode, extras, expected in (("fused", ("depth", "normal"), 0), ("torch", (), 1),
                                   ("fused", ("median_depth",), 1)):
        calls.clear()
        _run(scene, mode, monkeypatch, extras)
        assert len(calls) == expected, (mode, extras)


def test_empty_scenes(monkeypatch):
    for scene in (random_scene(0, 16, 12), random_scene(5, 16, 12, behind=5)):
        fast = _run(scene, "fused", monkeypatch)
        assert (fast["alpha"] == 0).all() and torch.equal(fast["image"], scene["background"].expand(12, 16, 3))
        assert all((fast[k] == 0).all() for k in PARAMS)


def test_bit_for_bit_reproducible_with_any_thread_count(monkeypatch):
    """Each tile is one thread's, whichever: the same bits run to run and with 1 or 2 threads."""
    scene = _as(random_scene(3000, 192, 144, seed=11, behind=4, opaque=6), torch.float32)  # 432 tiles
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 1, 2):
            torch.set_num_threads(threads)
            runs.append(_run(scene, "fused", monkeypatch, tile_size=8))
    finally:
        torch.set_num_threads(previous)
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]) and torch.equal(runs[0][key], runs[2][key]), key


def test_switch_picks_the_compositor(monkeypatch):
    from momentum_gs.render import composite

    calls = []
    weights = composite._weights
    monkeypatch.setattr(composite, "_weights", lambda *a, **k: calls.append(1) or weights(*a, **k))
    scene = random_scene(50, 16, 12, seed=2)
    for mode, torch_calls in (("torch", True), ("fused", False), ("auto", False)):
        calls.clear()
        _run(scene, mode, monkeypatch)
        assert bool(calls) == torch_calls, mode
        assert fused.compositor_in_use().startswith(f"compositor: {'torch' if torch_calls else 'fused'}")
    monkeypatch.setenv(fused.MODE_VARIABLE, "numba")
    with pytest.raises(ValueError, match="MOMENTUM_GS_COMPOSITOR"):
        render(**scene)


def test_cached_build_loads_in_under_a_second():
    code = "from momentum_gs.render.fused import build; b = build(); print(b.ops is not None, b.seconds)"
    ok, seconds = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split()
    assert ok == "True" and float(seconds) < 1.0
