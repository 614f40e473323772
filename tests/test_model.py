"""Anchors, decoder, culling and per-view neural Gaussians on tiny hand-made examples."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from momentum_gs.config import OptimConfig
from momentum_gs.data.camera import Camera
from momentum_gs.model import AnchorSet, Decoder, generate_gaussians, make_appearance, visible_anchors
from momentum_gs.model.decoder import DecodedAnchors
from momentum_gs.model.neural import child_rotations, child_scales, child_shapes, kept_children
from momentum_gs.model.optim import ADAM_EPS, make_anchor_optimizer, make_decoder_optimizer
from momentum_gs.render.kernels import build, ops

pytestmark = pytest.mark.usefixtures("kernel_threads")  # each test at 1, 2 and 3 threads (conftest.py)


def _camera(width=100, height=100, f=100.0) -> Camera:
    """Camera at the origin looking down +z (identity pose), principal point at the image centre."""
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return Camera("test.png", width, height, K, torch.eye(4))


def test_voxelization_dedups_and_snaps():
    points = np.array([[0.1, 0.1, 0.1], [0.2, -0.1, 0.0], [1.1, 0.9, 0.0], [1.0, 1.0, 0.05], [-0.7, 0.0, 0.3]])
    anchors = AnchorSet.from_points(points, voxel_size=0.5, feat_dim=4, n_offsets=2)
    expected = {(0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (-0.5, 0.0, 0.5)}
    assert {tuple(p) for p in anchors.positions.tolist()} == expected
    assert anchors.offsets.shape == (3, 2, 3) and anchors.features.shape == (3, 4)
    assert torch.all(anchors.offsets == 0) and torch.all(anchors.features == 0)
    assert not anchors.positions.requires_grad
    assert {name for name, _ in anchors.named_parameters()} == {"offsets", "features", "scalings"}


def test_initial_scales_are_rms_of_three_nearest():
    # unit square: each corner has neighbours at 1, 1 and sqrt(2) -> RMS sqrt(4/3)
    square = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=float)
    anchors = AnchorSet.from_points(square, voxel_size=1.0, feat_dim=2, n_offsets=3)
    expected = torch.full((4, 6), math.log(math.sqrt(4.0 / 3.0)))
    torch.testing.assert_close(anchors.scalings.detach(), expected)


def test_auto_voxel_size_is_a_length():
    square = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=float)
    assert math.isclose(AnchorSet.from_points(square, 0.0).voxel_size, math.sqrt(4.0 / 3.0), rel_tol=1e-6)
    # scaling the scene by 10 scales the grid by 10 (not by 100, as a length² would)
    assert math.isclose(AnchorSet.from_points(10 * square, -1.0).voxel_size, 10 * math.sqrt(4.0 / 3.0), rel_tol=1e-6)


def test_an_automatic_grid_is_bounded_by_the_photos_pixel_footprint():
    from momentum_gs.config.tree import ModelConfig
    from momentum_gs.data.camera import Camera
    from momentum_gs.model.anchors import photo_footprint

    # a camera 10 above a plane of points 2 apart, looking straight down with a focal of 100 px: a pixel covers 0.1
    down = torch.eye(4)
    down[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
    down[2, 3] = 10.0
    camera = Camera("a.png", 64, 48, torch.tensor([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), down)
    grid = np.stack(np.meshgrid(np.arange(-10, 11, 2.0), np.arange(-10, 11, 2.0), [0.0]), -1).reshape(-1, 3)
    assert math.isclose(photo_footprint([camera], grid), 0.1, rel_tol=1e-9)
    assert photo_footprint([camera], grid + [0, 0, 20.0]) == 0.0  # every point behind the camera
    plain = AnchorSet.from_config(grid, ModelConfig(), cameras=[camera])
    assert math.isclose(plain.voxel_size, 2.0, rel_tol=1e-6)  # the points' spacing
    capped = AnchorSet.from_config(grid, ModelConfig(voxel_max_footprints=6), cameras=[camera])
    assert math.isclose(capped.voxel_size, 0.6, rel_tol=1e-6)  # at most 6 pixels' footprint
    loose = AnchorSet.from_config(grid, ModelConfig(voxel_max_footprints=60), cameras=[camera])
    assert math.isclose(loose.voxel_size, 2.0, rel_tol=1e-6)  # a bound above the spacing changes nothing
    given = AnchorSet.from_config(grid, ModelConfig(voxel_size=1.5, voxel_max_footprints=6), cameras=[camera])
    assert given.voxel_size == 1.5  # a grid the config gives is taken as it is


def test_to_dict_round_trip():
    anchors = AnchorSet.from_points(np.random.default_rng(0).normal(size=(50, 3)), 0.3, feat_dim=4, n_offsets=2)
    with torch.no_grad():
        anchors.offsets.normal_()
        anchors.features.normal_()
    back = AnchorSet.from_dict(anchors.to_dict())
    for name in ("positions", "offsets", "features", "scalings"):
        torch.testing.assert_close(getattr(back, name), getattr(anchors, name))
    assert back.voxel_size == anchors.voxel_size


def test_decoder_shapes_and_ranges():
    torch.manual_seed(0)
    decoder = Decoder(feat_dim=8, n_offsets=5, hidden_dim=16, appearance_dim=4, add_distance=True)
    v = 7
    dirs = torch.nn.functional.normalize(torch.randn(v, 3), dim=-1)
    out = decoder(torch.randn(v, 8) * 5, dirs, torch.rand(v, 1), torch.randn(4))
    assert out.opacity.shape == (v, 5) and out.cov.shape == (v, 5, 7) and out.color.shape == (v, 5, 3)
    assert out.opacity.min() > -1 and out.opacity.max() < 1
    assert out.color.min() > 0 and out.color.max() < 1
    assert decoder.mlp_color[0].in_features == 8 + 3 + 1 + 4 and decoder.mlp_opacity[0].in_features == 8 + 3 + 1
    assert make_appearance(10, 0) is None and make_appearance(10, 4).weight.shape == (10, 4)


def test_culling():
    cam = _camera()
    positions = torch.tensor([
        [0.0, 0.0, 5.0],  # centre of the view
        [0.0, 0.0, -5.0],  # behind the camera
        [0.0, 0.0, 0.1],  # in front but closer than the near plane
        [100.0, 0.0, 5.0],  # far off-screen
        [3.0, 0.0, 5.0],  # projects to u = 110 px, 10 px right of the image, small
        [3.0, 0.0, 5.0],  # same place, but its footprint reaches into the image
        [3.0, 0.0, 5.0],  # same place, reaching 10.6 px at 3.33σ (where α can still be 1/255), 9.5 px at 3σ
    ])
    scales = torch.full((7, 3), 0.01)
    scales[5] = torch.tensor([0.01, 0.5, 0.01])  # the largest of the three counts
    px_per_unit = 100.0 * float(positions[6].norm()) / 5.0**2  # f·‖p‖/z²
    scales[6] = 10.0 / (3.15 * px_per_unit)
    visible = visible_anchors(positions, scales, cam.world_to_cam, cam.K, cam.width, cam.height, near=0.2)
    assert visible.tolist() == [True, False, False, False, False, True, True]


def _two_anchor_model():
    """Two anchors in front of the camera, offsets and scales set by hand, decoder outputs fixed by biases."""
    anchors = AnchorSet(torch.tensor([[0.0, 0.0, 4.0], [0.5, -0.5, 6.0]]), voxel_size=0.1, feat_dim=4, n_offsets=2)
    decoder = Decoder(feat_dim=4, n_offsets=2, hidden_dim=8)
    with torch.no_grad():
        anchors.offsets.copy_(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]))
        anchors.scalings.copy_(torch.tensor([[math.log(0.1)] * 3 + [math.log(0.2)] * 3,
                                             [math.log(0.05), math.log(0.1), math.log(0.2), 0.0, 0.0, 0.0]]))
        for mlp in (decoder.mlp_opacity, decoder.mlp_cov, decoder.mlp_color):
            mlp[2].weight.zero_()  # outputs = activation(bias), independent of the input
        decoder.mlp_opacity[2].bias.copy_(torch.tensor([0.5, -0.5]))  # child 0 kept, child 1 dropped
        decoder.mlp_cov[2].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0,
                                                    1.0, -1.0, 0.0, 1.0, 1.0, 1.0, 1.0]))
        decoder.mlp_color[2].bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0, 2.0, 2.0]))
    return anchors, decoder


def test_generate_gaussians_matches_hand_computation(kernels):
    anchors, decoder = _two_anchor_model()
    neural = generate_gaussians(anchors, decoder, _camera())
    assert ("FusedChildren" in type(neural.means.grad_fn).__name__) == (kernels == "cpp")
    assert neural.visible.tolist() == [True, True]
    assert neural.selection.tolist() == [True, False, True, False] and neural.num == 2
    s = 1 / (1 + math.exp(-1.0))  # sigmoid(1)
    expected_means = torch.tensor([[0.1, 0.0, 4.0],  # a0 + (1,0,0) * 0.1
                                   [0.5, -0.5, 6.2]])  # a1 + (0,0,1) * (0.05, 0.1, 0.2)
    expected_scales = torch.tensor([[0.1, 0.1, 0.1],  # 0.2 * sigmoid(0)
                                    [0.5, 0.5, 0.5]])  # exp(0) * sigmoid(0)
    torch.testing.assert_close(neural.means, expected_means)
    torch.testing.assert_close(neural.scales, expected_scales)
    torch.testing.assert_close(neural.quats, torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2))
    torch.testing.assert_close(neural.opacities, torch.full((2,), math.tanh(0.5)))
    torch.testing.assert_close(neural.colors, torch.tensor([[0.5, s, 1 - s]] * 2))
    assert neural.neural_opacity.shape == (2, 2) and neural.decoded.cov.shape == (2, 2, 7)
    torch.testing.assert_close(neural.child_index(), torch.tensor([0, 2]))
    expected_dir = torch.tensor([0.5, -0.5, 6.0]) / math.sqrt(0.25 + 0.25 + 36.0)
    torch.testing.assert_close(neural.inputs.view_dirs[1], expected_dir)


def test_generate_gaussians_is_differentiable_and_culls(kernels):
    anchors, decoder = _two_anchor_model()
    cam = _camera()
    cam.world_to_cam = torch.eye(4)
    cam.world_to_cam[2, 3] = -5.0  # move the camera to z = 5: anchor 0 (z = 4) is now behind it
    neural = generate_gaussians(anchors, decoder, cam)
    assert neural.visible.tolist() == [False, True]
    (neural.means.sum() + neural.scales.sum() + neural.colors.sum()).backward()
    assert anchors.offsets.grad[0].abs().sum() == 0 and anchors.offsets.grad[1].abs().sum() > 0
    assert decoder.mlp_cov[2].bias.grad.abs().sum() > 0


def _children_case(dtype, n=900, v=600, k=4, seed=0):
    """Random anchors [n] (their positions, offsets and log-scales), the visible ``v`` of them, their decoded
    children (about half kept, one child's quaternion zero and one tiny: F.normalize's eps branch) and random
    weights for the five outputs."""
    g = torch.Generator().manual_seed(seed)
    anchors = SimpleNamespace(positions=torch.randn(n, 3, generator=g, dtype=dtype),
                              offsets=torch.randn(n, k, 3, generator=g, dtype=dtype),
                              scalings=torch.randn(n, 6, generator=g, dtype=dtype) - 2)
    for t in vars(anchors).values():
        t.requires_grad_(True)
    index = torch.randperm(n, generator=g)[:v]
    cov = torch.randn(v, k, 7, generator=g, dtype=dtype)
    cov[0, 0, 3:], cov[1, 0, 3:] = 0.0, 1e-14
    opacity = torch.randn(v, k, generator=g, dtype=dtype)
    opacity[:2, 0] = 0.5  # those two kept
    decoded = DecodedAnchors(opacity, cov, torch.rand(v, k, 3, generator=g, dtype=dtype))
    for t in (decoded.opacity, decoded.cov, decoded.color):
        t.requires_grad_(True)
    kept = (decoded.opacity > 0).reshape(-1).nonzero()[:, 0]
    weights = [torch.randn(len(kept), w, generator=g, dtype=dtype) for w in (3, 4, 3, 1, 3)]
    return anchors, index, decoded, kept, weights


def _children_and_grads(anchors, index, decoded, kept, weights, use_fused):
    """The five outputs and the gradients of Σ weights·outputs w.r.t. the six float inputs."""
    inputs = [anchors.positions, anchors.offsets, anchors.scalings, decoded.opacity, decoded.cov, decoded.color]
    if use_fused:
        outputs = ops.FusedChildren.apply(anchors.positions, anchors.offsets, anchors.scalings, index,
                                            decoded.opacity, decoded.cov, decoded.color, kept)
    else:
        outputs = kept_children(anchors, index, anchors.scalings.index_select(0, index), decoded, kept)
    loss = sum((out.reshape(len(kept), -1) * w).sum() for out, w in zip(outputs, weights))
    return outputs, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_fused_children_match_the_reference(dtype, tol):
    """kernels/csrc/children.cpp gives kept_children's outputs and gradients, at 1, 2 and 3 threads the same bits."""
    if build.build().ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    case = _children_case(dtype)
    expected, expected_grads = _children_and_grads(*case, use_fused=False)
    assert len(case[3]) > 500
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(_children_and_grads(*case, use_fused=True))
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0][0] + runs[0][1], run[0] + run[1]))
    outputs, grads = runs[0]
    for got, want in zip(outputs + grads, expected + expected_grads):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert grads[2].abs().sum() > 0 and grads[4][0, 0, 3:].abs().sum() > 0  # the zero quaternion's g / eps


