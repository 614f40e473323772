"""A renderable scene: one block's (or a merged scene's) anchors, the decoder, the appearance table.

``GaussianScene.render`` is the one render path shared by training, evaluation, export and benchmarks:
cull anchors → decode neural Gaussians → rasterize.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from momentum_gs.config import BACKEND_ALIASES, ModelConfig, RenderConfig
from momentum_gs.data.camera import Camera
from momentum_gs.errors import UserError
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import Decoder, appearance_code
from momentum_gs.model.neural import NeuralGaussians, generate_gaussians
from momentum_gs.render import BACKENDS, RenderOutput, render
from momentum_gs.render.gsplat_backend import gsplat_problem

GAUSSIAN_FIELDS = ("means", "quats", "scales", "opacities", "colors")  # what a render takes from the Gaussians


@dataclass
class ViewRender:
    """One rendered view: the rasterizer's output and the neural Gaussians that produced it."""

    output: RenderOutput
    gaussians: NeuralGaussians  # the (first) part's neural Gaussians, with the bookkeeping training needs
    num_gaussians: int  # Gaussians rasterized, all parts together


class GaussianScene(nn.Module):
    """Anchors + decoder (+ per-training-view appearance codes).

    Args:
        anchors: the anchor set (one block, or all blocks merged).
        decoder: the Gaussian decoder.
        appearance: [num_train_views, a] embedding, or None.
    """

    def __init__(self, anchors: AnchorSet, decoder: Decoder, appearance: nn.Embedding | None = None):
        super().__init__()
        self.anchors = anchors
        self.decoder = decoder
        self.appearance = appearance

    @property
    def num_anchors(self) -> int:
        """Anchors in the scene."""
        return self.anchors.num_anchors

    @property
    def device(self) -> torch.device:
        """Where the scene's tensors live."""
        return self.anchors.positions.device

    def render(self, camera: Camera, render_cfg: RenderConfig, appearance_index: int | None = None,
               backend: str | None = None, extras: tuple[str, ...] = ()) -> ViewRender:
        """Render ``camera`` ([H, W, 3] image in ``output.image``; the maps named in ``extras``, e.g.
        ("depth", "normal"), in ``output.depth`` and ``output.normal``).

        ``appearance_index`` picks the training view whose appearance code is used (the camera's own
        ``uid`` for training views; for held-out views pass a training index, or None for the mean code).
        """
        return render_view([(self.anchors, self.decoder)], camera, render_cfg, self.appearance, appearance_index,
                           backend, extras)

    def to_dict(self) -> dict:
        """Named state: anchors (plain tensors), decoder and appearance state dicts."""
        return {
            "anchors": self.anchors.to_dict(),
            "decoder": self.decoder.state_dict(),
            "appearance": None if self.appearance is None else self.appearance.state_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict, cfg: ModelConfig, device: torch.device | str = "cpu") -> "GaussianScene":
        """The inverse of :meth:`to_dict`; ``cfg`` gives the decoder's shape."""
        anchors = AnchorSet.from_dict(state["anchors"], device=device)
        return cls(anchors, decoder_from_state(state["decoder"], cfg, device),
                   appearance_from_state(state.get("appearance"), device))


def decoder_from_state(state: dict, cfg: ModelConfig, device: torch.device | str = "cpu") -> Decoder:
    """A decoder of ``cfg``'s shape holding a saved state dict."""
    decoder = Decoder.from_config(cfg).to(device)
    decoder.load_state_dict(state)
    return decoder


def appearance_from_state(state: dict | None, device: torch.device | str = "cpu") -> nn.Embedding | None:
    """The appearance table of a saved state dict (None: the model has none)."""
    if state is None:
        return None
    weight = state["weight"]
    appearance = nn.Embedding(weight.shape[0], weight.shape[1], device=device)
    appearance.load_state_dict(state)
    return appearance


class PartsScene(nn.Module):
    """Several (anchors, decoder) parts rendered together: the merged scene of independently trained blocks."""

    def __init__(self, parts: list[tuple[AnchorSet, Decoder]]):
        super().__init__()
        self.anchor_sets = nn.ModuleList([anchors for anchors, _ in parts])
        self.decoders = nn.ModuleList([decoder for _, decoder in parts])

    @property
    def parts(self) -> list[tuple[AnchorSet, Decoder]]:
        """The (anchors, decoder) pairs."""
        return list(zip(self.anchor_sets, self.decoders))

    @property
    def num_anchors(self) -> int:
        """Anchors over all parts."""
        return sum(anchors.num_anchors for anchors in self.anchor_sets)

    @property
    def device(self) -> torch.device:
        """Where the scene's tensors live."""
        return self.anchor_sets[0].positions.device

    def render(self, camera: Camera, render_cfg: RenderConfig, appearance_index: int | None = None,
               backend: str | None = None, extras: tuple[str, ...] = ()) -> ViewRender:
        """Render all parts into one image (see :func:`render_view`)."""
        return render_view(self.parts, camera, render_cfg, None, appearance_index, backend, extras)


