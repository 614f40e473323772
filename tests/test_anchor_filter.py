"""The paper's anchor pre-filter ("reference") against a brute-force float64 twin and against the "bound"
rule, and float32 voxelisation against the reference's numpy expression."""

import math

import numpy as np
import pytest
import torch

from momentum_gs.config import RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.model import AnchorSet, Decoder, generate_gaussians, reference_visible_anchors, visible_anchors, voxelize
from momentum_gs.model.gaussian_scene import decode_parts
from momentum_gs.model.neural import fused_reference_visible_anchors
from momentum_gs.render.kernels import build

pytestmark = pytest.mark.usefixtures("kernel_threads")  # each test at 1, 2 and 3 threads (conftest.py)

FILTERS = {"torch": reference_visible_anchors, "fused": fused_reference_visible_anchors}


def _rotation(angles: tuple[float, float, float]) -> np.ndarray:
    """[3, 3] R = Rz Ry Rx for angles in radians."""
    (ca, cb, cc), (sa, sb, sc) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _camera(width, height, fx, fy, cx, cy, angles=(0.0, 0.0, 0.0), translation=(0.0, 0.0, 0.0)) -> Camera:
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    world_to_cam = torch.eye(4, dtype=torch.float64)
    world_to_cam[:3, :3] = torch.from_numpy(_rotation(angles))
    world_to_cam[:3, 3] = torch.tensor(translation, dtype=torch.float64)
    return Camera("v.png", width, height, K, world_to_cam.float())


def _off_axis_camera(width=100, height=75) -> Camera:
    """A rotated, translated camera with fx != fy and a principal point off the image centre."""
    return _camera(width, height, 90.0, 110.0, 0.47 * width, 0.53 * height, (0.3, -0.5, 0.8), (1.0, -2.0, 0.5))


