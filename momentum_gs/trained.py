"""A trained run read back: its config, its latest checkpoint, and the blocks merged into one scene.

:func:`load_run` is what ``mgs eval``, ``mgs export``, ``mgs mesh``, ``mgs render`` and the coarse partition
rule read; the viewer reads a checkpoint's parts (:func:`checkpoint_parts`); the tiled export reads each block
as a scene of its own (:func:`load_blocks`). The paths of a run folder are
:class:`momentum_gs.io.run_folder.RunFolder`'s.

Before any of it is used, a checkpoint is checked against the config it claims (the run's ``config.yaml``, or
the config a resumed training runs with) by :func:`checkpoint_problem`: :func:`checkpoint_layout` is the one
description of every tensor a checkpoint holds, its dtype and its shape from the config, and of its step.

A run finds the partition it was trained with through its checkpoint (:func:`run_partition`): first the path
recorded relative to the run folder, so a moved or copied run finds its own, then the absolute path older
checkpoints record; the partition is checked to be the one trained with (its digest, its number of blocks).

Merging crops each block's anchors to its cell and concatenates them. With a shared decoder the result is
one :class:`GaussianScene` (one anchor set, the single decoder). With independent decoders (an ablation)
each block keeps its decoder and the result is a :class:`PartsScene`. Without a partition (one block)
nothing is cropped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from momentum_gs.config import Config, ModelConfig, load_config, resolve_device
from momentum_gs.errors import UserError
from momentum_gs.io.checkpoint import latest_checkpoint, load_checkpoint
from momentum_gs.io.finite import require_finite
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.io.schema import (NOTHING, FileName, Items, Kind, Maybe, Nothing, Number, Obj, Tensor, Text, check,
                                   problem, read_json)
from momentum_gs.model.anchors import AnchorSet
from momentum_gs.model.decoder import Decoder
from momentum_gs.model.gaussian_scene import GaussianScene, PartsScene, appearance_from_state, decoder_from_state
from momentum_gs.partition.partition import Partition
from momentum_gs.ranges import AT_LEAST_0, MAX_BLOCKS, MAX_STEPS, POSITIVE, Range

# What is read back of a run's ``summary.json`` (``mgs table``); the training writes more, not looked into.
RUN_SUMMARY = Obj({"steps": Number(Range(0, MAX_STEPS), whole=True),
                   "seconds": Number(AT_LEAST_0, note="seconds of training"),
                   "num_blocks": Number(Range(1, MAX_BLOCKS), whole=True)})
# What a checkpoint says of its partition: the absolute path, the path inside the run folder, the file's digest.
PARTITION_RECORD = Obj({}, {"partition": Maybe(Text()),
                            "partition_in_run": Maybe(FileName("the run folder")),
                            "partition_sha256": Text()})


# ---- what a checkpoint holds ---------------------------------------------------------------------------------
F32 = torch.float32


def model_layout(model: ModelConfig) -> Obj:
    """The decoder's state dict (the shapes a decoder of ``model``'s sizes has, made on the meta device: no
    memory) and the appearance table ([views, appearance_dim], none when ``appearance_dim`` is 0): what a
    checkpoint and an exported decoder file hold of the model."""
    with torch.device("meta"):
        decoder = Decoder.from_config(model)
    sizes = (f"model.feat_dim={model.feat_dim}, n_offsets={model.n_offsets}, hidden_dim={model.hidden_dim}, "
             f"appearance_dim={model.appearance_dim}, add_distance={model.add_distance}")
    a = model.appearance_dim
    parts = {"decoder": Obj({name: Tensor(F32, tuple(t.shape), sizes) for name, t in decoder.state_dict().items()})}
    if not a:
        return Obj(parts, {"appearance": Nothing(f"model.appearance_dim={a}")})
    return Obj({**parts, "appearance": Obj({"weight": Tensor(F32, (None, a), f"model.appearance_dim={a}")})})


def adam_layout(params: list[Kind]) -> Obj:
    """Adam's state dict over parameters of the kinds ``params`` (:class:`Tensor`), in order: each one's step
    count and moments (absent until the parameter's first step)."""
    return Obj({"state": Obj({}, {i: Maybe(Obj({"step": Tensor(F32, ()), "exp_avg": p, "exp_avg_sq": p}))
                                  for i, p in enumerate(params)})})


def block_layout(state: dict, model: ModelConfig, decoder: Obj, step: int) -> Obj:
    """One entry of a checkpoint's ``blocks`` (see :mod:`momentum_gs.train.blocks`): its N anchors (N read from
    their positions), its optimizer and growth statistics over them, its steps (at most the checkpoint's), and
    for independent blocks its own decoder."""
    saved = state.get("anchors") if isinstance(state, dict) else None
    positions = saved.get("positions") if isinstance(saved, dict) else None
    rows = positions.shape[0] if torch.is_tensor(positions) and positions.dim() else None
    k, c = model.n_offsets, model.feat_dim
    offsets, features = Tensor(F32, (rows, k, 3), f"model.n_offsets={k}"), Tensor(F32, (rows, c), f"model.feat_dim={c}")
    scalings, children = Tensor(F32, (rows, 6)), None if rows is None else rows * k
    anchors = Obj({"positions": Tensor(F32, (rows, 3)), "offsets": offsets, "features": features,
                   "scalings": scalings, "voxel_size": Number(POSITIVE)})
    strategy = Obj({"opacity_accum": Tensor(F32, (rows,)), "anchor_visits": Tensor(F32, (rows,)),
                    "offset_grad_accum": Tensor(F32, (children,), f"anchors × model.n_offsets={k}"),
                    "offset_visits": Tensor(F32, (children,), f"anchors × model.n_offsets={k}"),
                    "generator": Tensor(torch.uint8, (None,))})
    required = {"anchors": anchors, "steps": Number(Range(0, step), whole=True, note="at most the checkpoint's step")}
    optional = {"optimizer": Maybe(adam_layout([offsets, features, scalings])), "strategy": Maybe(strategy)}
    if isinstance(state, dict) and "decoder" in state:  # an independent block
        required["decoder"] = decoder
        optional["decoder_optimizer"] = Maybe(adam_layout(list(decoder.required.values())))
    return Obj(required, optional)


def checkpoint_layout(ckpt: dict, cfg: Config) -> Obj:
    """The one description of a checkpoint of a run with config ``cfg`` (a :mod:`momentum_gs.io.schema` kind):
    every tensor with its dtype and its shape from ``cfg.model`` (the anchors' count, the views' and the blocks'
    are read from the file), and the step: a whole number no larger than the schedule of ``cfg`` reaches,
    ``optim.steps`` per block times the blocks (k ≥ 1 active blocks at a time run ⌈optim.steps · n / k⌉ global
    steps)."""
    blocks = ckpt.get("blocks") if isinstance(ckpt.get("blocks"), list) else []
    n, steps = max(len(blocks), 1), cfg.optim.steps
    step = ckpt.get("step") if type(ckpt.get("step")) is int else 0
    model = model_layout(cfg.model)
    decoder, appearance = model.required["decoder"], model.required.get("appearance", NOTHING)
    shared = list(decoder.required.values()) + ([appearance.required["weight"]] if appearance is not NOTHING else [])
    per_block = {"psnr": torch.float64, "ssim": torch.float64, "evaluations": torch.int64}
    schedule = f"optim.steps={steps} per block × {n} block{'s' * (n > 1)}"
    required = {
        "step": Number(Range(0, steps * n), whole=True, note=schedule),
        "blocks": Items(tuple(block_layout(state, cfg.model, decoder, step) for state in blocks) or (Obj({}),)),
        **model.required,
    }
    return Obj(required, {
        **model.optional, "decoder_optimizer": Maybe(adam_layout(shared)), "teacher": Maybe(decoder),
        "weighting": Maybe(Obj({name: Tensor(dtype, (n,), f"{n} blocks") for name, dtype in per_block.items()})),
        "rng": Maybe(Obj({"torch": Tensor(torch.uint8, (None,))},
                         {"numpy": Maybe(Obj({"keys": Tensor(torch.int64, (624,), "numpy's MT19937 state")}))})),
        "view_work": Maybe(Obj({"recorded": Number(Range(0, steps * n), whole=True, note=schedule),
                                **{name: Tensor(dtype, (None,)) for name, dtype in
                                   (("views", torch.int64), ("steps", torch.int64), ("work", torch.float64))}})),
    })


def checkpoint_problem(ckpt: dict, cfg: Config) -> str | None:
    """The first part of ``ckpt`` that does not fit :func:`checkpoint_layout` of ``cfg``, in words, or None."""
    return problem(ckpt, checkpoint_layout(ckpt, cfg))


# ---- a run read back ------------------------------------------------------------------------------------------
def cropped_anchors(state: dict, block: int, partition, device: torch.device) -> AnchorSet:
    """Block ``block``'s anchors from its saved state, keeping only those inside its own cell."""
    anchors = AnchorSet.from_dict(state["anchors"], device=device)
    if partition is not None:
        keep = torch.as_tensor(partition.block_of(anchors.positions.detach().cpu().numpy()) == block)
        anchors.edit(None, keep=keep.to(device))
    return anchors


def concatenate(anchor_sets: list[AnchorSet]) -> AnchorSet:
    """One anchor set holding all rows of ``anchor_sets`` (same feature size and k)."""
    names = ("positions", "offsets", "features", "scalings")
    state = {name: torch.cat([getattr(a, name).detach() for a in anchor_sets]) for name in names}
    state["voxel_size"] = anchor_sets[0].voxel_size
    return AnchorSet.from_dict(state)


def run_partition(folder: RunFolder, ckpt: dict, where: str) -> Path | None:
    """The partition file the checkpoint ``where`` of the run ``folder`` was trained with (None: one block, no
    partition): the first of its path relative to the run folder, its absolute path and ``RUN/partition.npz``
    that exists and, when the checkpoint records the file's digest, has that content; a UserError when there is
    none."""
    record = check({k: ckpt[k] for k in PARTITION_RECORD.optional if k in ckpt}, PARTITION_RECORD, where)
    if not record.get("partition"):
        return None
    candidates = [folder.root / record["partition_in_run"]] if record.get("partition_in_run") else []
    candidates = [p for p in [*candidates, Path(record["partition"]), folder.partition] if p.is_file()]
    digest = record.get("partition_sha256")
    for path in candidates:
        if not digest or hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return path
    if candidates:
        raise UserError(f"the partition file {candidates[0]} is not the one {where} was trained with (its content "
                        "changed); put the original back, or use the run with the partition it was trained with")
    raise UserError(f"the partition file {record['partition']} of {folder.root} is missing; put it back (it says "
                    "which anchors belong to which block) or use a copy of the run made with it")


def checkpoint_parts(ckpt: dict, cfg: Config, device: torch.device
                     ) -> tuple[Partition | None, list[AnchorSet], list[Decoder], nn.Embedding | None]:
    """A checkpoint's partition (``cfg.blocks.partition``, as :func:`read_checkpoint` found it; None for one
    block), each block's anchors cropped to its cell, each block's decoder (one shared decoder, the same object
    for every block, unless the blocks were trained independently) and the appearance table (shared decoder
    only). A UserError when the partition's blocks are not the checkpoint's."""
    partition = Partition.load(cfg.blocks.partition) if cfg.blocks.partition else None
    blocks = len(ckpt["blocks"])
    if (partition.num_blocks if partition is not None else 1) != blocks:
        found = f"the partition file {cfg.blocks.partition} has {partition.num_blocks}" if partition is not None \
            else "the run names no partition file (one block)"
        raise UserError(f"the run's checkpoint holds {blocks} blocks but {found}; use the partition the run was "
                        "trained with")
    anchors = [cropped_anchors(state, b, partition, device) for b, state in enumerate(ckpt["blocks"])]
    if independent_blocks(ckpt):
        return partition, anchors, [decoder_from_state(state["decoder"], cfg.model, device)
                                    for state in ckpt["blocks"]], None
    shared = decoder_from_state(ckpt["decoder"], cfg.model, device)
    return partition, anchors, [shared] * len(anchors), appearance_from_state(ckpt.get("appearance"), device)


def independent_blocks(ckpt: dict) -> bool:
    """Whether each block of the checkpoint has a decoder of its own (an ablation) instead of a shared one."""
    return "decoder" in ckpt["blocks"][0]


def merge_checkpoint(ckpt: dict, cfg: Config, device: torch.device) -> GaussianScene | PartsScene:
    """The merged scene of a checkpoint written by the trainer."""
    _, anchors, decoders, appearance = checkpoint_parts(ckpt, cfg, device)
    if independent_blocks(ckpt):
        return PartsScene(list(zip(anchors, decoders)))
    return GaussianScene(AnchorSet.from_dict(concatenate(anchors).to_dict(), device=device), decoders[0], appearance)


def run_config(run_dir: str | Path) -> Config:
    """The config a run folder saved; one line when the folder is not a run (a missing folder included)."""
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise UserError(f"{folder.root} is not a run folder (no config.yaml); train one with `mgs train`")
    return load_config(folder.config)


def read_checkpoint(run_dir: Path, device: torch.device | None, no_checkpoint: str, diverged: str
                    ) -> tuple[Config, Path, dict, torch.device]:
    """A run folder's config (``blocks.partition`` set to the file :func:`run_partition` finds), its latest
    checkpoint (the path and the contents, whose model tensors are checked finite) and the device to use; one
    line when the folder is not a run, holds no checkpoint (the line goes on with ``no_checkpoint``), its model is
    not finite (``diverged`` says what to do) or its partition is missing or another."""
    folder = RunFolder(run_dir)
    cfg = run_config(folder.root)
    path = latest_checkpoint(folder.ckpt)
    if path is None:
        raise UserError(f"{folder.ckpt} holds no checkpoint{no_checkpoint}")
    device = device or resolve_device(cfg.device)
    ckpt = load_checkpoint(path, map_location="cpu")
    problem = checkpoint_problem(ckpt, cfg)
    if problem is not None:
        raise UserError(f"{path} does not fit the run's {folder.config.name} ({problem}): the run folder holds files "
                        "of different runs; put back the config the checkpoint was trained with")
    blocks = [{k: v for k, v in block.items() if k in ("anchors", "decoder")} for block in ckpt["blocks"]]
    model_parts = {"blocks": blocks, "decoder": ckpt.get("decoder"), "appearance": ckpt.get("appearance")}
    require_finite(model_parts, f"the model in {path}", diverged)
    partition = run_partition(folder, ckpt, f"checkpoint {path}")
    cfg.blocks.partition = str(partition) if partition is not None else ""
    return cfg, path, ckpt, device


def load_run(run_dir: Path, device: torch.device | None = None) -> tuple[Config, GaussianScene | PartsScene, int]:
    """The config, the merged model of the latest checkpoint, and its step, of a run folder."""
    cfg, _, ckpt, device = read_checkpoint(
        run_dir, device, "; training did not finish a save",
        "the run diverged: resume or evaluate an earlier checkpoint of ckpt/, or train again (a lower learning rate, "
        "or check the data)")
    return cfg, merge_checkpoint(ckpt, cfg, device), int(ckpt["step"])


def load_blocks(run_dir: Path, device: torch.device | None = None
                ) -> tuple[Config, Partition | None, list[GaussianScene], int]:
    """The config, the partition (None for one block), each block as a scene of its own (its anchors cropped to
    its cell, the shared decoder and appearance table) and the step, of a run folder: what an export that
    works block by block reads. One line for a run whose blocks have decoders of their own."""
    cfg, _, ckpt, device = read_checkpoint(
        run_dir, device, "; training did not finish a save",
        "the run diverged: export an earlier checkpoint of ckpt/, or train again")
    if independent_blocks(ckpt):
        raise UserError("this run trained independent decoders per block; a block-by-block export needs the shared "
                        "decoder of a Momentum-GS run")
    partition, anchors, decoders, appearance = checkpoint_parts(ckpt, cfg, device)
    return cfg, partition, [GaussianScene(a, d, appearance) for a, d in zip(anchors, decoders)], int(ckpt["step"])


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's ``summary.json`` checked against :data:`RUN_SUMMARY`, or None when training wrote none (yet);
    a UserError names the file, the key and what was expected."""
    path = RunFolder(run_dir).summary
    if not path.exists():
        return None
    return read_json(path, RUN_SUMMARY, "the run summary", "delete it, or train the run again to write it")
