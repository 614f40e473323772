"""LPIPS-VGG (v0.1 linear heads) as plain torch modules, loaded from local weight files.

Two files are needed, neither shipped with this repository:

- the ImageNet VGG16 backbone ``vgg16-397923af.pth`` (torchvision's file, 528 MB; only its ``features.*``
  tensors are used), from https://download.pytorch.org/models/vgg16-397923af.pth;
- the v0.1 linear heads, the file ``lpips/weights/v0.1/vgg.pth`` of the ``lpips`` package (BSD-2, 7 KB),
  kept under the cache name ``lpips_vgg_v0.1.pth``.

Both are looked for in ``torch.hub.get_dir()/checkpoints/`` unless a path is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from momentum_gs.errors import UserError, one_line

BACKBONE_FILE = "vgg16-397923af.pth"
BACKBONE_URL = f"https://download.pytorch.org/models/{BACKBONE_FILE}"
HEADS_FILE = "lpips_vgg_v0.1.pth"  # our cache name for the lpips package's lpips/weights/v0.1/vgg.pth
HEAD_KEY = "lin{}.model.1.weight"  # key of tap i's head in that file, shape [1, C, 1, 1]

# VGG16 convolution widths; "M" is a 2×2 max pool. Layer indices then match torchvision's ``features``.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAP_LAYERS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS scaling layer: (x - shift) / scale per RGB channel
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

PAPER_CONVENTION = "LPIPS-VGG v0.1, [0,1] images fed as is (the 3DGS / Momentum-GS tables)"
STANDARD_CONVENTION = "LPIPS-VGG v0.1, [0,1] images rescaled to [-1,1] (the lpips package's convention)"


class LPIPSWeightsMissing(UserError):
    """A weight file LPIPS needs is not on disk; the message says which file to put where.

    Evaluation catches it and reports no LPIPS; left uncaught, the command line prints it as any
    ``UserError``.
    """


def vgg16_features() -> nn.Sequential:
    """VGG16's convolutional stack up to relu5_3, indexed like torchvision's ``vgg16().features``."""
    layers: list[nn.Module] = []
    channels = 3
    for width in VGG16_LAYOUT:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU()]
            channels = width
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """Learned perceptual distance between images (LPIPS-VGG, v0.1 heads); lower is more similar.

    The constructor builds untrained weights (tests only); scores for reports come from ``load_lpips``.

    Args:
        normalize: False feeds [0, 1] images as is, the convention of the paper's tables; True rescales
            them to [-1, 1] first, the convention LPIPS was trained with. ``convention`` names the one in use.
    """

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize
        self.features = vgg16_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in TAP_CHANNELS)
        for head, channels in zip(self.heads, TAP_CHANNELS):
            nn.init.constant_(head.weight, 1.0 / channels)  # untrained stand-in; trained heads are ≥ 0 too
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    @property
    def convention(self) -> str:
        """How the inputs were fed, in words, for result files and tables."""
        return STANDARD_CONVENTION if self.normalize else PAPER_CONVENTION

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-unit-normalised VGG features [B, C, h, w] at the five taps, for [B, 3, H, W] input."""
        x = (x - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_LAYERS:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS of ``a`` against ``b``: [H, W, 3] → scalar, [B, H, W, 3] → [B]; images in [0, 1], H and W ≥ 16.

        Inputs are moved to the network's device and dtype.
        """
        x, y = (image.to(self.shift).movedim(-1, -3) for image in (a, b))
        batched = x.dim() == 4
        if not batched:
            x, y = x[None], y[None]
        if self.normalize:
            x, y = 2.0 * x - 1.0, 2.0 * y - 1.0
        score = sum(head((fx - fy).pow(2)).mean(dim=(1, 2, 3))
                    for head, fx, fy in zip(self.heads, self.taps(x), self.taps(y)))
        return score if batched else score[0]


def load_lpips(backbone_path: str | Path | None, heads_path: str | Path | None, device: torch.device | str,
               allow_download: bool = False, normalize: bool = False) -> LPIPS:
    """LPIPS-VGG with trained weights, on ``device``, in eval mode without gradients.

    Args:
        backbone_path: torchvision's ``vgg16-397923af.pth``; None looks in ``<hub dir>/checkpoints/``.
        heads_path: the lpips v0.1 ``vgg.pth`` heads; None looks for ``<hub dir>/checkpoints/lpips_vgg_v0.1.pth``.
        allow_download: fetch a missing backbone (not the heads: PyTorch does not host them) into the hub cache.
        normalize: see ``LPIPS``; False is the paper's convention.

    Raises:
        LPIPSWeightsMissing: a file is absent; the one-line message says which file to put where.
        UserError: a file is not the expected weights (unreadable, a key missing, a shape wrong).
    """
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    backbone = Path(backbone_path) if backbone_path else cache / BACKBONE_FILE
    heads = Path(heads_path) if heads_path else cache / HEADS_FILE
    missing = []
    if not backbone.is_file() and not (allow_download and backbone_path is None):
        missing.append(f"put the ImageNet VGG16 weights {BACKBONE_URL} at {backbone}")
    if not heads.is_file():
        missing.append(f"copy lpips/weights/v0.1/vgg.pth from the lpips package (BSD-2) to {heads}")
    if missing:
        raise LPIPSWeightsMissing("LPIPS needs its weights: " + "; ".join(missing))
    model = LPIPS(normalize)
    _load_checked(model.features, _read_backbone(backbone),
                  {name: f"features.{name}" for name in model.features.state_dict()}, backbone, "VGG16 weights")
    _load_checked(model.heads, _read(heads), {f"{i}.weight": HEAD_KEY.format(i) for i in range(len(TAP_CHANNELS))},
                  heads, "lpips v0.1 vgg.pth heads")
    return model.to(device).eval().requires_grad_(False)


def _read_backbone(path: Path) -> Mapping[str, torch.Tensor]:
    """The backbone state dict at ``path``, downloaded into the hub cache first when it is not there yet."""
    if path.is_file():
        return _read(path)
    try:
        return torch.hub.load_state_dict_from_url(BACKBONE_URL, map_location="cpu", check_hash=True)
    except Exception as exc:  # no network, a proxy, a bad hash: all mean "place the file by hand"
        raise LPIPSWeightsMissing(f"could not download {BACKBONE_URL} ({one_line(exc)}); put it at {path}") from exc


def _read(path: Path) -> Mapping[str, torch.Tensor]:
    """A state dict of tensors from ``path`` (on the CPU), or a ``UserError`` saying the file is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # only the kind of failure: torch's own text advises switching the weights-only guard off, wrong for a file that is not weights
        raise UserError(f"{path} is not a readable PyTorch weight file ({type(exc).__name__}); "
                        "point to vgg16-397923af.pth and the lpips v0.1 vgg.pth") from exc
    if not isinstance(state, Mapping):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict of LPIPS weights")
    return state


def _load_checked(module: nn.Module, state: Mapping[str, torch.Tensor], keys: dict[str, str], path: Path,
                  what: str) -> None:
    """Load ``state[keys[name]]`` into each tensor ``name`` of ``module``, checking key and shape first."""
    tensors = {}
    for name, expected in module.state_dict().items():
        value = state.get(keys[name])
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path} has no tensor '{keys[name]}': it is not the {what}")
        if value.shape != expected.shape:
            raise UserError(f"{path}: '{keys[name]}' has shape {tuple(value.shape)}, "
                            f"LPIPS-VGG needs {tuple(expected.shape)}: it is not the {what}")
        tensors[name] = value
    module.load_state_dict(tensors)


