"""Which k of the n blocks train at a given step, and which process trains which of them (SPEC §3.3).

The active set changes every ``interval`` steps. It is a pure function of the step (and the seed), so
there is nothing to checkpoint and every process computes the same set without communicating.
"""

from __future__ import annotations

import math

import numpy as np

POLICIES = ("round_robin", "random")
JITTER = 2.0  # ranks by which balanced_walk moves a view at random: a view swaps with its neighbour about half the time


class BlockScheduler:
    """Picks the active blocks of each round of ``interval`` steps.

    Round r covers steps r·interval + 1 … (r + 1)·interval (steps are 1-based, as in the trainer).

    - ``round_robin``: the blocks in order, k at a time, wrapping around: round r trains blocks
      (r·k + j) mod n for j < k. Over a cycle of n / gcd(n, k) rounds every block trains equally often
      (k / gcd(n, k) rounds). (The reference pins blocks to GPUs and alternates e.g. {0,2,4,6} and
      {1,3,5,7}; here n, k and the process count are independent.)
    - ``random``: k distinct blocks drawn without replacement from a generator seeded by (seed, r);
      each block is active in a round with probability k / n.

    Args:
        num_blocks: n.  active: k, 1 ≤ k ≤ n.  policy: one of ``POLICIES``.
        interval: steps per round.  seed: seed of the random policy.
        world_size: G, the number of processes that will share the active blocks (k ≥ G).
    """

    def __init__(self, num_blocks: int, active: int, policy: str = "round_robin", interval: int = 500,
                 seed: int = 0, world_size: int = 1):
        if num_blocks < 1:
            raise ValueError(f"need at least one block, got num_blocks={num_blocks}")
        if not 1 <= active <= num_blocks:
            raise ValueError(f"the number of active blocks k must be between 1 and n={num_blocks}, got {active}")
        if policy not in POLICIES:
            raise ValueError(f"unknown block policy {policy!r}; choose one of {', '.join(POLICIES)}")
        if interval < 1:
            raise ValueError(f"the block interval must be at least 1 step, got {interval}")
        _check_world(active, world_size, 0)
        self.num_blocks, self.num_active, self.policy = num_blocks, active, policy
        self.interval, self.seed = interval, seed
        self._counted = (0, [0] * num_blocks)  # (step, counts_before(step)): later calls continue from it

    def round(self, step: int) -> int:
        """Index of the round that 1-based ``step`` belongs to (step 0 counts as round 0)."""
        return (max(step, 1) - 1) // self.interval

    def changes_at(self, step: int) -> bool:
        """True when ``step`` starts a new round (blocks may have to be swapped in and out)."""
        return step <= 1 or self.round(step) != self.round(step - 1)

    @property
    def cycle_rounds(self) -> int:
        """Rounds after which ``round_robin`` repeats: n / gcd(n, k)."""
        return self.num_blocks // math.gcd(self.num_blocks, self.num_active)

    def active(self, step: int) -> list[int]:
        """The k distinct active block ids at ``step``, sorted."""
        r, n, k = self.round(step), self.num_blocks, self.num_active
        if self.policy == "round_robin":
            return sorted((r * k + j) % n for j in range(k))
        rng = np.random.default_rng([self.seed, r])
        return sorted(int(b) for b in rng.choice(n, size=k, replace=False))

    def counts_before(self, step: int) -> list[int]:
        """How many of the steps 1 … ``step`` each block was active in (its step count at that point).

        Counting continues from the previous call when ``step`` has not gone back, so asking at every step
        of a run costs O(1) per step.
        """
        step = max(step, 0)
        start, counts = self._counted if self._counted[0] <= step else (0, [0] * self.num_blocks)
        counts = list(counts)
        s = start
        while s < step:  # whole or partial rounds from s + 1 on
            end = min((self.round(s + 1) + 1) * self.interval, step)
            for b in self.active(s + 1):
                counts[b] += end - s
            s = end
        self._counted = (step, counts)
        return list(counts)

    def due(self, step: int, every: int) -> list[int]:
        """The blocks active at ``step`` whose own step count reaches a multiple of ``every`` with it.

        The paper's code validates each block at multiples of its own step count; every block that trains
        ``every`` steps is therefore validated, whatever n, k, the round length and ``every`` (testing the
        global step instead validates only the blocks that happen to be active then).
        """
        counts = self.counts_before(step)
        return [b for b in self.active(step) if counts[b] > 0 and counts[b] % every == 0]

    @staticmethod
    def assign(active: list[int], world_size: int, rank: int) -> list[int]:
        """The active blocks that process ``rank`` of ``world_size`` trains, in consecutive slices.

        With k blocks and G processes, the first k mod G ranks get ⌈k/G⌉ blocks and the others ⌊k/G⌋;
        every active block goes to exactly one rank.
        """
        _check_world(len(active), world_size, rank)
        base, extra = divmod(len(active), world_size)
        start = rank * base + min(rank, extra)
        return list(active[start:start + base + (rank < extra)])

    def blocks_for(self, step: int, world_size: int = 1, rank: int = 0) -> list[int]:
        """``assign(active(step), world_size, rank)``."""
        return self.assign(self.active(step), world_size, rank)

    def view_plan(self, start: int, end: int, cameras: list[list[int]], seed: int, world_size: int = 1,
                  rank: int = 0, views: int = 1, member: int = 0,
                  costs: list[list[float]] | None = None, per_process: int = 1,
                  deal: list[list[float]] | None = None) -> list[list[tuple[int, int]]]:
        """For global steps ``start .. end-1``: the (block, training view) pairs process ``rank`` trains.

        ``cameras[b]`` are block b's training views. A pure function of the schedule: each block walks
        through a fresh random permutation of its own views per epoch, seeded by (seed, block, epoch), so a
        resumed run (with any number of processes) sees the same views. With ``views`` views a step (processes
        that train a block together, :mod:`momentum_gs.train.views`) a block's step takes the next ``views`` of
        that walk, and ``member`` picks this process's ``per_process`` of them: the next ones, or with ``deal``
        (``deal[b][i]``: the work of ``cameras[b][i]``) those :func:`deal_by_cost` deals it. With ``costs`` (the
        same) each epoch's walk is :func:`balanced_walk`, so that a step's views cost about the same.
        """
        counts = self.counts_before(start)
        plan, orders = [], {}

        def walk(b: int, at: int) -> int:
            epoch, position = divmod(at, len(cameras[b]))
            if (b, epoch) not in orders:
                rng = np.random.default_rng([seed, b, epoch])
                orders[(b, epoch)] = (balanced_walk(costs[b], views, -epoch * len(cameras[b]) % views, rng)
                                      if costs is not None and views > 1 else
                                      rng.permutation(len(cameras[b])))
            return int(orders[(b, epoch)][position])

        for step in range(start, end):
            mine = self.blocks_for(step + 1, world_size, rank)  # steps count from 1
            entries = []
            for b in self.active(step + 1):
                if b in mine:
                    if per_process == 1:
                        picked = [walk(b, counts[b] * views + member)]
                    else:
                        taken = [walk(b, counts[b] * views + i) for i in range(views)]
                        share = (deal_by_cost([deal[b][i] for i in taken], per_process)[member] if deal is not None
                                 else range(member * per_process, (member + 1) * per_process))
                        picked = [taken[i] for i in share]
                    entries += [(b, cameras[b][i]) for i in picked]
                counts[b] += 1
            plan.append(entries)
        return plan


