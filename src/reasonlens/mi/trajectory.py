"""Population dependence trajectories: one statistic per aligned step across problems.

Traces have different lengths, so step states are aligned either by absolute step ``t`` (problems whose
trace is shorter than ``t`` drop out) or by relative position (the states of each trace falling in bin
``b`` of ``[0, 1)`` are averaged). :class:`AlignedStates` keeps only those reductions, so traces can be
streamed from shards one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from reasonlens.errors import UserError
from reasonlens.mi.population import GramStatistic, permutation_test_result


@dataclass(frozen=True)
class TrajectoryPoint:
    """The statistic at one aligned position: ``position`` is the step (``align="step"``) or bin index."""

    position: int
    n: int
    statistic: float
    p_value: float | None


@dataclass
class AlignedStates:
    """Accumulates per-problem aligned states ``[d]`` keyed by position.

    ``align="step"`` keeps the state at each step in ``steps`` (default: every ``stride``-th step below
    ``max_steps``); ``align="relative"`` keeps the mean state in each of ``n_bins`` relative-position bins.
    Reductions are stored as float32 in blocks of ``block_samples`` problems (a few large allocations
    rather than many small ones, which keeps the resident memory of long streams flat).
    """

    align: str = "relative"
    n_bins: int = 10
    steps: Sequence[int] | None = None
    max_steps: int = 512
    stride: int = 32
    block_samples: int = 64
    _blocks: list[torch.Tensor] = field(default_factory=list)  # [block, positions, d]
    _present: list[torch.Tensor] = field(default_factory=list)  # [block, positions] bool
    _samples: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.align not in ("step", "relative"):
            raise UserError(f"align must be 'step' or 'relative', got {self.align!r}")
        if self.align == "relative" and self.n_bins < 1:
            raise UserError(f"n_bins must be >= 1, got {self.n_bins}")
        if self.align == "step" and self.steps is None:
            if self.stride < 1:
                raise UserError(f"stride must be >= 1, got {self.stride}")
            self.steps = list(range(0, self.max_steps, self.stride))

    def positions(self) -> list[int]:
        return list(range(self.n_bins)) if self.align == "relative" else list(self.steps or [])

    def _next_row(self, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = len(self._samples) % self.block_samples
        if row == 0:
            n_pos = len(self.positions())
            self._blocks.append(torch.zeros(self.block_samples, n_pos, d, dtype=torch.float32))
            self._present.append(torch.zeros(self.block_samples, n_pos, dtype=torch.bool))
        if self._blocks[-1].shape[-1] != d:
            raise UserError(f"states have {d} coordinates, earlier traces had {self._blocks[-1].shape[-1]}")
        return self._blocks[-1][row], self._present[-1][row]

    def add(self, sample: int, states: torch.Tensor) -> None:
        """Record the aligned reductions of one trace ``states [T, d]``."""
        if states.dim() != 2:
            raise UserError(f"states must be [T, d], got shape {tuple(states.shape)}")
        length, d = states.shape
        if length == 0:
            return
        slot, present = self._next_row(d)
        if self.align == "step":
            for j, t in enumerate(self.steps or []):
                if t < length:
                    slot[j] = states[t].to(torch.float32)
                    present[j] = True
        else:
            bins = (torch.arange(length) * self.n_bins) // length  # bin of relative position t / T
            slot.index_add_(0, bins, states.to(torch.float32))
            counts = torch.bincount(bins, minlength=self.n_bins)
            slot /= counts.clamp_min(1).unsqueeze(1).to(torch.float32)
            present.copy_(counts > 0)
        self._samples.append(int(sample))

    def samples_at(self, position: int) -> tuple[list[int], torch.Tensor | None]:
        positions = self.positions()
        if position not in positions:
            return [], None
        j = positions.index(position)
        ids, rows = [], []
        for k, sample in enumerate(self._samples):
            block, row = divmod(k, self.block_samples)
            if bool(self._present[block][row, j]):
                ids.append(sample)
                rows.append(self._blocks[block][row, j])
        order = sorted(range(len(ids)), key=ids.__getitem__)
        return [ids[i] for i in order], (torch.stack([rows[i] for i in order]) if ids else None)

    def trajectory(
        self,
        golds: dict[int, torch.Tensor],
        statistic: GramStatistic = GramStatistic("hsic"),
        n_permutations: int = 0,
        seed: int = 0,
        min_samples: int = 5,
    ) -> list[TrajectoryPoint]:
        """The statistic between aligned states and gold representations at each position.

        Positions with fewer than ``min_samples`` problems (that also have a gold) are skipped.
        ``n_permutations > 0`` adds permutation p-values.
        """
        points = []
        for pos in self.positions():
            ids, states = self.samples_at(pos)
            ids_with_gold = [i for i in ids if i in golds]
            if len(ids_with_gold) < max(min_samples, 4 if statistic.unbiased else 2):
                continue
            keep = [ids.index(i) for i in ids_with_gold]
            x = states[keep]
            y = torch.stack([golds[i].to(torch.float32) for i in ids_with_gold])
            if n_permutations > 0:
                res = permutation_test_result(statistic, x, y, n_permutations, seed)
                points.append(TrajectoryPoint(pos, len(keep), res.statistic, res.p_value))
            else:
                points.append(TrajectoryPoint(pos, len(keep), statistic(x, y), None))
        return points


def population_trajectory(
    traces: Sequence[torch.Tensor],
    golds: torch.Tensor,
    align: str = "relative",
    n_bins: int = 10,
    steps: Sequence[int] | None = None,
    statistic: GramStatistic = GramStatistic("hsic"),
    n_permutations: int = 0,
    seed: int = 0,
    min_samples: int = 5,
) -> list[TrajectoryPoint]:
    """In-memory convenience: ``traces[i] [T_i, d]`` against ``golds [N, d]``."""
    if len(traces) != golds.shape[0]:
        raise UserError(f"got {len(traces)} traces but {golds.shape[0]} gold representations")
    acc = AlignedStates(
        align=align, n_bins=n_bins, steps=steps, max_steps=max((t.shape[0] for t in traces), default=0), stride=1
    )
    for i, trace in enumerate(traces):
        acc.add(i, trace)
    return acc.trajectory({i: golds[i] for i in range(len(traces))}, statistic, n_permutations, seed, min_samples)
