"""Depth and normal maps (``render(extras=...)``): hand-checked splats, the dense reference, finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from momentum_gs.render import render, render_dense
from tests.helpers.render_scenes import (PARAMS, assert_gradients_match_dense, crowded_scene, random_scene,
                                         weighted_loss, with_grad)
from tests.helpers.tiny_training import train_tiny

F64 = torch.float64
EXTRAS = ("depth", "normal")
SURFACE_PARAMS = ("means", "quats", "scales", "opacities")  # what the depth and normal maps depend on


# Scenes the maps are compared on against the dense reference: random, small tiles, many overlapping splats.
DENSE_SCENES = [
    pytest.param(lambda: random_scene(150, 37, 29, seed=0, behind=5, opaque=4), id="random"),
    pytest.param(lambda: random_scene(80, 21, 18, seed=2) | {"tile_size": 4}, id="small-tiles"),
    pytest.param(crowded_scene, id="crowded"),
]


def _one_splat(mean, quat, scales, width: int = 15, height: int = 11, f: float = 20.0) -> dict:
    """``render`` arguments for one nearly opaque Gaussian seen by a camera at the world origin."""
    return dict(
        means=torch.tensor([mean], dtype=F64), quats=torch.tensor([quat], dtype=F64),
        scales=torch.tensor([scales], dtype=F64), opacities=torch.tensor([0.95], dtype=F64),
        colors=torch.tensor([[1.0, 0.5, 0.25]], dtype=F64), world_to_cam=torch.eye(4, dtype=F64),
        K=torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=F64), width=width, height=height,
    )


def _at_mean(out) -> tuple[float, torch.Tensor]:
    """depth / alpha and normal / alpha at the pixel under the (single) Gaussian's mean."""
    col, row = out.means2d[0].detach().floor().long().tolist()
    alpha = out.alpha[row, col, 0]
    assert alpha > 0.5
    return (out.depth[row, col, 0] / alpha).item(), out.normal[row, col] / alpha


def _turn(axis: tuple[float, float, float], angle: float) -> list[float]:
    """(w, x, y, z) quaternion of a rotation by ``angle`` radians about the unit ``axis``."""
    s = math.sin(angle / 2)
    return [math.cos(angle / 2), axis[0] * s, axis[1] * s, axis[2] * s]


@pytest.mark.parametrize("quat, scales", [
    ([1.0, 0, 0, 0], [0.3, 0.3, 0.001]),  # flat in the image plane, its normal +z (away from the camera)
    (_turn((1, 0, 0), math.pi), [0.3, 0.3, 0.001]),  # turned over: normal -z already
    (_turn((0, 1, 0), math.pi / 2), [0.001, 0.3, 0.3]),  # thinnest axis x, turned onto z
    ([-2.0, 0, 0, 0], [0.3, 0.3, 0.001]),  # an unnormalised quaternion of the identity
])
def test_flat_splat_facing_the_camera(quat, scales):
    scene = _one_splat([0.0, 0.0, 2.5], quat, scales)
    out = render(**scene, extras=EXTRAS)
    assert out.depth.shape == (11, 15, 1) and out.normal.shape == (11, 15, 3)
    depth, normal = _at_mean(out)
    assert depth == pytest.approx(2.5, rel=1e-12)
    torch.testing.assert_close(normal, torch.tensor([0.0, 0.0, -1.0], dtype=F64), atol=1e-12, rtol=0)
    assert out.normalised_depth()[5, 7, 0].item() == pytest.approx(2.5, rel=1e-12)
    assert (out.depth >= 0).all() and (out.normal[..., 2] <= 0).all()


