"""Inactive blocks in host memory or on disk: round trips, and swapping that does not change training."""

import pytest
import torch

from momentum_gs.config import Config, StrategyConfig
from momentum_gs.data.camera import Camera
from momentum_gs.losses import reconstruction_loss
from momentum_gs.model import (
    AnchorSet,
    Decoder,
    GrowPruneStrategy,
    generate_gaussians,
    make_anchor_optimizer,
    make_decoder_optimizer,
    update_learning_rates,
)
from momentum_gs.render import render
from momentum_gs.train.block_store import BlockStore
from momentum_gs.train.blocks import block_state, restore_block

# Statistics from step 1 and an adjustment every 3 steps; a child needs 3 visits to grow and an anchor 6 to be
# pruned, so the statistics gathered before a block was swapped out decide what happens after it comes back.
CFG = Config(strategy=StrategyConfig(start_stat=0, update_from=2, update_interval=3, update_until=100,
                                     success_threshold=1.7, grad_threshold=1e-7, min_opacity=0.4, levels=2))
K = torch.tensor([[40.0, 0.0, 24.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])


def _camera(x: float) -> Camera:
    world_to_cam = torch.eye(4)
    world_to_cam[0, 3] = -x  # camera centre at (x, 0, 0), looking down +z
    return Camera("v.png", 48, 32, K, world_to_cam)


def _block(b: int):
    """(anchors, optimizer, strategy) of block b: 24 anchors around x = 2b − 1, z ≈ 5."""
    g = torch.Generator().manual_seed(10 + b)
    positions = torch.rand(24, 3, generator=g) * 1.5 + torch.tensor([2.0 * b - 1.75, -0.75, 4.5])
    anchors = AnchorSet(positions, voxel_size=0.05, feat_dim=4, n_offsets=3)
    with torch.no_grad():
        anchors.features.copy_(torch.randn(24, 4, generator=g))
        anchors.offsets.copy_(torch.randn(24, 3, 3, generator=g) * 0.3)
    optimizer = make_anchor_optimizer(anchors, CFG.optim, extent=2.0)
    return anchors, optimizer, GrowPruneStrategy(CFG.strategy, anchors, seed=b)


def _step(step, decoder, decoder_opt, anchors, optimizer, strategy, camera, gt) -> dict:
    """One training step of one block (the trainer's phases, in its order)."""
    update_learning_rates(optimizer, step)
    update_learning_rates(decoder_opt, step)
    neural = generate_gaussians(anchors, decoder, camera)
    out = render(neural.means, neural.quats, neural.scales, neural.opacities, neural.colors,
                 camera.world_to_cam, camera.K, camera.width, camera.height)
    loss, _ = reconstruction_loss(out.image, gt, neural.scales, CFG.optim)
    loss.backward()
    if strategy.should_collect(step):
        strategy.step_stats(neural, out.radii, out.means2d.grad, camera.width, camera.height)
    counts = strategy.adjust(anchors, optimizer) if strategy.should_adjust(step) else {}
    for opt in (optimizer, decoder_opt):
        opt.step()
        opt.zero_grad(set_to_none=True)
    return counts


def _train(store: BlockStore | None, steps: int = 12):
    """Alternate two blocks every 2 steps; with a store, the inactive block waits in it."""
    torch.manual_seed(0)
    decoder = Decoder(feat_dim=4, n_offsets=3, hidden_dim=8)
    decoder_opt = make_decoder_optimizer(decoder, None, CFG.optim)
    cameras = [_camera(-1.0), _camera(1.0)]
    gts = [torch.rand(32, 48, 3, generator=torch.Generator().manual_seed(b)) for b in range(2)]
    live = {0: _block(0), 1: _block(1)}
    if store is not None:
        store.put(1, block_state(*live.pop(1)))
    adjustments = []
    for step in range(1, steps + 1):
        b = (step - 1) // 2 % 2
        if b not in live:  # swap: the outgoing block leaves through the store, the incoming one comes back
            (old,) = live
            store.put(old, block_state(*live.pop(old)))
            live[b] = restore_block(store.take(b), CFG, "cpu")
        counts = _step(step, decoder, decoder_opt, *live[b], cameras[b], gts[b])
        if counts:
            adjustments.append(counts)
    states = {b: block_state(*objects) for b, objects in live.items()}
    if store is not None:
        states.update({b: store.peek(b) for b in store.blocks()})
    return decoder.state_dict(), decoder_opt.state_dict(), states, adjustments


def _assert_identical(a, b, where="state"):
    """Nested dicts/lists equal, tensors bit for bit."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def reference():
    """The run without swapping (both blocks stay live), shared by the two store modes."""
    return _train(None)


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_training_with_swapping_equals_training_without(mode, reference, tmp_path):
    swapped = _train(BlockStore(mode, tmp_path / "blocks"))
    adjustments = reference[3]
    assert len(adjustments) == 4 and sum(c["grown"] for c in adjustments) > 0
    assert sum(c["pruned"] for c in adjustments) > 0
    assert swapped[3] == adjustments
    _assert_identical(reference[0], swapped[0], "decoder")
    _assert_identical(reference[1], swapped[1], "decoder_optimizer")
    for b in (0, 1):
        state = reference[2][b]
        assert int(state["optimizer"]["state"][0]["step"]) == 6  # each block took 6 Adam steps
        _assert_identical(state, swapped[2][b], f"block{b}")


def _state():
    anchors, optimizer, strategy = _block(0)
    anchors.features.sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return anchors, optimizer, strategy


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_store_round_trip(mode, tmp_path):
    anchors, optimizer, strategy = _state()
    state = block_state(anchors, optimizer, strategy)
    store = BlockStore(mode, tmp_path / "blocks" if mode == "disk" else None)
    assert store.blocks() == [] and 3 not in store
    store.put(3, state)
    store.put(7, block_state(*_block(1)))
    assert store.blocks() == [3, 7] and 3 in store and len(store) == 2
    if mode == "memory":
        assert store.nbytes() > anchors.features.numel() * 4 * 2 and store.disk_bytes() == 0
    else:
        assert store.nbytes() == 0 and store.disk_bytes() > 0
        assert store.path(3) == tmp_path / "blocks" / "block_0003.pt" and store.path(3).is_file()
    peeked = store.peek(3)
    peeked["anchors"]["features"].add_(1.0)  # a peek is a copy
    _assert_identical(store.peek(3), block_state(anchors, optimizer, strategy))
    taken = store.take(3)
    assert 3 not in store and store.blocks() == [7]
    assert mode == "memory" or not store.path(3).exists()
    _assert_identical(taken, block_state(anchors, optimizer, strategy))
    restored = restore_block(taken, CFG, "cpu")
    _assert_identical(block_state(*restored), block_state(anchors, optimizer, strategy))
    with pytest.raises(KeyError, match="not in the store"):
        store.take(3)


def test_block_state_is_a_cpu_copy_sharing_nothing():
    anchors, optimizer, strategy = _state()
    state = block_state(anchors, optimizer, strategy)
    assert state["format"] == "momentum_gs.block" and state["version"] == 1
    assert set(state) == {"format", "version", "anchors", "optimizer", "strategy"}
    adam = state["optimizer"]["state"][1]  # the feature group
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(adam) and float(adam["step"]) == 1
    before = {k: v.clone() for k, v in adam.items()}
    anchors.features.sum().backward()
    optimizer.step()  # the live moments and step move on, the saved ones do not
    assert all(torch.equal(v, before[k]) for k, v in adam.items())
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == ["offset", "feature", "scaling"]
    assert state["optimizer"]["param_groups"][0]["lr_init"] == pytest.approx(CFG.optim.offset_lr * 2.0)


def test_invalid_store_settings():
    with pytest.raises(ValueError, match="mode"):
        BlockStore("gpu")
    with pytest.raises(ValueError, match="folder"):
        BlockStore("disk")
    with pytest.raises(ValueError, match="block state"):
        restore_block({"anchors": {}}, CFG, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_restore_onto_a_gpu_and_back():
    anchors, optimizer, strategy = _state()
    state = block_state(anchors, optimizer, strategy)
    restored = restore_block(block_state(anchors, optimizer, strategy), CFG, "cuda")
    assert restored[0].features.is_cuda and restored[2].offset_visits.is_cuda
    adam = restored[1].state[restored[0].features]
    group = restored[1].param_groups[0]
    # Adam keeps its step counts on the CPU, except fused or capturable Adam (ours where torch has it): on the device
    assert adam["exp_avg"].is_cuda and adam["step"].is_cuda == bool(group.get("fused") or group.get("capturable"))
    _assert_identical(block_state(*restored), state)


@pytest.mark.slow
def test_the_trainer_gives_the_same_blocks_whether_it_parks_them_or_keeps_them_all_loaded(block_config, tmp_path,
                                                                                         monkeypatch):
    """The real trainer, 2 blocks, 1 active: parking the inactive block in host memory or on disk and
    bringing it back must give exactly what keeping both on the device gives."""
    from momentum_gs.data.scene import load_scene
    from momentum_gs.io.checkpoint import checksum
    from momentum_gs.train.placement import Placement
    from momentum_gs.train.trainer import Trainer

    scene = load_scene(block_config.data)

    def run(name: str, offload: str = "memory") -> tuple[str, int]:
        block_config.blocks.offload = offload
        trainer = Trainer(block_config, scene, tmp_path / name, torch.device("cpu"))
        trainer.train()
        return checksum(trainer.state()), trainer.placement.store.nbytes() + trainer.placement.store.disk_bytes()

    parked, parked_bytes = run("memory")
    on_disk, disk_bytes = run("disk", "disk")
    assert parked_bytes > 0 and disk_bytes > 0  # a block really waited outside the device

    def keep_everything_loaded(self, active):
        for b in active:
            if not self.blocks[b].loaded:
                self.blocks[b].load_state_dict(self.store.take(b), self.cfg, self.device)
        return [self.blocks[b] for b in active]

    monkeypatch.setattr(Placement, "activate", keep_everything_loaded)
    kept, kept_bytes = run("kept")
    assert kept_bytes == 0  # nothing parked
    assert parked == kept == on_disk