def _brute_force(position, scale, camera: Camera, near=0.2) -> tuple[bool, int]:
    """(visible, radius in px) of one anchor by the reference rule, in float64 scalars, one anchor at a time."""
    world_to_cam, K = camera.world_to_cam.double().numpy(), camera.K.double().numpy()
    W = world_to_cam[:3, :3]
    t = W @ position + world_to_cam[:3, 3]
    if not t[2] > near:
        return False, 0
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x, lim_y = 1.3 * camera.width / (2 * fx), 1.3 * camera.height / (2 * fy)
    tx = min(lim_x, max(-lim_x, t[0] / t[2])) * t[2]
    ty = min(lim_y, max(-lim_y, t[1] / t[2])) * t[2]
    J = np.array([[fx / t[2], 0.0, -fx * tx / t[2] ** 2], [0.0, fy / t[2], -fy * ty / t[2] ** 2]])
    cov = J @ W @ np.diag(np.asarray(scale) ** 2) @ W.T @ J.T
    a, b, c = cov[0, 0] + 0.3, cov[0, 1], cov[1, 1] + 0.3
    det = a * c - b * b
    if det == 0:
        return False, 0
    mid = 0.5 * (a + c)
    radius = math.ceil(3.0 * math.sqrt(mid + math.sqrt(max(0.1, mid * mid - det))))
    centre = (fx * t[0] / t[2] + cx - 0.5, fy * t[1] / t[2] + cy - 0.5)
    grid = ((camera.width + 15) // 16, (camera.height + 15) // 16)
    lo = [min(g, max(0, int((p - radius) / 16))) for p, g in zip(centre, grid)]  # int(): toward zero
    hi = [min(g, max(0, int((p + radius + 15) / 16))) for p, g in zip(centre, grid)]
    return (hi[0] - lo[0]) * (hi[1] - lo[1]) != 0 and radius > 0, radius


def _random_anchors(camera: Camera, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 3] world positions and [n, 3] scales: tiny to huge, some behind the camera or closer than the near
    plane, some far off-screen, a third centred within 5 px of the image border."""
    rng = np.random.default_rng(seed)
    K = camera.K.double().numpy()
    w, h = camera.width, camera.height
    z = np.concatenate([rng.uniform(-3.0, 0.3, n // 10), rng.uniform(0.3, 30.0, n - n // 10)])
    u, v = rng.uniform(-w, 2 * w, n), rng.uniform(-h, 2 * h, n)
    far = rng.random(n) < 0.1
    u[far], v[far] = rng.uniform(-10 * w, 10 * w, far.sum()), rng.uniform(-10 * h, 10 * h, far.sum())
    border = rng.random(n) < 0.35
    edge = rng.integers(0, 4, n)
    for side, (coord, size, other, other_size) in enumerate([(u, w, v, h), (v, h, u, w)] * 2):
        pick = border & (edge == side)
        coord[pick] = (side // 2) * size + rng.uniform(-5.0, 5.0, pick.sum())
        other[pick] = rng.uniform(-5.0, other_size + 5.0, pick.sum())
    p_cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    world_to_cam = camera.world_to_cam.double().numpy()
    positions = (p_cam - world_to_cam[:3, 3]) @ world_to_cam[:3, :3]  # R^T (p_cam - T), row-wise
    scales = 10.0 ** rng.uniform(-4.0, 1.5, (n, 1)) * np.exp(rng.uniform(-1.0, 1.0, (n, 3)))
    return positions, scales


def _reference(positions, scales, camera: Camera, dtype=torch.float32, rule=reference_visible_anchors) -> np.ndarray:
    return rule(torch.as_tensor(positions, dtype=dtype), torch.as_tensor(scales, dtype=dtype),
                camera.world_to_cam, camera.K, camera.width, camera.height).numpy()


@pytest.mark.parametrize("implementation", list(FILTERS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_filter_matches_brute_force(dtype, implementation):
    if implementation == "fused" and build.build().ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    camera = _off_axis_camera()
    positions, scales = _random_anchors(camera, 2000, seed=1)
    if dtype == torch.float32:  # the float64 twin sees exactly the float32 inputs
        positions, scales = positions.astype(np.float32).astype(np.float64), scales.astype(np.float32).astype(np.float64)
    expected = np.array([_brute_force(p, s, camera)[0] for p, s in zip(positions, scales)])
    assert 0.2 < expected.mean() < 0.8  # a mix of kept and dropped anchors
    ours = _reference(positions, scales, camera, dtype, FILTERS[implementation])
    assert ours.dtype == bool and ours.shape == (2000,)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_reference_filter_equals_torch(dtype, monkeypatch):
    """The C++ filter against the PyTorch one on 60 000 anchors over three cameras, and anchor_mask's switch."""
    if build.build().ops is None:
        pytest.skip(f"the C++ kernels did not build: {build.build().note}")
    cameras = [_off_axis_camera(), _camera(64, 48, 70.0, 60.0, 30.0, 25.0, (0.1, 0.2, -0.3)), _off_axis_camera(33, 17)]
    for seed, camera in enumerate(cameras):
        positions, scales = _random_anchors(camera, 20_000, seed=10 + seed)
        torch_mask, fused_mask = (_reference(positions, scales, camera, dtype, rule) for rule in FILTERS.values())
        assert 0.1 < torch_mask.mean() < 0.9
        np.testing.assert_array_equal(fused_mask, torch_mask)
    from momentum_gs.model import neural

    calls = []
    monkeypatch.setattr(neural, "fused_reference_visible_anchors",
                        lambda *a, **k: calls.append("fused") or fused_reference_visible_anchors(*a, **k))
    anchors = AnchorSet.from_points(torch.as_tensor(positions[:500], dtype=torch.float32), voxel_size=0.5)
    for mode, expected in (("cpp", ["fused"]), ("torch", [])):
        calls.clear()
        monkeypatch.setenv(build.KERNELS_VARIABLE, mode)
        neural.anchor_mask(anchors, cameras[-1])
        assert calls == expected, mode


def test_reference_filter_hand_cases():
    camera = _camera(100, 100, 100.0, 100.0, 50.0, 50.0)
    positions = np.array([
        [0.0, 0.0, 0.19],  # just closer than the near plane
        [0.0, 0.0, 0.21],  # just beyond it
        [-3.5, 0.0, 5.0],  # centre 20 px left of the image (u = -20)
        [-3.5, 0.0, 5.0],  # same place, huge
    ])
    scales = np.array([[0.01] * 3, [0.01] * 3, [0.025] * 3, [1.0] * 3])
    assert _brute_force(positions[2], scales[2], camera)[1] == 3
    assert _brute_force(positions[3], scales[3], camera)[1] > 20
    assert _reference(positions, scales, camera).tolist() == [False, True, False, True]


def test_bound_is_a_superset_but_for_tiny_anchors_at_the_border():
    camera = _off_axis_camera(width=128, height=96)  # whole tiles: the reference's grid ends at the image edge
    positions, scales = _random_anchors(camera, 4000, seed=2)
    reference = _reference(positions, scales, camera)
    bound = visible_anchors(torch.as_tensor(positions, dtype=torch.float32), torch.as_tensor(scales, dtype=torch.float32),
                            camera.world_to_cam, camera.K, camera.width, camera.height).numpy()
    only_reference = np.flatnonzero(reference & ~bound)
    assert len(only_reference) <= 0.1 * reference.sum()  # though a third of the sample hugs the border
    assert (bound & ~reference).sum() > 0.05 * reference.sum()  # the reference decodes fewer off-screen anchors
    for i in only_reference:
        t = camera.world_to_cam.double().numpy() @ np.append(positions[i], 1.0)
        K = camera.K.double().numpy()
        u, v = K[0, 0] * t[0] / t[2] + K[0, 2], K[1, 1] * t[1] / t[2] + K[1, 2]
        outside = max(-u, u - camera.width, -v, v - camera.height)
        assert 0.0 <= outside <= 4.0, (i, u, v)
        assert _brute_force(positions[i], scales[i], camera)[1] == 3  # the least radius: ceil(3 sqrt(0.3 + sqrt(0.1)))


def _off_screen_model() -> tuple[AnchorSet, Decoder]:
    """One small anchor in the middle of the view and a huge one 150 px right of it, at z = 5."""
    positions = torch.tensor([[0.0, 0.0, 5.0], [10.0, 0.0, 5.0]])
    scalings = torch.log(torch.tensor([[0.05] * 6, [1.5] * 6]))
    return AnchorSet(positions, 0.1, feat_dim=4, n_offsets=2, scalings=scalings), Decoder(4, 2, hidden_dim=8)


def test_generate_gaussians_follows_the_anchor_filter():
    anchors, decoder = _off_screen_model()
    camera = _camera(100, 100, 100.0, 100.0, 50.0, 50.0)
    counts = {rule: generate_gaussians(anchors, decoder, camera, anchor_filter=rule).anchor_index.shape[0]
              for rule in ("reference", "bound")}
    assert counts == {"reference": 1, "bound": 2}
    assert generate_gaussians(anchors, decoder, camera).visible.tolist() == [True, False]  # the default
    for rule, count in counts.items():
        [decoded] = decode_parts([(anchors, decoder)], camera, RenderConfig(anchor_filter=rule))
        assert decoded.anchor_index.shape[0] == count
    with pytest.raises(ValueError, match="anchor_filter"):
        generate_gaussians(anchors, decoder, camera, anchor_filter="circle")


def _cells(positions: np.ndarray, voxel_size: float) -> np.ndarray:
    """The integer cells of voxelised positions (exact: positions are within float32 precision of cells)."""
    return np.round(np.asarray(positions, dtype=np.float64) / voxel_size).astype(np.int64)


def test_voxelize_reproduces_the_float32_reference():
    points = np.random.default_rng(3).uniform(-100.0, 100.0, (20000, 3)).astype(np.float32)
    ours = voxelize(points, 1e-4)
    reference = np.unique(np.round(points / 1e-4), axis=0) * 1e-4  # float32 throughout, as the reference
    assert ours.dtype == np.float32 == reference.dtype
    np.testing.assert_array_equal(ours, reference)
    in_float64 = np.unique(np.round(points.astype(np.float64) / 1e-4), axis=0)
    assert not np.array_equal(_cells(ours, 1e-4), in_float64)
    anchors = AnchorSet.from_points(points.astype(np.float64), 1e-4, feat_dim=2, n_offsets=1)
    np.testing.assert_array_equal(anchors.positions.numpy(), reference)


def test_voxelize_at_small_coordinates_agrees_with_float64():
    points = np.random.default_rng(4).uniform(-1.0, 1.0, (1000, 3))
    ours = voxelize(points, 0.01)
    np.testing.assert_array_equal(_cells(ours, 0.01), np.unique(np.round(points / 0.01), axis=0))
    np.testing.assert_array_equal(ours, np.unique(np.round(points.astype(np.float32) / 0.01), axis=0) * 0.01)
