"""The orthographic camera of the map (``render(..., orthographic=True)``): the C++ projection against the PyTorch
one, the Jacobian against autograd of the parallel projection, and a render that puts a Gaussian where its world
position says, at any height."""

from __future__ import annotations

import pytest
import torch

from momentum_gs.render import render
from momentum_gs.render.kernels import build, ops
from momentum_gs.render.projection import project_gaussians
from tests.helpers.render_scenes import random_scene

BUILD = build.build()  # compiled here on the first run on a machine, loaded from the cache after
F64 = torch.float64
needs_kernels = pytest.mark.skipif(BUILD.ops is None, reason=f"the C++ kernels did not build: {BUILD.note}")


def _scene() -> tuple[list, dict]:
    """(means, quats, scales, world_to_cam, K) of 300 Gaussians, K in pixels per world unit, some behind."""
    scene = random_scene(300, 48, 36, seed=5, behind=15)
    K = scene["K"].clone()
    K[0, 0], K[1, 1] = 9.0, 7.0  # pixels per world unit, not square
    return [scene[n] for n in ("means", "quats", "scales", "world_to_cam")] + [K], {"width": 48, "height": 36}


@needs_kernels
def test_the_cpp_orthographic_projection_is_the_torch_one():
    tensors, size = _scene()
    fast = ops.project(*tensors, **size, orthographic=True)
    reference = project_gaussians(*tensors, **size, orthographic=True)
    for name in ("means2d", "covars2d", "conics", "depths"):
        want = getattr(reference, name)
        torch.testing.assert_close(getattr(fast, name), want, atol=1e-10 * want.abs().max().item(), rtol=1e-10,
                                   msg=name)
    assert torch.equal(fast.radii, reference.radii) and (fast.radii[:15] == 0).all() and (fast.radii > 0).any()
    perspective = ops.project(*tensors, **size)
    assert not torch.allclose(perspective.means2d, fast.means2d)  # the flag changes the camera


def test_the_orthographic_jacobian_is_the_derivative_of_the_projection():
    """Σ₂d = J Σ Jᵀ + eps·I with J the derivative of p ↦ (fx x + cx, fy y + cy) in camera coordinates."""
    tensors, size = _scene()
    means, quats, scales, world_to_cam, K = tensors
    proj = project_gaussians(*tensors, **size, eps2d=0.0, orthographic=True)
    keep = proj.radii > 0
    R = world_to_cam[:3, :3]

    def pixel(p_world):
        p = p_world @ R.T + world_to_cam[:3, 3]
        return p[:2] * K.diagonal()[:2] + K[:2, 2]

    for n in torch.nonzero(keep)[:5, 0].tolist():
        J = torch.autograd.functional.jacobian(pixel, means[n])  # [2, 3], world
        q = quats[n] / quats[n].norm()
        w, x, y, z = q
        Rq = torch.stack([
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])])
        sigma = Rq @ torch.diag(scales[n] ** 2) @ Rq.T  # world coordinates, as J
        torch.testing.assert_close(proj.covars2d[n], J @ sigma @ J.T, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(proj.means2d[n], pixel(means[n]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernels", [pytest.param("cpp", marks=needs_kernels), "torch"])
@pytest.mark.parametrize("height", [2.0, 50.0])
def test_an_orthographic_render_puts_a_gaussian_under_itself_at_any_height(kernels, height, monkeypatch):
    """A camera looking straight down (x east, y south) at 4 pixels per unit: the Gaussian at east 3, north -2
    lands on pixel (3·4 + cx, 2·4 + cy), whatever its distance below the camera, and keeps its size."""
    monkeypatch.setenv(build.KERNELS_VARIABLE, kernels)
    down = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 100.0], [0, 0, 0, 1]], dtype=F64)
    K = torch.tensor([[4.0, 0, 20.0], [0, 4.0, 15.0], [0, 0, 1]], dtype=F64)
    means = torch.tensor([[3.0, -2.0, 100.0 - height]], dtype=F64)
    out = render(means, torch.tensor([[1.0, 0, 0, 0]], dtype=F64), torch.full((1, 3), 0.5, dtype=F64),
                 torch.tensor([0.9], dtype=F64), torch.ones(1, 3, dtype=F64), down, K, 40, 30,
                 orthographic=True, extras=("depth",))
    alpha = out.alpha[..., 0]
    rows, cols = torch.meshgrid(torch.arange(30, dtype=F64) + 0.5, torch.arange(40, dtype=F64) + 0.5, indexing="ij")
    centre = torch.stack([(alpha * cols).sum(), (alpha * rows).sum()]) / alpha.sum()
    torch.testing.assert_close(centre, torch.tensor([32.0, 23.0], dtype=F64), atol=0.05, rtol=0)
    spread = ((alpha * (cols - centre[0]) ** 2).sum() / alpha.sum()).sqrt()
    assert 1.5 < spread < 2.5  # σ 0.5 units = 2 pixels, cut where α < 1/255
    depth = (out.depth[..., 0] / alpha.clamp(min=1e-9))[alpha > 0.5]
    torch.testing.assert_close(depth, torch.full_like(depth, height), rtol=1e-9, atol=1e-9)


def test_an_orthographic_camera_with_gradients_takes_torch():
    tensors, size = _scene()
    means = tensors[0].clone().requires_grad_()
    proj = ops.project(means, *tensors[1:], **size, orthographic=True)
    proj.means2d.sum().backward()
    per_row = (tensors[3][:2, :3] * tensors[4].diagonal()[:2, None]).sum(0)  # d(fx x + fy y)/d(world point)
    torch.testing.assert_close(means.grad, per_row.expand_as(means), rtol=1e-12, atol=1e-12)
