"""Reconstruction-guided block weighting (SPEC §3.3): blocks that fit worse get a larger loss weight.

Each block renders its validation views whenever its OWN step count reaches a multiple of
``eval_interval`` (as the paper's code does; ``BlockScheduler.due`` says which blocks are due at a global
step). The PSNR is the paper's: the mean over the colour channels of per-channel PSNR
(``losses.channel_mean_psnr``). Its mean PSNR and SSIM update an exponential moving average ONCE PER
EVALUATION (the reference code re-applies the EMA at every training step with the last, stale measurement,
which leaves almost no smoothing). With P̄, S̄ the smoothed values, δp = max P̄ − P̄_b and
δs = max S̄ − S̄_b over the evaluated blocks:

    w_b = 2 − exp(−(δp² + λ·δs²) / (2σ²))        (the best block gets 1, worse ones up to 2)

A block's weight is 1 while its own step count is within the warm-up.

Several processes: each evaluates its own blocks and writes them into a :meth:`BlockWeighting.measurements`
table; ``torch.distributed.all_reduce(table)`` (SUM) merges the tables; every process then calls
:meth:`BlockWeighting.apply` with the merged table, so the state is the same everywhere.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch


class BlockWeighting:
    """Smoothed per-block PSNR/SSIM and the loss weights derived from them.

    Args:
        num_blocks: n.
        lam: λ, weight of the squared SSIM gap (SSIM is ~100× smaller in range than PSNR in dB).
        sigma: σ in dB: the gap at which a block's weight reaches 2 − e^(−1/2) ≈ 1.39.
        ema: momentum of the smoothing (P̄ ← ema·P̄ + (1 − ema)·P); the first measurement initialises it.
        warmup_steps: a block's weight is 1 while its own step count is ≤ this.
        enabled: False → weights are always 1.
    """

    def __init__(self, num_blocks: int, lam: float = 100.0, sigma: float = 9.0, ema: float = 0.9,
                 warmup_steps: int = 1000, enabled: bool = True):
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        if sigma <= 0 or not 0.0 <= ema < 1.0:
            raise ValueError(f"need sigma > 0 and 0 <= ema < 1, got sigma={sigma}, ema={ema}")
        self.num_blocks, self.lam, self.sigma, self.ema = num_blocks, float(lam), float(sigma), float(ema)
        self.warmup_steps, self.enabled = int(warmup_steps), bool(enabled)
        self.psnr = torch.zeros(num_blocks, dtype=torch.float64)  # [n] smoothed PSNR, dB
        self.ssim = torch.zeros(num_blocks, dtype=torch.float64)  # [n] smoothed SSIM
        self.evaluations = torch.zeros(num_blocks, dtype=torch.int64)  # [n] evaluations seen

    @staticmethod
    def measurements(num_blocks: int, results: Mapping[int, tuple[float, float]]) -> torch.Tensor:
        """[3, n] float64 table of one evaluation round: rows PSNR, SSIM, count (1 where measured, else 0).

        Tables add up: summing the tables of several processes (an all-reduce) merges them; a block
        measured by two processes gets their mean in :meth:`apply`.
        """
        table = torch.zeros(3, num_blocks, dtype=torch.float64)
        for block, (p, s) in results.items():
            table[:, block] += torch.tensor([float(p), float(s), 1.0], dtype=torch.float64)
        return table

    def apply(self, table: torch.Tensor) -> None:
        """Fold one evaluation round (a :meth:`measurements` table, possibly all-reduced) into the EMA."""
        table = table.detach().to("cpu", torch.float64)
        measured = table[2] > 0
        p, s = table[0] / table[2].clamp_min(1), table[1] / table[2].clamp_min(1)
        first = measured & (self.evaluations == 0)
        later = measured & (self.evaluations > 0)
        for smoothed, value in ((self.psnr, p), (self.ssim, s)):
            smoothed[first] = value[first]
            smoothed[later] = self.ema * smoothed[later] + (1.0 - self.ema) * value[later]
        self.evaluations += measured.long()

    def update(self, block: int, psnr: float, ssim: float) -> None:
        """One evaluation of ``block`` (mean PSNR in dB and mean SSIM over its validation views)."""
        self.apply(self.measurements(self.num_blocks, {block: (psnr, ssim)}))

    def weights(self, steps: int | Sequence[int]) -> torch.Tensor:
        """[n] float32 loss weights in [1, 2).

        ``steps``: each block's own step count (one number for all blocks, or n of them). A block's weight
        is 1 while its count is within the warm-up, when weighting is disabled, or before it is evaluated.
        """
        out = torch.ones(self.num_blocks, dtype=torch.float64)
        seen = self.evaluations > 0
        if not self.enabled or not seen.any():
            return out.float()
        steps = torch.as_tensor(steps, dtype=torch.int64).expand(self.num_blocks)
        dp = self.psnr[seen].max() - self.psnr
        ds = self.ssim[seen].max() - self.ssim
        w = 2.0 - torch.exp(-(dp**2 + self.lam * ds**2) / (2.0 * self.sigma**2))
        return torch.where(seen & (steps > self.warmup_steps), w, out).float()

    def weight(self, block: int, step: int) -> float:
        """The loss weight of ``block`` at its own step ``step``."""
        return float(self.weights(step)[block])

    def report(self, steps: Sequence[int]) -> list[dict]:
        """Per block: its step count, how many validations it had, its smoothed PSNR/SSIM and its weight."""
        weights = self.weights(steps)
        return [{"block": b, "steps": int(steps[b]), "validations": int(self.evaluations[b]),
                 "psnr": round(float(self.psnr[b]), 3), "ssim": round(float(self.ssim[b]), 4),
                 "weight": round(float(weights[b]), 4)} for b in range(self.num_blocks)]

    def state_dict(self) -> dict:
        """The smoothed values and evaluation counts (plain CPU tensors)."""
        return {"psnr": self.psnr.clone(), "ssim": self.ssim.clone(), "evaluations": self.evaluations.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (for the same number of blocks)."""
        if state["psnr"].shape != self.psnr.shape:
            raise ValueError(f"state holds {state['psnr'].numel()} blocks, this weighting {self.num_blocks}")
        self.psnr = state["psnr"].detach().to("cpu", torch.float64).clone()
        self.ssim = state["ssim"].detach().to("cpu", torch.float64).clone()
        self.evaluations = state["evaluations"].detach().to("cpu", torch.int64).clone()


def validation_views(camera_indices: Sequence[int], every: int = 10) -> list[int]:
    """Every ``every``-th of a block's training views (positions 0, every, 2·every, …): its validation views.

    They are NOT removed from training, as in the paper's code: the weights compare how well blocks fit
    relative to each other, which needs no held-out data, and taking 10 % of a block's views away would
    cost reconstruction quality. ``every`` ≤ 0 → no validation views.
    """
    if every <= 0:
        return []
    return list(camera_indices)[::every]

