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
    """

    align: str = "relative"
    n_bins: int = 10
    steps: Sequence[int] | None = None
    max_steps: int = 512
    stride: int = 32
    _states: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)  # position -> sample -> [d]

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

    def add(self, sample: int, states: torch.Tensor) -> None:
        """Record the aligned reductions of one trace ``states [T, d]``."""
        if states.dim() != 2:
            raise UserError(f"states must be [T, d], got shape {tuple(states.shape)}")
        length = states.shape[0]
        if length == 0:
            return
        states = states.detach().to(torch.float32)
        if self.align == "step":
            for t in self.steps or []:
                if t < length:
                    self._states.setdefault(t, {})[sample] = states[t].clone()
            return
        bins = (torch.arange(length) * self.n_bins) // length  # bin of relative position t / T
        for b in range(self.n_bins):
            mask = bins == b
            if bool(mask.any()):
                self._states.setdefault(b, {})[sample] = states[mask].mean(dim=0)

    def samples_at(self, position: int) -> tuple[list[int], torch.Tensor | None]:
        by_sample = self._states.get(position, {})
        ids = sorted(by_sample)
        return ids, (torch.stack([by_sample[i] for i in ids]) if ids else None)

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
    acc = AlignedStates(align=align, n_bins=n_bins, steps=steps,
                        max_steps=max((t.shape[0] for t in traces), default=0), stride=1)
    for i, trace in enumerate(traces):
        acc.add(i, trace)
    return acc.trajectory({i: golds[i] for i in range(len(traces))}, statistic, n_permutations, seed, min_samples)
