"""Growing, pruning, the statistics and the one parameter-surgery helper."""

import math

import pytest
import torch

from momentum_gs.config import OptimConfig, StrategyConfig
from momentum_gs.model import (
    AnchorSet,
    Decoder,
    GrowPruneStrategy,
    expon_lr,
    generate_gaussians,
    grow_cells,
    make_anchor_optimizer,
    make_decoder_optimizer,
    param_group,
    replace_rows,
    update_learning_rates,
)
from momentum_gs.data.camera import Camera

CFG = StrategyConfig(update_interval=100, init_factor=16, hierarchy_factor=4, levels=3)


def _line_of_anchors(n=4, k=4, feat_dim=3) -> AnchorSet:
    """n anchors 10 units apart on the x axis, voxel 0.1 (cells 1.6, 0.4, 0.1), unit offset scales."""
    positions = torch.stack([torch.tensor([10.0 * i, 0.0, 0.0]) for i in range(n)])
    anchors = AnchorSet(positions, voxel_size=0.1, feat_dim=feat_dim, n_offsets=k, scalings=torch.zeros(n, 6))
    with torch.no_grad():
        anchors.features.copy_(torch.arange(n * feat_dim, dtype=torch.float32).reshape(n, feat_dim))
        # children 3 units up (+y) from their anchor, spread along z: away from every existing cell
        anchors.offsets.copy_(torch.tensor([[0.0, 3.0, 2.0 * j] for j in range(k)]).expand(n, k, 3))
    return anchors


def _two_anchor_model():
    """Two anchors in front of an identity camera, k = 2; the decoder keeps child 0 and drops child 1."""
    anchors = AnchorSet(torch.tensor([[0.0, 0.0, 4.0], [0.5, -0.5, 6.0]]), voxel_size=0.1, feat_dim=4, n_offsets=2)
    decoder = Decoder(feat_dim=4, n_offsets=2, hidden_dim=8)
    with torch.no_grad():
        decoder.mlp_opacity[2].weight.zero_()
        decoder.mlp_opacity[2].bias.copy_(torch.tensor([0.5, -0.5]))
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 25.0], [0.0, 0.0, 1.0]])
    return anchors, decoder, Camera("view.png", 100, 50, K, torch.eye(4))


def _fake_stats(strategy, anchors, hot_anchor, grad=1e-2, visits=60):
    """Every child seen `visits` times; the children of `hot_anchor` with a high mean gradient."""
    k = anchors.n_offsets
    strategy.offset_visits[:] = visits
    strategy.offset_grad_accum[:] = 1e-6 * visits
    strategy.offset_grad_accum[hot_anchor * k:(hot_anchor + 1) * k] = grad * visits


def test_growing_only_where_gradients_are_high():
    anchors = _line_of_anchors()
    optimizer = make_anchor_optimizer(anchors, OptimConfig(), extent=1.0)
    strategy = GrowPruneStrategy(CFG, anchors, seed=0)
    _fake_stats(strategy, anchors, hot_anchor=1)
    hot_children = anchors.child_positions()[1].detach().clone()
    counts = strategy.adjust(anchors, optimizer)
    assert counts["grown"] > 0 and counts["pruned"] == 0
    new = anchors.positions[4:]
    assert new.shape[0] == counts["grown"] and anchors.num_anchors == 4 + counts["grown"]
    # every new anchor sits in a cell (≤ 1.6 wide) around a hot child, none near the cold anchors' children
    nearest = torch.cdist(new, hot_children).min(dim=1).values
    assert torch.all(nearest <= 0.8 * math.sqrt(3) + 1e-5)
    # new rows: features of their parent (anchor 1), zero offsets, log-scale = log(cell size)
    assert torch.all(anchors.features[4:] == anchors.features[1])
    assert torch.all(anchors.offsets[4:] == 0)
    sizes = {round(math.exp(s), 5) for s in anchors.scalings[4:, 0].tolist()}
    assert sizes <= {1.6, 0.4, 0.1}
    # statistics were reset for the eligible children and padded for the new anchors
    assert strategy.offset_visits.shape == (anchors.num_anchors * 4,) and strategy.offset_visits.sum() == 0


