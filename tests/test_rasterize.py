"""The tile rasterizer against the dense reference, finite differences and hand-checkable scenes."""

from __future__ import annotations

import math

import pytest
import torch

from momentum_gs.render import render, render_dense
from tests.helpers.render_scenes import (PARAMS, assert_gradients_match_dense, crowded_scene, random_scene,
                                         weighted_loss, with_grad)

F64 = torch.float64


@pytest.mark.parametrize("width, height, tile_size, num, seed", [
    (37, 29, 8, 150, 0),  # not a multiple of the tile size
    (32, 24, 8, 200, 1),
    (21, 18, 4, 80, 2),
    (40, 20, 16, 120, 3),
])
def test_forward_matches_dense_reference(width, height, tile_size, num, seed):
    scene = random_scene(num, width, height, seed=seed, behind=5, opaque=4)
    tiled = render(**scene, tile_size=tile_size)
    dense = render_dense(**scene, tile_size=tile_size)
    assert tiled.image.shape == (height, width, 3) and tiled.alpha.shape == (height, width, 1)
    assert torch.equal(tiled.radii, dense.radii)
    assert (tiled.radii[:5] == 0).all() and (tiled.radii > 0).sum() > num // 2
    torch.testing.assert_close(tiled.image, dense.image, atol=1e-10, rtol=0)
    torch.testing.assert_close(tiled.alpha, dense.alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(tiled.means2d, dense.means2d)
    torch.testing.assert_close(tiled.depths, dense.depths)


def test_float32_close_to_float64():
    scene = random_scene(200, 33, 27, seed=4)
    scene32 = {k: v.float() if torch.is_tensor(v) else v for k, v in scene.items()}
    torch.testing.assert_close(render(**scene32).image.double(), render(**scene).image, atol=2e-4, rtol=0)


def test_crowded_scene_matches_dense_reference():
    scene = crowded_scene()
    tiled, dense = render(**scene), render_dense(**scene)
    torch.testing.assert_close(tiled.image, dense.image, atol=1e-10, rtol=0)
    torch.testing.assert_close(tiled.alpha, dense.alpha, atol=1e-10, rtol=0)


@pytest.mark.parametrize("crowded", [False, True])
def test_gradients_match_dense_reference(crowded):
    scene = crowded_scene() if crowded else random_scene(120, 30, 22, seed=5, behind=4, opaque=6)
    assert_gradients_match_dense(scene, weighted_loss)


@pytest.fixture
def deterministic():
    """Deterministic kernels for one test: threads must not reorder the sums being compared bit for bit."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def test_backward_from_kept_weights_equals_backward_that_recomputes_them(monkeypatch, deterministic):
    """The forward keeps each chunk's weights for the backward within SAVE_FOR_BACKWARD_BYTES; beyond it, or
    without gradients, it keeps nothing and the backward recomputes them: the same gradients, bit for bit."""
    from momentum_gs.render import composite

    monkeypatch.setenv("MOMENTUM_GS_KERNELS", "torch")  # the torch compositor's bookkeeping, not the C++ one's
    calls = []
    weights = composite._weights

    def counted(feats, logits, with_mask=False):
        calls.append("mask" if with_mask else "plain")
        return weights(feats, logits, with_mask)

    monkeypatch.setattr(composite, "_weights", counted)
    scene = random_scene(150, 40, 30, seed=3, behind=4, opaque=6)  # opaque: α clamped, the mask matters
    grads = {}
    for budget in (1 << 30, 0):
        monkeypatch.setattr(composite, "SAVE_FOR_BACKWARD_BYTES", budget)
        calls.clear()
        inputs = with_grad(scene)
        out = render(**inputs)
        chunks = len(calls)
        weighted_loss(out).backward(retain_graph=True)
        assert calls == (["mask"] * chunks if budget else ["plain"] * chunks + ["mask"] * chunks)
        first = [inputs[k].grad.clone() for k in PARAMS] + [out.means2d.grad.clone()]
        weighted_loss(out).backward()  # a second backward recomputes what the first one freed
        grads[budget] = first
        for g, name in zip(first, PARAMS):
            assert torch.equal(inputs[name].grad, 2 * g), name
    for name, kept, recomputed in zip(PARAMS + ("means2d",), grads[1 << 30], grads[0]):
        assert kept.abs().max() > 0 and torch.equal(kept, recomputed), name
    calls.clear()
    with torch.no_grad():
        render(**with_grad(scene))
    assert calls and set(calls) == {"plain"}


def test_gradients_match_finite_differences():
    scene = random_scene(6, 16, 12, seed=6, behind=1)
    fixed = {k: v for k, v in scene.items() if k not in PARAMS}

    def loss(*params):
        return weighted_loss(render(**fixed, **dict(zip(PARAMS, params))))

    assert torch.autograd.gradcheck(loss, tuple(with_grad(scene)[k] for k in PARAMS), eps=1e-6, atol=1e-6)


def test_means2d_grad_marks_drawn_gaussians_and_points_the_right_way():
    scene = random_scene(60, 24, 18, seed=7, behind=6)
    inputs = with_grad(scene)
    out = render(**inputs)
    out.image.sum().backward()
    drawn = out.radii > 0
    assert out.means2d.grad is not None and out.means2d.grad.shape == (60, 2)
    assert (out.means2d.grad[~drawn] == 0).all()
    # Exactly the Gaussians that reach some pixel (non-zero colour gradient) get a 2D-mean gradient;
    # drawn ones may still reach none (hidden behind, or only their faint rim touches the image).
    reaches = inputs["colors"].grad.abs().sum(-1) > 0
    assert reaches.sum() > 30 and not reaches[~drawn].any()
    assert torch.equal(out.means2d.grad.abs().sum(-1) > 0, reaches)

    # One Gaussian; the loss weights pixels by their column: moving the splat right must increase it.
    one = _centred_gaussian(width=21, height=15, cx=10.5, cy=7.5)
    one_in = with_grad(one)
    out = render(**one_in)
    columns = torch.arange(21, dtype=F64)[None, :, None]
    (out.image * columns).sum().backward()
    gx, gy = out.means2d.grad[0]
    assert gx > 0 and abs(gy) < 1e-9 * abs(gx)


def _centred_gaussian(width: int, height: int, cx: float, cy: float, fx: float = 20.0, fy: float = 20.0,
                      opacity: float = 0.7) -> dict:
    """One isotropic Gaussian (σ = 0.05 world units at depth 1) on the optical axis, black background."""
    return dict(
        means=torch.tensor([[0.0, 0.0, 1.0]], dtype=F64), quats=torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
        scales=torch.full((1, 3), 0.05, dtype=F64), opacities=torch.tensor([opacity], dtype=F64),
        colors=torch.tensor([[1.0, 0.5, 0.25]], dtype=F64), world_to_cam=torch.eye(4, dtype=F64),
        K=torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=F64), width=width, height=height,
    )


def test_single_gaussian_peaks_at_principal_point():
    scene = _centred_gaussian(width=23, height=17, cx=14.5, cy=5.5, fx=30.0, fy=15.0)
    out = render(**scene)
    peak = torch.nonzero(out.alpha[..., 0] == out.alpha.max())
    assert peak.tolist() == [[5, 14]]  # row = cy - 0.5, column = cx - 0.5
    assert out.alpha[5, 14, 0].item() == pytest.approx(0.7)  # α = o at the mean
    torch.testing.assert_close(out.means2d, torch.tensor([[14.5, 5.5]], dtype=F64))
    # σ = 1.5 px across and 0.75 px down (fx ≠ fy), dilated by eps2d = 0.3 px²: check the falloff.
    expected_x = 0.7 * math.exp(-0.5 / (1.5**2 + 0.3))
    expected_y = 0.7 * math.exp(-0.5 / (0.75**2 + 0.3))
    assert out.alpha[5, 15, 0].item() == pytest.approx(expected_x, rel=1e-9)
    assert out.alpha[6, 14, 0].item() == pytest.approx(expected_y, rel=1e-9)


def test_stack_composites_by_depth_and_stops_early():
    """Ten opaque splats on the optical axis, given in shuffled order: front to back, the transmittance
    falls 0.2× per splat and the 6th would take it to 0.2⁶ <= 1e-4, so only five count."""
    depths = torch.tensor([3.0, 1.0, 5.0, 2.0, 4.0, 9.0, 7.0, 6.0, 8.0, 10.0], dtype=F64)
    scene = _centred_gaussian(width=9, height=9, cx=4.5, cy=4.5, opacity=0.8)
    scene |= dict(
        means=torch.stack([torch.zeros_like(depths), torch.zeros_like(depths), depths], -1),
        quats=scene["quats"].expand(10, 4), scales=0.05 * depths[:, None].expand(10, 3),
        opacities=torch.full((10,), 0.8, dtype=F64),
        colors=torch.eye(10, 3, dtype=F64).roll(1, 0) + depths[:, None],
        background=torch.tensor([0.1, 0.2, 0.3], dtype=F64),
    )
    out = render(**scene)
    order = torch.argsort(depths)[:5]
    trans = 0.2 ** torch.arange(5, dtype=F64)
    expected = (0.8 * trans[:, None] * scene["colors"][order]).sum(0) + 0.2**5 * scene["background"]
    torch.testing.assert_close(out.image[4, 4], expected, atol=1e-12, rtol=0)
    assert out.alpha[4, 4, 0].item() == pytest.approx(1 - 0.2**5, abs=1e-12)


def test_empty_and_fully_culled_scenes_give_the_background():
    background = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    for scene in (random_scene(0, 16, 12), random_scene(5, 16, 12, behind=5)):
        inputs = with_grad(scene | {"background": background})
        out = render(**inputs)
        assert out.image.shape == (12, 16, 3) and out.radii.shape == (len(scene["means"]),)
        torch.testing.assert_close(out.image, background.expand(12, 16, 3))
        assert (out.alpha == 0).all() and (out.radii == 0).all()
        out.image.sum().backward()  # still differentiable, with zero gradients
        assert all((inputs[k].grad == 0).all() for k in PARAMS)


def test_gaussians_behind_the_camera_change_nothing():
    scene = random_scene(40, 20, 16, seed=8, behind=10)
    front = {k: v[10:] if k in PARAMS else v for k, v in scene.items()}
    torch.testing.assert_close(render(**scene).image, render(**front).image, atol=0, rtol=0)


def test_unknown_backend_and_bad_shapes_raise():
    scene = random_scene(3, 8, 8)
    with pytest.raises(ValueError, match="unknown render backend 'nope'"):
        render(**scene, backend="nope")
    with pytest.raises(ValueError, match="opacities"):
        render(**scene | {"opacities": scene["opacities"][:, None]})