def test_tilted_and_off_axis_splats():
    """The normal is the thinnest axis in camera coordinates; facing is judged along the ray to the mean,
    not the optical axis: here the normal and the ray make an acute angle though the normal's z is < 0."""
    tilt = math.radians(30)
    out = render(**_one_splat([0.0, 0.0, 2.0], _turn((1, 0, 0), tilt), [0.2, 0.2, 0.002]), extras=EXTRAS)
    expected = torch.tensor([0, math.sin(tilt), -math.cos(tilt)], dtype=F64)  # R_x(30°)·z, flipped
    torch.testing.assert_close(_at_mean(out)[1], expected, atol=1e-12, rtol=0)
    # thinnest axis x turned by 120° about y: (cos 120°, 0, -sin 120°) ≈ (-0.5, 0, -0.87), seen along the
    # ray to (-1, 0, 0.5): an acute angle (checked below), so it is flipped although its z is < 0
    turn = math.radians(120)
    mean = [-1.0, 0.0, 0.5]
    scene = _one_splat(mean, _turn((0, 1, 0), turn), [0.001, 0.05, 0.05], width=41, f=10.0)
    scene["K"][0, 2] = 30.0
    axis = torch.tensor([math.cos(turn), 0.0, -math.sin(turn)], dtype=F64)
    assert axis @ torch.tensor(mean, dtype=F64) > 0 and axis[2] < 0
    depth, normal = _at_mean(render(**scene, extras=EXTRAS))
    assert depth == pytest.approx(0.5, rel=1e-12)
    torch.testing.assert_close(normal, -axis, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scene", DENSE_SCENES)
def test_maps_match_dense_reference(scene):
    scene = scene()
    tiled = render(**scene, extras=EXTRAS)
    dense = render_dense(**scene, extras=EXTRAS)
    assert tiled.depth.abs().max() > 1 and (tiled.normal.norm(dim=-1) > 0.5).sum() > 50
    torch.testing.assert_close(tiled.depth, dense.depth, atol=1e-10, rtol=0)
    torch.testing.assert_close(tiled.normal, dense.normal, atol=1e-10, rtol=0)
    # each map alone, in either order, is the same map
    only = {name: getattr(render(**scene, extras=(name,)), name) for name in EXTRAS}
    swapped = render(**scene, extras=EXTRAS[::-1])
    for name in EXTRAS:
        torch.testing.assert_close(only[name], getattr(tiled, name), atol=1e-12, rtol=0)
        torch.testing.assert_close(getattr(swapped, name), getattr(tiled, name), atol=1e-12, rtol=0)


def _maps_loss(out, seed: int = 2) -> torch.Tensor:
    """Σ w·depth + Σ w'·normal with random per-pixel weights."""
    gen = torch.Generator().manual_seed(seed)
    w_depth = torch.randn(out.depth.shape, generator=gen, dtype=out.depth.dtype)
    w_normal = torch.randn(out.normal.shape, generator=gen, dtype=out.normal.dtype)
    return (out.depth * w_depth).sum() + (out.normal * w_normal).sum()


def test_map_gradients_match_finite_differences():
    scene = random_scene(6, 16, 12, seed=6, behind=1)
    fixed = {k: v for k, v in scene.items() if k not in SURFACE_PARAMS}

    def loss(*params):
        return _maps_loss(render(**fixed, **dict(zip(SURFACE_PARAMS, params)), extras=EXTRAS))

    inputs = tuple(with_grad(scene)[k] for k in SURFACE_PARAMS)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("crowded", [False, True])
def test_map_gradients_match_dense_reference(crowded):
    scene = crowded_scene() if crowded else random_scene(120, 30, 22, seed=5, behind=4, opaque=6)
    grads = assert_gradients_match_dense(scene, _maps_loss, SURFACE_PARAMS, extras=EXTRAS)
    assert (grads["colors"] == 0).all()  # the maps do not depend on the colours


def test_default_render_is_unchanged(monkeypatch):
    """Without extras the compositor sees only the colours and the output has no maps; with them, the
    image, alpha and gradients of an image loss are those of the plain render."""
    from momentum_gs.render import builtin

    widths = []
    composite = builtin.composite_gaussians  # the C++ compositor or the torch one, whichever renders use

    def recorded(means2d, conics, opacities, colors, *rest):
        widths.append(colors.shape[-1])
        return composite(means2d, conics, opacities, colors, *rest)

    monkeypatch.setattr(builtin, "composite_gaussians", recorded)
    scene = random_scene(150, 33, 27, seed=3, behind=4, opaque=6)
    outs, grads = [], []
    for extras in ((), EXTRAS):
        inputs = with_grad(scene)
        out = render(**inputs, extras=extras)
        weighted_loss(out).backward()
        outs.append(out)
        grads.append([inputs[k].grad for k in PARAMS] + [out.means2d.grad])
    assert widths == [3, 3 + 1 + 3]
    plain, extended = outs
    assert plain.depth is None and plain.normal is None
    torch.testing.assert_close(extended.image, plain.image, atol=1e-14, rtol=0)
    torch.testing.assert_close(extended.alpha, plain.alpha, atol=1e-14, rtol=0)
    assert torch.equal(extended.radii, plain.radii) and torch.equal(extended.means2d, plain.means2d)
    for name, with_maps, without in zip(PARAMS + ("means2d",), *grads):
        torch.testing.assert_close(with_maps, without, atol=1e-12, rtol=1e-10, msg=name)


@pytest.mark.parametrize("front_opacity, expected", [(0.4, 3.0), (0.6, 2.0), (0.0, 3.0)])
def test_median_depth_is_where_transmittance_crosses_a_half(front_opacity, expected):
    """Two splats on the optical axis: a front one at z = 2 over an opaque one at z = 3. With α = 0.4 in
    front T is still 0.6 behind it, so the median is the back splat; with 0.6 it is 0.4 and the front one
    is the median; a front splat below 1/255 is not drawn at all."""
    scene = _one_splat([0.0, 0.0, 3.0], [1.0, 0, 0, 0], [0.5, 0.5, 0.01])
    front = _one_splat([0.0, 0.0, 2.0], [1.0, 0, 0, 0], [0.5, 0.5, 0.01])
    scene.update({k: torch.cat([front[k], scene[k]]) for k in ("means", "quats", "scales", "opacities", "colors")})
    scene["opacities"][0] = front_opacity
    out = render(**scene, extras=("median_depth",))
    assert out.median_depth.shape == (11, 15, 1) and out.depth is None
    assert out.median_depth[5, 7, 0].item() == expected
    torch.testing.assert_close(out.median_depth, render_dense(**scene, extras=("median_depth",)).median_depth,
                               atol=0, rtol=0)
    empty = render(**scene | {"means": scene["means"] + torch.tensor([0.0, 0.0, -10.0], dtype=F64)},
                   extras=("median_depth",))
    assert (empty.median_depth == 0).all()  # nothing drawn (all behind the camera): 0


@pytest.mark.parametrize("scene", DENSE_SCENES)
def test_median_depth_matches_dense_reference_and_its_gradient(scene):
    scene = scene()
    extras = ("median_depth", "depth")
    tiled, dense = render(**scene, extras=extras), render_dense(**scene, extras=extras)
    drawn = tiled.median_depth > 0
    assert drawn.sum() > 50 and (tiled.median_depth[drawn] != tiled.normalised_depth()[drawn]).any()
    torch.testing.assert_close(tiled.median_depth, dense.median_depth, atol=1e-12, rtol=0)
    torch.testing.assert_close(tiled.depth, dense.depth, atol=1e-10, rtol=0)  # unchanged beside it

    def loss(out):
        gen = torch.Generator().manual_seed(4)
        return weighted_loss(out) + (out.median_depth * torch.randn(out.median_depth.shape, generator=gen,
                                                                    dtype=F64)).sum()

    assert_gradients_match_dense(scene, loss, extras=extras)


def test_median_depth_gradient_matches_finite_differences():
    scene = random_scene(6, 16, 12, seed=6, behind=1)
    fixed = {k: v for k, v in scene.items() if k != "means"}
    weights = torch.randn(12, 16, 1, generator=torch.Generator().manual_seed(1), dtype=F64)

    def loss(means):
        return (render(**fixed, means=means, extras=("median_depth",)).median_depth * weights).sum()

    means = scene["means"].clone().requires_grad_()
    loss(means).backward()
    assert means.grad[:, 2].abs().max() > 0
    assert torch.autograd.gradcheck(loss, (scene["means"].clone().requires_grad_(),), eps=1e-6, atol=1e-6)


def test_bad_extras_raise_and_normalised_depth_needs_depth():
    scene = random_scene(3, 8, 8)
    with pytest.raises(ValueError, match="unknown render extra 'median'"):
        render(**scene, extras=("depth", "median"))
    assert render(**scene, extras="depth").normal is None  # one name, not its letters
    with pytest.raises(ValueError, match="normalised_depth"):
        render(**scene).normalised_depth()


@pytest.mark.slow
def test_a_trained_model_renders_its_depth_and_normals(tiny_scene, tmp_path):
    """One level up: ``GaussianScene.render(..., extras=...)`` gives the same image, a depth inside the range
    of the Gaussians it drew, and normals that face the camera."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.trained import load_run

    run = train_tiny(tiny_scene, tmp_path / "run", ("optim.steps=6",))
    cfg, model, _ = load_run(run, torch.device("cpu"))
    camera = load_scene(cfg.data).train[0]
    with torch.no_grad():
        plain = model.render(camera, cfg.render).output
        view = model.render(camera, cfg.render, extras=EXTRAS)
    out = view.output
    torch.testing.assert_close(out.image, plain.image)
    covered = out.alpha[..., 0] > 0.5
    assert covered.float().mean() > 0.5
    z = out.normalised_depth()[..., 0][covered]
    drawn = out.depths[out.radii > 0]
    assert drawn.min() - 1e-4 <= z.min() and z.max() <= drawn.max() + 1e-4
    normals = out.normal[covered] / out.alpha[covered]
    assert (normals.norm(dim=-1) <= 1 + 1e-5).all()
    # a normal faces the camera along its own ray; over a nadir-ish view, almost all point back up the z axis
    assert (normals[:, 2] < 0).float().mean() > 0.9
    # mgs eval scores the rendered depth against the synthetic city's ray-cast depth of the held-out views
    from momentum_gs.eval.evaluate import evaluate_run

    results = evaluate_run(run, save_images=False, maps=True)
    assert 0 < results["depth_abs_error"] and 0 < results["depth_rel_error"] < 1, results
    # --maps: one picture per held-out view, depth beside normals, covering what the render covers
    import cv2

    pictures = sorted((run / "eval" / "maps").glob("*.png"))
    assert len(pictures) == results["num_test_views"]
    picture = cv2.imread(str(pictures[0]))
    assert picture.shape == (camera.height, 2 * camera.width, 3)
    depth_half = picture[:, : camera.width].reshape(-1, 3).astype(float)
    assert depth_half.std(axis=0).max() > 20  # near and far are told apart, not one colour


def test_depth_errors_compare_the_normalised_depth_with_the_ground_truth_where_both_exist(tmp_path):
    import numpy as np

    from momentum_gs.eval.evaluate import depth_errors
    from momentum_gs.render import RenderOutput

    alpha = torch.tensor([[1.0, 0.5], [0.8, 0.2]])[..., None]
    depth = alpha * torch.tensor([[2.0, 9.0], [4.0, 9.0]])[..., None]  # normalised: 2, 9, 4, 9
    out = RenderOutput(torch.zeros(2, 2, 3), alpha, torch.zeros(0), torch.zeros(0, 2), torch.zeros(0), depth=depth)
    truth = np.array([[2.5, 1.0], [np.nan, 1.0]], dtype=np.float32)  # only pixel (0, 0) counts
    np.save(tmp_path / "v.npy", truth, allow_pickle=False)
    errors = depth_errors(out, tmp_path / "v.npy")
    assert errors == pytest.approx({"depth_abs_error": 0.5, "depth_rel_error": 0.2})
    assert depth_errors(out, tmp_path / "missing.npy") == {}
    # a map of another size is resized to the render's
    np.save(tmp_path / "big.npy", np.full((4, 4), 3.0, dtype=np.float32), allow_pickle=False)
    assert depth_errors(out, tmp_path / "big.npy")["depth_abs_error"] == pytest.approx((1.0 + 1.0) / 2)