def render_view(parts: list[tuple[AnchorSet, Decoder]], camera: Camera, render_cfg: RenderConfig,
                appearance: nn.Embedding | None = None, appearance_index: int | None = None,
                backend: str | None = None, extras: tuple[str, ...] = ()) -> ViewRender:
    """Cull, decode and rasterize one or more (anchors, decoder) parts in one image (and the maps named in
    ``extras``, see :func:`momentum_gs.render.render`).

    One part is the usual case (a block, or a merged scene with one shared decoder). Several parts are the
    merged scene of independently trained blocks, each with its own decoder; their neural Gaussians are
    concatenated before rasterization. ``view.gaussians`` is the first part's (training uses one part).
    """
    camera = camera.to(parts[0][0].positions.device)
    decoded = decode_parts(parts, camera, render_cfg, appearance, appearance_index)
    tensors = gaussian_tensors(decoded)
    return ViewRender(rasterize(tensors, camera, render_cfg, backend, extras), decoded[0], int(tensors[0].shape[0]))


def decode_parts(parts: list[tuple[AnchorSet, Decoder]], camera: Camera, render_cfg: RenderConfig,
                 appearance: nn.Embedding | None = None, appearance_index: int | None = None
                 ) -> list[NeuralGaussians]:
    """The neural Gaussians of each part seen from ``camera`` (on the parts' device); the appearance code of
    training view ``appearance_index``, or the mean code for None."""
    code = None
    if appearance is not None:
        code = appearance.weight.mean(0) if appearance_index is None else appearance_code(appearance, appearance_index)
    return [generate_gaussians(anchors, decoder, camera, code, near=render_cfg.near,
                               anchor_filter=render_cfg.anchor_filter) for anchors, decoder in parts]


def gaussian_tensors(decoded: list[NeuralGaussians]) -> list[torch.Tensor]:
    """``render``'s means, quats, scales, opacities and colors of all parts together."""
    if len(decoded) == 1:
        return [getattr(decoded[0], name) for name in GAUSSIAN_FIELDS]
    return [torch.cat([getattr(g, name) for g in decoded]) for name in GAUSSIAN_FIELDS]


def rasterize(tensors: list[torch.Tensor], camera: Camera, render_cfg: RenderConfig,
              backend: str | None = None, extras: tuple[str, ...] = ()) -> RenderOutput:
    """Render Gaussians (:func:`gaussian_tensors`) into ``camera`` with the config's background and tiles;
    ``backend`` None resolves ``render_cfg.backend`` for the tensors' device; ``extras`` as in ``render``
    (e.g. ("depth", "normal"))."""
    device = tensors[0].device
    background = background_tensor(tuple(render_cfg.background), device)
    return render(*tensors, camera.world_to_cam, camera.K, camera.width, camera.height, background=background,
                  backend=backend or resolve_backend(render_cfg.backend, device), tile_size=render_cfg.tile_size,
                  extras=extras)


@functools.cache
def background_tensor(colour: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """The background colour as a float32 tensor on ``device``, made once: a copy to a GPU every render would
    make the host wait for the GPU each time."""
    return torch.tensor(colour, dtype=torch.float32, device=device)


def resolve_backend(name: str, device: torch.device) -> str:
    """``"auto"`` → "gsplat" on a CUDA device where gsplat imports, else "builtin"; otherwise ``name`` (an old
    name such as "torch" read as today's), checked (a backend that cannot run on ``device`` is a UserError).
    gsplat is never imported for a CPU device."""
    if name == "auto":
        return "gsplat" if gsplat_problem(device) is None else "builtin"
    name = BACKEND_ALIASES.get(name, name)
    if name not in BACKENDS:
        raise UserError(f"render backend '{name}' is not available (available: {', '.join(BACKENDS)}, auto)")
    if name == "gsplat" and (problem := gsplat_problem(device)) is not None:
        raise UserError(problem)
    return name