def deal_by_cost(costs: list[float], per_process: int) -> list[list[int]]:
    """The positions of a step's ``len(costs)`` views dealt to ``len(costs) // per_process`` processes,
    ``per_process`` each, so that their summed costs are about equal: the costliest first, each to the process with
    the least work so far among those with room (ties to the lowest rank). A step waits for its slowest process;
    the step's views, and so its gradient, are the same whoever renders them."""
    processes = len(costs) // per_process
    load, shares = [0.0] * processes, [[] for _ in range(processes)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        room = [p for p in range(processes) if len(shares[p]) < per_process]
        p = min(room, key=lambda p: (load[p], p))
        shares[p].append(i)
        load[p] += costs[i]
    return [sorted(share) for share in shares]


def balanced_walk(costs: list[float], views: int, head: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's order of ``len(costs)`` views for steps of ``views`` views, each step's views of about the same
    cost: with one process per view, a step waits for its costliest view.

    The views are sorted by cost, each rank moved by up to :data:`JITTER` ranks at random (so that a view is not
    always paired with the same one), cut into steps of ``views`` neighbours, and the steps shuffled. The epoch's
    first ``head`` positions finish a step that began in the previous epoch, and its last (n − head) mod ``views``
    begin one that ends in the next. Those take views of the middle cost, the head from the cheaper half and the
    tail from the costlier, so that such a step is balanced too and never takes one view twice.
    """
    n = len(costs)
    rank = np.argsort(np.argsort(np.asarray(costs, dtype=np.float64), kind="stable"), kind="stable")
    ordered = np.argsort(rank + rng.uniform(0.0, JITTER, n), kind="stable")
    if n < 2 * views:  # too few views to pair by cost
        return ordered
    tail = (n - head) % views
    lower, upper = ordered[rank[ordered] < n // 2], ordered[rank[ordered] >= n // 2]
    first, last = lower[len(lower) - head:], upper[:tail]
    rest = ordered[~np.isin(ordered, np.concatenate([first, last]))]
    steps = rest.reshape(-1, views)[rng.permutation(len(rest) // views)]
    return np.concatenate([first, steps.reshape(-1), last])


def _check_world(num_active: int, world_size: int, rank: int) -> None:
    """Raise a ValueError unless 1 ≤ G ≤ k and 0 ≤ rank < G."""
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if num_active < world_size:
        raise ValueError(f"{num_active} active blocks cannot keep {world_size} processes busy: "
                         f"set the number of active blocks k >= the number of processes")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
