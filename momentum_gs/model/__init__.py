"""The anchor model: anchors, the shared decoder, per-view neural Gaussians, growing/pruning, optimizers."""

from momentum_gs.model.anchors import AnchorSet, auto_voxel_size, initial_log_scales, voxelize
from momentum_gs.model.decoder import (
    DecodedAnchors,
    Decoder,
    DecoderInputs,
    appearance_code,
    make_appearance,
)
from momentum_gs.model.neural import (
    NeuralGaussians,
    anchor_mask,
    child_rotations,
    child_scales,
    generate_gaussians,
    reference_visible_anchors,
    visible_anchors,
)
from momentum_gs.model.optim import (
    edit_rows,
    expon_lr,
    make_anchor_optimizer,
    make_decoder_optimizer,
    param_group,
    replace_rows,
    update_learning_rates,
)
from momentum_gs.model.strategy import GrowPruneStrategy, grow_cells

__all__ = [
    "AnchorSet",
    "DecodedAnchors",
    "Decoder",
    "DecoderInputs",
    "GrowPruneStrategy",
    "NeuralGaussians",
    "anchor_mask",
    "appearance_code",
    "auto_voxel_size",
    "child_rotations",
    "child_scales",
    "edit_rows",
    "expon_lr",
    "generate_gaussians",
    "grow_cells",
    "initial_log_scales",
    "make_anchor_optimizer",
    "make_appearance",
    "make_decoder_optimizer",
    "param_group",
    "reference_visible_anchors",
    "replace_rows",
    "update_learning_rates",
    "visible_anchors",
    "voxelize",
]