def test_no_growth_below_threshold_or_without_enough_visits():
    anchors = _line_of_anchors()
    strategy = GrowPruneStrategy(CFG, anchors, seed=0)
    _fake_stats(strategy, anchors, hot_anchor=1, grad=1e-4)  # below 0.0002
    assert strategy.adjust(anchors, None)["grown"] == 0
    _fake_stats(strategy, anchors, hot_anchor=1, grad=1e-2, visits=40)  # needs > 100 · 0.8 · 0.5 = 40
    assert strategy.adjust(anchors, None)["grown"] == 0 and anchors.num_anchors == 4


def test_new_feature_is_max_of_parents():
    features = torch.tensor([[1.0, 5.0, -2.0], [3.0, 0.0, -1.0], [9.0, 9.0, 9.0]])
    child_pos = torch.tensor([[5.0, 5.0, 5.0], [5.1, 4.9, 5.0], [20.0, 0.0, 0.0]])
    parents = torch.tensor([0, 1, 2])
    occupied = torch.tensor([[0.0, 0.0, 0.0], [20.2, 0.1, 0.0]])  # the third child's cell is taken
    positions, new_features = grow_cells(child_pos, parents, features, occupied, cell_size=1.0)
    torch.testing.assert_close(positions, torch.tensor([[5.0, 5.0, 5.0]]))
    torch.testing.assert_close(new_features, torch.tensor([[3.0, 5.0, -1.0]]))


def test_pruning_removes_transparent_anchors():
    anchors = _line_of_anchors(n=4)
    kept_features = anchors.features[[0, 2, 3]].detach().clone()
    strategy = GrowPruneStrategy(CFG, anchors, seed=0)
    strategy.anchor_visits[:] = torch.tensor([100.0, 100.0, 100.0, 10.0])
    strategy.opacity_accum[:] = torch.tensor([50.0, 0.1, 0.5, 0.0])  # anchor 1: 0.001 per visit < 0.005
    # anchor 3 is transparent too but seen only 10 times (needs > 80): kept
    optimizer = make_anchor_optimizer(anchors, OptimConfig(), extent=1.0)
    counts = strategy.adjust(anchors, optimizer)
    assert counts == {"grown": 0, "pruned": 1}
    torch.testing.assert_close(anchors.features.detach(), kept_features)
    assert strategy.anchor_visits.tolist() == [0.0, 0.0, 10.0]  # settled anchors reset, others kept
    assert param_group(optimizer, "feature")["params"][0] is anchors.features


def test_surgery_keeps_moments_and_zeroes_new_rows():
    anchors = _line_of_anchors(n=3, k=2)
    optimizer = make_anchor_optimizer(anchors, OptimConfig(), extent=2.0)
    (anchors.features.square().sum() + anchors.offsets.sum() + anchors.scalings.sum()).backward()
    optimizer.step()
    old = anchors.features
    old_state = {key: value.clone() for key, value in optimizer.state[old].items()}
    keep = torch.tensor([True, False, True])
    new = replace_rows(optimizer, "feature", keep=keep, append=torch.ones(2, 3))
    assert param_group(optimizer, "feature")["params"][0] is new and old not in optimizer.state
    state = optimizer.state[new]
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(state[key][:2], old_state[key][keep])
        assert torch.all(state[key][2:] == 0)
    torch.testing.assert_close(new.detach(), torch.cat([old.detach()[keep], torch.ones(2, 3)]))
    assert torch.all(new.grad[2:] == 0) and state["step"] == old_state["step"]


