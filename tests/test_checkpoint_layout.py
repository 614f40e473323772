"""The checkpoint layout block training has written (checkpoint version 2, block state version 1), spelled out
section by section: the trainer writes exactly it, and a file written in it resumes to the end of an
uninterrupted run."""

from pathlib import Path

import pytest
import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.io.checkpoint import checksum, latest_checkpoint, load_checkpoint, save_checkpoint
from momentum_gs.train.seeding import rng_state
from momentum_gs.train.trainer import Trainer

pytestmark = pytest.mark.slow  # trains the tiny scene


def _cpu(obj):
    """A CPU copy of every tensor in a nested state."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: _cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(value) for value in obj)
    return obj


def _block_section(block) -> dict:
    """One entry of ``"blocks"``, in the order its keys have always been written (block state version 1)."""
    section = {"format": "momentum_gs.block", "version": 1, "anchors": _cpu(block.anchors.to_dict()),
               "optimizer": _cpu(block.optimizer.state_dict()), "strategy": _cpu(block.strategy.state_dict()),
               "steps": block.steps}
    if block.decoder is not None:  # independent blocks
        section["decoder"] = _cpu(block.decoder.state_dict())
        section["decoder_optimizer"] = _cpu(block.decoder_optimizer.state_dict())
    return section


def _written_layout(trainer: Trainer) -> dict:
    """The parts of a checkpoint (all but the header), built from the trainer's objects, not by its writer."""
    trainer.placement.activate(list(range(len(trainer.blocks))))  # every block's objects on hand
    return {
        "blocks": [_block_section(block) for block in trainer.blocks],
        "decoder": _cpu(trainer.decoder.state_dict()),
        "appearance": None if trainer.appearance is None else _cpu(trainer.appearance.state_dict()),
        "decoder_optimizer": None if trainer.decoder_opt is None else _cpu(trainer.decoder_opt.state_dict()),
        "teacher": None if trainer.teacher is None else _cpu(trainer.teacher.state_dict()),
        "weighting": trainer.weighting.state_dict(),
        "partition": trainer.cfg.blocks.partition,
        "partition_in_run": trainer.folder.relative(trainer.cfg.blocks.partition),
        "partition_sha256": trainer.partition_digest,
        "rng": rng_state(),
    }


@pytest.mark.parametrize("decoders", ["shared", "independent"])
def test_a_checkpoint_in_the_written_layout_resumes_exactly(block_config, tmp_path, decoders):
    if decoders == "independent":
        block_config.blocks.shared_decoder = False
        block_config.teacher.enabled = False
    scene = load_scene(block_config.data)
    straight = Trainer(block_config, scene, tmp_path / "straight", torch.device("cpu"))
    straight.train()

    killed = Trainer(block_config, scene, tmp_path / "killed", torch.device("cpu"))
    killed.train(until=10)  # one block loaded, the other parked
    parts = _written_layout(killed)
    assert checksum(parts) == checksum(killed.state())  # the trainer writes this layout, key for key
    save_checkpoint(tmp_path / "resumed" / "ckpt" / "step_10.pt", 10, parts)
    assert load_checkpoint(latest_checkpoint(tmp_path / "resumed" / "ckpt"))["version"] == 2

    resumed = Trainer(block_config, scene, Path(tmp_path / "resumed"), torch.device("cpu"))
    assert resumed.resume() and resumed.step == 10
    assert [block.steps for block in resumed.blocks] == [block.steps for block in killed.blocks]
    resumed.train()
    assert checksum(resumed.state()) == checksum(straight.state())
