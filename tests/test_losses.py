"""SSIM, PSNR, L1 and the reconstruction loss."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from momentum_gs.config import OptimConfig
from momentum_gs.losses import gaussian_window, l1, psnr, reconstruction_loss, scale_regularizer, ssim

pytestmark = pytest.mark.usefixtures("kernel_threads")  # each test at 1, 2 and 3 threads (conftest.py)


def _image(seed=0, h=24, w=32):
    """A smooth random image in [0, 1], [h, w, 3]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")[0].permute(1, 2, 0)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written directly from the formula with a 2-D window and scipy's zero-padded correlation."""
    w1 = gaussian_window(dtype=torch.float64).numpy()
    window = np.outer(w1, w1)
    blur = lambda x: np.stack([ndimage.correlate(x[..., c], window, mode="constant") for c in range(3)], -1)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_ssim_identity_noise_symmetry():
    x = _image()
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    very_noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(x, noisy) < 0.95
    assert ssim(x, very_noisy) < ssim(x, noisy)
    assert ssim(x, noisy).item() == pytest.approx(ssim(noisy, x).item(), abs=1e-7)


def test_ssim_matches_direct_formula():
    a, b = _image(3), _image(4)
    expected = _reference_ssim(a.double().numpy(), b.double().numpy())
    assert ssim(a.double(), b.double()).item() == pytest.approx(expected, abs=1e-10)
    assert gaussian_window().sum().item() == pytest.approx(1.0)


def test_ssim_batch_and_gradient():
    a = _image(5).requires_grad_(True)
    b = _image(6)
    ssim(a, b).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    batch = torch.stack([_image(5), _image(5)])
    assert ssim(batch, batch).item() == pytest.approx(1.0, abs=1e-6)


def _dense_reference_ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM from the formula with the full size×size window as one zero-padded 2-D convolution, differentiable."""
    offsets = torch.arange(size, dtype=a.dtype) - size // 2
    g = torch.exp(-offsets**2 / (2 * sigma**2))
    window = torch.outer(g, g) / g.sum() ** 2
    x, y = (t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2) for t in (a, b))
    blur = lambda t: torch.nn.functional.conv2d(t, window.expand(3, 1, size, size), padding=size // 2, groups=3)
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))).mean()


# (70, 9, 3): five bands of rows (csrc/ssim.cpp), split over the threads; (2, 9, 6, 3): a batch
@pytest.mark.parametrize("shape", [(24, 32, 3), (7, 5, 3), (1, 1, 3), (13, 4, 3), (70, 9, 3), (2, 9, 6, 3)])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_ssim_value_and_gradients_match_dense_window(shape, dtype, rtol, kernels):
    g = torch.Generator().manual_seed(sum(shape))
    a64 = torch.rand(shape, generator=g, dtype=torch.float64)
    b64 = (a64 + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    a64.requires_grad_(True), b64.requires_grad_(True)
    expected = _dense_reference_ssim(a64, b64)
    expected_grads = torch.autograd.grad(expected, (a64, b64))
    a, b = (t.detach().to(dtype).requires_grad_(True) for t in (a64, b64))
    value = ssim(a, b)
    grads = torch.autograd.grad(value, (a, b))
    assert value.dtype == dtype and value.item() == pytest.approx(expected.item(), rel=rtol)
    for grad, expected_grad in zip(grads, expected_grads):
        assert grad.shape == expected_grad.shape
        torch.testing.assert_close(grad.double(), expected_grad, rtol=0, atol=rtol * expected_grad.abs().max().item())


@pytest.mark.parametrize("grad_a, grad_b", [(True, True), (True, False), (False, True)])
def test_ssim_gradcheck(grad_a, grad_b, kernels):
    g = torch.Generator().manual_seed(9)
    a = torch.rand(6, 5, 3, generator=g, dtype=torch.float64).requires_grad_(grad_a)
    b = torch.rand(6, 5, 3, generator=g, dtype=torch.float64).requires_grad_(grad_b)
    assert torch.autograd.gradcheck(ssim, (a, b))
    batch = torch.rand(2, 3, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 12, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ssim(t, target), (batch,))


def test_fused_ssim_gives_the_same_bits_at_any_thread_count(kernels):
    """The C++ SSIM's sum is taken per fixed band of rows, whichever threads take them: its value and gradients
    are the same bits at 1, 2 and 3 threads (every grain at its smallest here, conftest.py)."""
    g = torch.Generator().manual_seed(4)
    a, b = (torch.rand(2, 83, 21, 3, generator=g).requires_grad_(True) for _ in range(2))
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            value = ssim(a, b)
            runs.append([value.detach(), *torch.autograd.grad(value, (a, b))])
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(runs[0], run))


def test_ssim_without_grad_and_repeated_calls_agree(kernels):
    a, b = _image(10), _image(11)
    first = ssim(a, b)
    with torch.no_grad():
        assert ssim(a, b).item() == first.item()
    assert ssim(a.double(), b.double()).item() == pytest.approx(first.item(), abs=1e-6)
    assert ssim(a, b, sigma=3.0).item() != pytest.approx(first.item(), abs=1e-4)
    assert ssim(a, b, window_size=7).item() != pytest.approx(first.item(), abs=1e-4)


def test_psnr_of_known_mse():
    a = torch.zeros(8, 8, 3)
    assert psnr(a, a + 0.1).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert psnr(a, a + 0.01).item() == pytest.approx(40.0, abs=1e-3)
    per_image = psnr(torch.zeros(2, 8, 8, 3), torch.stack([torch.full((8, 8, 3), 0.1), torch.full((8, 8, 3), 0.01)]))
    torch.testing.assert_close(per_image, torch.tensor([20.0, 40.0]), atol=1e-3, rtol=0)


def test_l1_and_scale_regularizer():
    assert l1(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.25)).item() == pytest.approx(0.25)
    scales = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]])
    assert scale_regularizer(scales).item() == pytest.approx((6.0 + 1.0) / 2)
    assert scale_regularizer(torch.zeros(0, 3)).item() == 0.0


def test_reconstruction_loss_parts_sum():
    image, gt = _image(7).requires_grad_(True), _image(8)
    scales = torch.rand(10, 3)
    cfg = OptimConfig(lambda_dssim=0.2, lambda_scale=0.01)
    total, parts = reconstruction_loss(image, gt, scales, cfg)
    assert set(parts) == {"l1", "dssim", "scale"}
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    assert parts["l1"].item() == pytest.approx(0.8 * l1(image, gt).item(), rel=1e-6)
    assert parts["dssim"].item() == pytest.approx(0.2 * (1 - ssim(image, gt).item()), rel=1e-5)
    assert parts["scale"].item() == pytest.approx(0.01 * scales.prod(-1).mean().item(), rel=1e-6)
    total.backward()
    assert image.grad is not None and math.isfinite(image.grad.abs().sum().item())


def test_a_window_wider_than_the_kernel_takes_is_the_pytorch_path(kernels):
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 9, 11, 3, generator=g, dtype=torch.float64), torch.rand(2, 9, 11, 3, generator=g,
                                                                                  dtype=torch.float64)
    wide = ssim(a, b, window_size=65, sigma=20.0)  # more taps than the C++ kernel's 63
    assert wide.item() != pytest.approx(ssim(a, b).item(), abs=1e-3)
    assert wide.item() == pytest.approx(_dense_reference_ssim(a, b, 65, 20.0).item(), rel=1e-10)