def test_adjusted_anchors_keep_training():
    anchors = _line_of_anchors()
    optimizer = make_anchor_optimizer(anchors, OptimConfig(), extent=1.0)
    strategy = GrowPruneStrategy(CFG, anchors, seed=0)
    anchors.features.sum().backward()
    optimizer.step()
    _fake_stats(strategy, anchors, hot_anchor=2)
    strategy.adjust(anchors, optimizer)
    for group, attr in (("offset", "offsets"), ("feature", "features"), ("scaling", "scalings")):
        assert param_group(optimizer, group)["params"][0] is getattr(anchors, attr)
    optimizer.zero_grad()
    before = anchors.features.detach().clone()
    anchors.features.sum().backward()
    optimizer.step()
    assert torch.all(anchors.features.detach() != before)  # old and new rows all move


def test_growth_is_reproducible_with_a_seed():
    results = []
    for _ in range(2):
        anchors = _line_of_anchors(k=16)
        strategy = GrowPruneStrategy(CFG, anchors, seed=7)
        _fake_stats(strategy, anchors, hot_anchor=0, grad=5e-4)  # only levels 0 and 1 qualify
        strategy.adjust(anchors, None)
        results.append(anchors.positions.clone())
    assert results[0].shape[0] > 4
    torch.testing.assert_close(results[0], results[1])


def test_step_stats_accumulate_in_ndc_units():
    anchors, decoder, cam = _two_anchor_model()
    neural = generate_gaussians(anchors, decoder, cam)  # kept children: global 0 and 2
    strategy = GrowPruneStrategy(CFG, anchors)
    grad = torch.tensor([[0.03, 0.0], [0.0, 0.04]])
    strategy.step_stats(neural, torch.tensor([3, 0]), grad, cam.width, cam.height)
    torch.testing.assert_close(strategy.offset_grad_accum, torch.tensor([1.5, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(strategy.offset_visits, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(strategy.anchor_visits, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(strategy.opacity_accum, torch.full((2,), math.tanh(0.5)))


def test_schedule_windows_and_state_round_trip():
    strategy = GrowPruneStrategy(StrategyConfig(start_stat=500, update_from=300, update_interval=25,
                                                update_until=30_000), _line_of_anchors())
    assert not strategy.should_adjust(500) and strategy.should_adjust(525) and not strategy.should_adjust(530)
    assert strategy.should_collect(501) and not strategy.should_collect(30_000)
    state = strategy.state_dict()
    first = torch.rand(3, generator=strategy.generator)
    strategy.offset_visits += 5
    strategy.load_state_dict(state)
    assert strategy.offset_visits.sum() == 0
    torch.testing.assert_close(torch.rand(3, generator=strategy.generator), first)


def test_learning_rate_schedules():
    assert expon_lr(0, 0.01, 1e-4, 100) == pytest.approx(0.01)
    assert expon_lr(50, 0.01, 1e-4, 100) == pytest.approx(1e-3)
    assert expon_lr(500, 0.01, 1e-4, 100) == pytest.approx(1e-4)
    anchors = _line_of_anchors()
    cfg = OptimConfig(steps=100, lr_max_steps=0)  # 0: decay over the run's own steps
    assert OptimConfig().lr_max_steps == 30_000  # SPEC: decays over 30k steps, flat after
    anchor_opt = make_anchor_optimizer(anchors, cfg, extent=3.0)
    decoder_opt = make_decoder_optimizer(Decoder(feat_dim=3, n_offsets=4), torch.nn.Embedding(5, 2), cfg)
    assert [g["name"] for g in decoder_opt.param_groups] == ["mlp_opacity", "mlp_cov", "mlp_color", "appearance"]
    assert decoder_opt.defaults["eps"] == 1e-15 and anchor_opt.defaults["eps"] == 1e-15
    update_learning_rates(anchor_opt, 100)
    update_learning_rates(decoder_opt, 50)
    assert param_group(anchor_opt, "offset")["lr"] == pytest.approx(1e-4 * 3.0)
    assert param_group(anchor_opt, "feature")["lr"] == pytest.approx(0.0075)
    assert param_group(decoder_opt, "mlp_opacity")["lr"] == pytest.approx(math.sqrt(0.002 * 2e-5))
