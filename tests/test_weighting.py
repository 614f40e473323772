"""Reconstruction-guided block weighting: the formula, warm-up, switching off, once-per-evaluation EMA."""

import math

import pytest
import torch

from momentum_gs.train.weighting import BlockWeighting, validation_views


def test_weights_against_a_hand_calculation():
    weighting = BlockWeighting(3, lam=100, sigma=9, ema=0.9, warmup_steps=1000)
    weighting.update(0, psnr=25.0, ssim=0.8)
    weighting.update(1, psnr=22.0, ssim=0.7)  # block 2 never evaluated
    w = weighting.weights(1001)
    expected_1 = 2.0 - math.exp(-(3.0**2 + 100 * 0.1**2) / (2 * 9.0**2))
    assert w.dtype == torch.float32 and w.shape == (3,)
    assert w[0] == 1.0 and w[2] == 1.0
    assert float(w[1]) == pytest.approx(expected_1, rel=1e-6)
    assert weighting.weight(1, 5000) == pytest.approx(expected_1, rel=1e-6)


def test_warm_up_disabled_and_no_evaluations_give_ones():
    weighting = BlockWeighting(2, warmup_steps=1000)
    assert torch.equal(weighting.weights(5000), torch.ones(2))  # nothing evaluated yet
    weighting.update(0, 30.0, 0.9)
    weighting.update(1, 20.0, 0.6)
    assert torch.equal(weighting.weights(1000), torch.ones(2))  # w = 1 for steps <= warm-up
    assert weighting.weights(1001)[1] > 1.4 and weighting.weights(1001)[0] == 1.0
    off = BlockWeighting(2, enabled=False)
    off.update(0, 30.0, 0.9)
    off.update(1, 20.0, 0.6)
    assert torch.equal(off.weights(10_000), torch.ones(2))


def test_ema_runs_once_per_evaluation_not_per_step():
    weighting = BlockWeighting(2, ema=0.9, warmup_steps=0)
    weighting.update(0, 20.0, 0.5)
    assert weighting.psnr[0] == 20.0 and weighting.ssim[0] == 0.5  # first update initialises
    weighting.update(0, 30.0, 0.6)
    assert float(weighting.psnr[0]) == pytest.approx(0.9 * 20 + 0.1 * 30)
    assert float(weighting.ssim[0]) == pytest.approx(0.9 * 0.5 + 0.1 * 0.6)
    state = weighting.state_dict()
    for step in range(1, 200):  # asking for weights every step changes nothing
        weighting.weights(step)
    assert all(torch.equal(state[k], v) for k, v in weighting.state_dict().items())
    assert weighting.evaluations.tolist() == [2, 0]


def test_merging_tables_from_several_processes_equals_one_process():
    single = BlockWeighting(4)
    for block, (p, s) in {0: (21.0, 0.7), 3: (24.0, 0.8)}.items():
        single.update(block, p, s)
    single.update(1, 23.0, 0.75)
    # two processes evaluate different blocks; summing their tables is what all_reduce(SUM) does
    merged = [BlockWeighting(4), BlockWeighting(4)]
    round_1 = BlockWeighting.measurements(4, {0: (21.0, 0.7)}) + BlockWeighting.measurements(4, {3: (24.0, 0.8)})
    round_2 = BlockWeighting.measurements(4, {1: (23.0, 0.75)}) + BlockWeighting.measurements(4, {})
    for weighting in merged:
        weighting.apply(round_1)
        weighting.apply(round_2)
        assert torch.equal(weighting.weights(2000), single.weights(2000))
        assert all(torch.equal(single.state_dict()[k], v) for k, v in weighting.state_dict().items())
    # a block measured by two processes gets their mean
    both = BlockWeighting(2)
    both.apply(BlockWeighting.measurements(2, {0: (20.0, 0.5)}) + BlockWeighting.measurements(2, {0: (22.0, 0.7)}))
    assert float(both.psnr[0]) == pytest.approx(21.0) and float(both.ssim[0]) == pytest.approx(0.6)
    assert both.evaluations.tolist() == [1, 0]


