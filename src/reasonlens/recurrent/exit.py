"""Per-token exit criteria for adaptive recurrent depth (SPEC B3).

After each core iteration i a criterion sees the last position's raw state s_i ([B, d]) and, if it
`needs_logits`, the next-token logits decoded from s_i ([B, V]); it returns a value per row and which rows
may stop. Default thresholds (`DEFAULT_THRESHOLDS`):

- `kl`: KL(p_i || p_{i-1}) < 5e-4 (the paper's threshold); p_0 is uniform.
- `kl-reference`: KL(p_{i-1} || p_i) < 5e-4, the direction the reference's `F.kl_div` call computes.
- `entropy-diff`: |H(p_i) - H(p_{i-1})| < 1e-3 nats (reference default); H(p_0) := 100.
- `latent-diff`: ||s_i - s_{i-1}|| / ||s_i|| < 0.03 (reference default); s_0 is the initial state.
- `argmax-stability`: argmax p_i unchanged for >= 5 consecutive iterations (reference default).
- `cosine`: 1 - cos(s_i, s_{i-1}) < 1e-3 (reference default).
- `ouro-gate`: the cumulative exit probability of a learned exit gate >= 0.5 (Ouro / LoopLM models only).

With threshold 0 the strict `<` criteria never fire (values are clamped at >= 0), so decoding equals fixed
r_max. A new criterion is one `ExitCriterion` subclass decorated with `@register_criterion` (here, or in its own
module imported by `reasonlens/recurrent/__init__.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reasonlens.errors import UserError


class ExitCriterion:
    """Base class: `reset` before iteration 1 of a forward pass, then `check` after every iteration."""

    name = "base"
    default_threshold = 0.0
    needs_logits = False

    def __init__(self, threshold: float | None = None):
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise UserError(f"exit threshold for '{self.name}' must be a finite number >= 0, got {threshold}")

    def bind(self, model) -> None:
        """Called once per forward pass with the model (criteria that read model parts, e.g. an exit gate)."""

    def reset(self, initial_state: Tensor) -> None:
        raise NotImplementedError

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        """(value [B] float, exits [B] bool)."""
        raise NotImplementedError


CRITERIA: dict[str, type[ExitCriterion]] = {}
DEFAULT_THRESHOLDS: dict[str, float] = {}  # name -> the criterion's documented default, filled by registration


def register_criterion(cls: type[ExitCriterion]) -> type[ExitCriterion]:
    """Class decorator: `@register_criterion` makes `cls.name` a choice of `depth --exit` and `exit_criterion=`."""
    if cls.name in CRITERIA:
        raise ValueError(f"exit criterion '{cls.name}' is registered twice")
    CRITERIA[cls.name] = cls
    DEFAULT_THRESHOLDS[cls.name] = cls.default_threshold
    return cls


@register_criterion
class KLCriterion(ExitCriterion):
    name = "kl"
    default_threshold = 5e-4
    needs_logits = True
    reverse = False  # False: KL(p_i || p_{i-1}); True: KL(p_{i-1} || p_i)

    def reset(self, initial_state: Tensor) -> None:
        self.previous: Tensor | None = None

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        log_p = F.log_softmax(logits.float(), dim=-1)
        previous = self.previous
        if previous is None:
            previous = torch.full_like(log_p, -math.log(log_p.shape[-1]))
        current, other = (previous, log_p) if self.reverse else (log_p, previous)
        value = (current.exp() * (current - other)).sum(-1).clamp(min=0.0)
        self.previous = log_p
        return value, value < self.threshold


@register_criterion
class ReferenceKLCriterion(KLCriterion):
    name = "kl-reference"
    reverse = True


@register_criterion
class EntropyDiffCriterion(ExitCriterion):
    name = "entropy-diff"
    default_threshold = 1e-3
    needs_logits = True

    def reset(self, initial_state: Tensor) -> None:
        self.previous = torch.full((initial_state.shape[0],), 100.0, device=initial_state.device)

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        log_p = F.log_softmax(logits.float(), dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        value = (entropy - self.previous).abs()
        self.previous = entropy
        return value, value < self.threshold


@register_criterion
class LatentDiffCriterion(ExitCriterion):
    name = "latent-diff"
    default_threshold = 0.03

    def reset(self, initial_state: Tensor) -> None:
        self.previous = initial_state.detach().float().clone()

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        current = state.detach().float()
        value = (current - self.previous).norm(dim=-1) / current.norm(dim=-1).clamp(min=1e-12)
        self.previous = current.clone()
        return value, value < self.threshold


@register_criterion
class CosineCriterion(ExitCriterion):
    name = "cosine"
    default_threshold = 1e-3

    def reset(self, initial_state: Tensor) -> None:
        self.previous = initial_state.detach().float().clone()

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        current = state.detach().float()
        value = (1.0 - F.cosine_similarity(current, self.previous, dim=-1, eps=1e-12)).clamp(min=0.0)
        self.previous = current.clone()
        return value, value < self.threshold


@register_criterion
class ArgmaxStabilityCriterion(ExitCriterion):
    name = "argmax-stability"
    default_threshold = 5
    needs_logits = True

    def reset(self, initial_state: Tensor) -> None:
        batch = initial_state.shape[0]
        self.previous = torch.full((batch,), -1, dtype=torch.long, device=initial_state.device)
        self.stable = torch.zeros(batch, dtype=torch.long, device=initial_state.device)

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        current = logits.argmax(dim=-1)
        self.stable = torch.where(current == self.previous, self.stable + 1, torch.zeros_like(self.stable))
        self.previous = current
        return self.stable.float(), self.stable >= self.threshold


@register_criterion
class LearnedGateCriterion(ExitCriterion):
    """Ouro's exit rule: stop at the first loop whose cumulative exit probability reaches the threshold.

    The model's gate gives lambda_i = P(exit at loop i | not before); the exit distribution is
    p_i = lambda_i * prod_{j<i} (1 - lambda_j) and the value is its CDF, accumulated in the reference's order.
    Needs a model with `exit_gate_probability` (reasonlens.recurrent.ouro.OuroLM). Unlike the `<` criteria,
    it fires when value >= threshold: threshold 0 exits after one loop, threshold above 1 never exits early.
    """

    name = "ouro-gate"
    default_threshold = 0.5

    def bind(self, model) -> None:
        self.gate = getattr(model, "exit_gate_probability", None)
        if self.gate is None:
            raise UserError(
                f"exit criterion '{self.name}' needs a model with a learned exit gate (Ouro / LoopLM); "
                f"{type(model).__name__} has none"
            )

    def reset(self, initial_state: Tensor) -> None:
        batch = initial_state.shape[0]
        self.cdf = torch.zeros(batch, device=initial_state.device)
        self.remaining = torch.ones(batch, device=initial_state.device)

    def check(self, state: Tensor, logits: Tensor | None) -> tuple[Tensor, Tensor]:
        exit_probability = self.gate(state).to(self.cdf.device)
        self.cdf = self.cdf + exit_probability * self.remaining
        self.remaining = self.remaining * (1.0 - exit_probability)
        return self.cdf, self.cdf >= self.threshold


def make_criterion(criterion: str | ExitCriterion, threshold: float | None = None) -> ExitCriterion:
    """A fresh criterion object from its name (threshold None = its documented default) or an instance."""
    if isinstance(criterion, ExitCriterion):
        return criterion
    if criterion not in CRITERIA:
        raise UserError(f"unknown exit criterion '{criterion}' (choose from {', '.join(sorted(CRITERIA))})")
    return CRITERIA[criterion](threshold)
