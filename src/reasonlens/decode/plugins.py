"""Plug-in interfaces of the one decode loop.

Four kinds, called in this order each step:
1. LogitsProcessor: edit next-token logits before the choice (suppression, EOS blocking).
2. LayerRerun: pick rows whose current position is recomputed with one decoder layer applied again
   (Representation Recycling); the loop rolls the KV cache back and emits from the second pass.
3. Observer: sees the hidden states that predicted the chosen tokens (capture, accounting).
4. ContinuationPolicy: when a row would stop, inject tokens and extend its budget instead (TTTS, budget forcing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

StopReason = Literal["eos", "stop", "budget"]


@dataclass
class RowState:
    """One sequence in the batch, as the plug-ins see it."""

    row: int  # position in the batch now (rows may join and leave the batch between steps)
    key: Any  # caller's identifier for the sample (e.g. dataset index)
    prompt_ids: list[int]
    budget: int  # max new tokens for this row; continuation policies may raise it
    token_ids: list[int] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)
    queue: deque = field(default_factory=deque)  # tokens to inject, fed one per step
    finished: bool = False
    stop_reason: str | None = None
    events: list[dict] = field(default_factory=list)
    n_continuations: int = 0

    @property
    def n_generated(self) -> int:
        return len(self.token_ids)


@dataclass
class StepState:
    """What every plug-in can read at a decode step."""

    step: int
    rows: list[RowState]
    active: torch.Tensor  # BoolTensor[B]: rows still generating
    lm: Any  # reasonlens.models.LoadedModel
    model_output: Any = None  # the last forward's output object (models may attach extras, e.g. iterations used)
    forced: torch.Tensor | None = None  # BoolTensor[B]: this step's token was injected, not chosen


@dataclass
class Continuation:
    """Tokens to inject after a stop, and how many more tokens the row may then generate."""

    tokens: list[int]
    extra_budget: int = 0
    note: str = ""


class LogitsProcessor:
    def __call__(self, logits: torch.Tensor, state: StepState) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Observer:
    """Receives, after each step, the states at chosen layers that predicted the chosen tokens."""

    layers: list = []  # layer keys (int index or "final") whose last-position states this observer wants

    def on_step(self, state: StepState, hidden: dict, tokens: torch.Tensor) -> None:
        pass

    def on_finish(self, row: RowState) -> None:
        pass


class LayerRerun:
    """Recompute the current position with decoder layer `layer` applied `1 + repeats` times in selected rows."""

    layer: int = 0
    repeats: int = 1

    def select(self, state: StepState, proposed: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class ContinuationPolicy:
    def on_stop(self, row: RowState, reason: StopReason, state: StepState) -> Continuation | None:
        return None

    def on_start(self, row: RowState) -> None:
        """Called once per row before decoding (policies may set the row's budget)."""