def test_fused_children_gradcheck():
    if build.build().ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    anchors, index, decoded, kept, _ = _children_case(torch.float64, n=12, v=7, k=3, seed=1)
    with torch.no_grad():
        decoded.cov[:2, 0, 3:] = 1.0  # away from the eps branch, where finite differences do not apply
    inputs = [t.detach().clone().requires_grad_(True) for t in (anchors.positions, anchors.offsets, anchors.scalings,
                                                                 decoded.opacity, decoded.cov, decoded.color)]

    def children(positions, offsets, scalings, opacity, cov, color):
        return ops.FusedChildren.apply(positions, offsets, scalings, index, opacity, cov, color, kept)

    assert torch.autograd.gradcheck(children, inputs)


def test_child_shapes_is_child_scales_and_rotations():
    """One split of cov gives bitwise the values and gradients of the two sliced functions."""
    gen = torch.Generator().manual_seed(0)
    cov_init, scalings_init = torch.randn(5, 3, 7, generator=gen), torch.randn(5, 6, generator=gen)
    weights = torch.randn(5, 3, 7, generator=gen)
    results = []
    for split in (True, False):
        cov, scalings = cov_init.clone().requires_grad_(), scalings_init.clone().requires_grad_()
        if split:
            scales, quats = child_shapes(cov, scalings)
        else:
            scales, quats = child_scales(cov, scalings), child_rotations(cov)
        ((scales * weights[..., :3]).sum() + (quats * weights[..., 3:]).sum()).backward()
        results.append((scales, quats, cov.grad, scalings.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    torch.testing.assert_close(results[1][0], torch.exp(scalings_init[:, None, 3:6]) * torch.sigmoid(cov_init[..., :3]))


def _optimizer_pair(make):
    """(our optimizer, per-tensor torch Adam with the same groups, lr and eps) on float64 twins of the parameters."""
    ours = make()
    groups = [{"params": [p.detach().clone().requires_grad_() for p in group["params"]], "lr": group["lr"]}
              for group in ours.param_groups]
    return ours, torch.optim.Adam(groups, lr=0.0, eps=ADAM_EPS, foreach=False)


def test_optimizers_are_fused_adam_with_the_per_tensor_update():
    """Anchor and decoder optimizers: fused on the CPU, and the same parameters as torch's per-tensor Adam after
    a few steps (float64, so only rounding can differ)."""
    cfg = OptimConfig()
    torch.manual_seed(0)
    anchors = SimpleNamespace(offsets=nn.Parameter(torch.randn(6, 2, 3, dtype=torch.float64)),
                              features=nn.Parameter(torch.randn(6, 4, dtype=torch.float64)),
                              scalings=nn.Parameter(torch.randn(6, 6, dtype=torch.float64)))
    decoder = Decoder(feat_dim=4, n_offsets=2, hidden_dim=8).double()
    for make in (lambda: make_anchor_optimizer(anchors, cfg, extent=3.0),
                 lambda: make_decoder_optimizer(decoder, None, cfg)):
        ours, plain = _optimizer_pair(make)
        assert all(group["fused"] for group in ours.param_groups)
        ours_params = [p for group in ours.param_groups for p in group["params"]]
        plain_params = [p for group in plain.param_groups for p in group["params"]]
        for step in range(5):
            for p, q in zip(ours_params, plain_params):
                p.grad = torch.randn_like(p) * 10.0 ** (step - 3)
                q.grad = p.grad.clone()
            ours.step()
            plain.step()
        for p, q in zip(ours_params, plain_params):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-13, atol=1e-15)
