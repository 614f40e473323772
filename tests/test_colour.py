"""Colour correction: recovers a known quadratic colour map and never lowers PSNR."""

from __future__ import annotations

import torch

from momentum_gs.eval.colour import colour_correct, quadratic_features
from momentum_gs.losses import psnr


def test_recovers_a_quadratic_colour_map():
    g = torch.Generator().manual_seed(0)
    render = torch.rand(24, 32, 3, generator=g)
    coefs = torch.zeros(10, 3)
    coefs[:3] = torch.eye(3) * 0.6 + 0.05 * torch.rand(3, 3, generator=g)  # gain and a little crosstalk
    coefs[3:9] = 0.1 * torch.rand(6, 3, generator=g) - 0.05  # mild curves
    coefs[9] = torch.tensor([0.10, 0.05, 0.15])  # offset
    gt = (quadratic_features(render.reshape(-1, 3).double()) @ coefs.double()).reshape(render.shape).float()
    assert gt.min() >= 0 and gt.max() <= 1  # inside the clamp range, so the fit can be exact
    corrected = colour_correct(render, gt)
    assert corrected.shape == render.shape and corrected.dtype == render.dtype
    assert (corrected - gt).abs().max() < 1e-4
    assert (render - gt).abs().max() > 0.1


def test_clipped_pixels_do_not_bias_the_fit():
    """Pixels saturated in the ground truth (a blown-out sky) say nothing about the colour map: ignored."""
    g = torch.Generator().manual_seed(1)
    render = 0.1 + 0.8 * torch.rand(16, 20, 3, generator=g)
    gt = 0.8 * render + 0.1
    gt[:6] = 1.0  # saturated rows
    corrected = colour_correct(render, gt)
    assert (corrected[6:] - gt[6:]).abs().max() < 1e-4


def test_corrects_exposure_under_noise():
    g = torch.Generator().manual_seed(3)
    render = 0.1 + 0.8 * torch.rand(32, 32, 3, generator=g)
    gt = (render * torch.tensor([0.7, 0.9, 1.1]) + 0.03 + 0.01 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    corrected = colour_correct(render, gt)
    assert psnr(corrected, gt) > psnr(render, gt) + 5
    assert psnr(corrected, gt) > 38  # down to the noise (σ = 0.01 is 40 dB)


def test_flat_render_is_handled():
    """A render of one colour gives a rank-deficient fit; the best map is then the mean of gt."""
    gt = torch.rand(8, 8, 3, generator=torch.Generator().manual_seed(2))
    corrected = colour_correct(torch.full((8, 8, 3), 0.5), gt)
    assert torch.allclose(corrected, gt.mean(dim=(0, 1)).expand_as(gt), atol=1e-5)
