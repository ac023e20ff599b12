"""Randomized-depth training of the recurrent-depth LM (SPEC B2)."""

from __future__ import annotations

import math

import torch


def sample_depth(mean_recurrence: float, sigma: float = 0.5, generator: torch.Generator | None = None) -> int:
    """r = 1 + Poisson(rate), rate ~ LogNormal(ln(mean) - sigma^2 / 2, sigma) (huginn's sampler; E[rate] = mean)."""
    mu = math.log(max(mean_recurrence, 1e-6)) - sigma**2 / 2
    rate = torch.exp(mu + sigma * torch.randn((), generator=generator))
    return int(torch.poisson(rate.reshape(1), generator=generator).item()) + 1