def test_state_dict_round_trip_and_checks():
    a = BlockWeighting(3)
    a.update(2, 19.0, 0.4)
    b = BlockWeighting(3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.weights(5000), b.weights(5000)) and b.evaluations.tolist() == [0, 0, 1]
    with pytest.raises(ValueError):
        BlockWeighting(2).load_state_dict(a.state_dict())
    with pytest.raises(ValueError):
        BlockWeighting(2, sigma=0)


def test_validation_views_are_every_tenth():
    assert validation_views(list(range(25))) == [0, 10, 20]
    assert validation_views([7, 9, 12, 30], every=2) == [7, 12]
    assert validation_views([3]) == [3] and validation_views([]) == [] and validation_views([1, 2], every=0) == []


def test_warm_up_counts_each_blocks_own_steps():
    weighting = BlockWeighting(2, warmup_steps=100)
    weighting.update(0, 30.0, 0.9)
    weighting.update(1, 20.0, 0.6)
    w = weighting.weights([500, 100])  # block 1 has trained only 100 of its own steps
    assert w[1] == 1.0
    assert weighting.weights([500, 101])[1] > 1.4
    assert weighting.weight(1, 101) == float(weighting.weights(101)[1])


def test_channel_mean_psnr_is_the_mean_of_per_channel_psnrs():
    from momentum_gs.losses import channel_mean_psnr, psnr

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(20, 30, 3, generator=g)
    noisy = gt + torch.randn(20, 30, 3, generator=g) * torch.tensor([0.01, 0.03, 0.06])
    per_channel = [float(psnr(noisy[..., c:c + 1], gt[..., c:c + 1])) for c in range(3)]
    assert float(channel_mean_psnr(noisy, gt)) == pytest.approx(sum(per_channel) / 3, abs=1e-4)
    assert float(channel_mean_psnr(noisy, gt)) > float(psnr(noisy, gt)) + 1.0  # unequal channel errors


def _shipped_schedules():
    """(name, n, k, interval, eval_interval, steps per block) of every shipped config that weights blocks,
    and of the ablation row f at the lengths scripts/ablation.py is run with."""
    import sys
    from pathlib import Path

    from momentum_gs.config import SHIPPED, load_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import ablation
    finally:
        sys.path.pop(0)
    out = []
    for path in sorted((SHIPPED / "datasets").glob("*.yaml")):
        cfg = load_config(path)
        n = cfg.partition.blocks or int(torch.tensor(cfg.partition.grid).prod())
        out.append((path.stem, n, cfg.blocks.active, cfg.blocks.interval, cfg.weighting.eval_interval, cfg.optim.steps))
    for steps in (300, 500, 600, 1000, 1500, 3000):
        cfg = load_config(SHIPPED / "ablation" / "f_full8.yaml", ablation.schedule_overrides(steps))
        out.append((f"ablation f, {steps} steps", ablation.ROWS["f"][1], cfg.blocks.active, cfg.blocks.interval,
                    cfg.weighting.eval_interval, steps))
    demo = load_config(SHIPPED / "demo.yaml")
    out.append(("demo", int(demo.blocks.partition.split(":")[1]), demo.blocks.active, demo.blocks.interval,
                demo.weighting.eval_interval, demo.optim.steps))
    return out


@pytest.mark.parametrize("name, n, k, interval, every, steps", _shipped_schedules())
def test_every_block_is_validated_in_every_shipped_config(name, n, k, interval, every, steps):
    """Each block is validated at multiples of its own step count: steps // every times, whatever n and k.
    (Testing the global step instead validated only blocks 4-7 of the 8-block paper configs.)"""
    from momentum_gs.train.scheduler import BlockScheduler

    scheduler = BlockScheduler(n, k, "round_robin", interval)
    total = -(-steps * n // k)
    validations = [0] * n
    for step in range(1, total + 1):
        for b in scheduler.due(step, every):
            validations[b] += 1
    counts = scheduler.counts_before(total)
    assert min(validations) >= 1, (name, validations)
    assert validations == [c // every for c in counts], name
