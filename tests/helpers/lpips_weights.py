"""Weight files of LPIPS-VGG with random values and the real layouts: torchvision's vgg16 backbone and the lpips
v0.1 linear heads, for loading them without a download."""

from __future__ import annotations

import torch

from momentum_gs.eval.lpips import HEAD_KEY, TAP_CHANNELS

CONV_LAYERS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision vgg16 features indices
CONV_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def fake_backbone(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's vgg16 state dict: exact ``features.*`` shapes, and small ``classifier.*`` tensors to ignore."""
    g = torch.Generator().manual_seed(seed)
    state, channels = {}, 3
    for index, width in zip(CONV_LAYERS, CONV_WIDTHS):
        state[f"features.{index}.weight"] = torch.randn(width, channels, 3, 3, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.randn(width, generator=g) * 0.01
        channels = width
    for index in (0, 3, 6):
        state[f"classifier.{index}.weight"] = torch.randn(4, 4, generator=g)
        state[f"classifier.{index}.bias"] = torch.randn(4, generator=g)
    return state


def fake_heads(seed: int = 0) -> dict[str, torch.Tensor]:
    """The lpips v0.1 vgg.pth layout: ``lin{i}.model.1.weight`` of shape [1, C, 1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return {HEAD_KEY.format(i): torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(TAP_CHANNELS)}
