"""Plug-in interfaces of the one decode loop (and of every engine that reproduces it).

Six kinds (`PLUGIN_KINDS`); each step the loop consults them in this order:
1. HiddenStateHook: reads or rewrites the hidden state at named hook points (`blocks.{l}.resid_post`, ...)
   during every forward (steering, activation patching).
2. LogitsProcessor: edit next-token logits before the choice (suppression, EOS blocking).
3. LayerRerun: pick rows whose current position is recomputed with one decoder layer applied again
   (Representation Recycling); the loop rolls the KV cache back and emits from the second pass.
4. Observer: sees the hidden states that predicted the chosen tokens (capture, accounting).
5. StoppingRule: decides whether a row stops after its newest token (EOS, stop strings, the token budget are
   the built-in rules; yours are consulted after them).
6. ContinuationPolicy: when a row would stop, inject tokens and extend its budget instead (TTTS, budget forcing).

Rows are `RowState`s: the same objects whichever engine generates (the vLLM engine drives the same stopping
rules and continuation policies through `decode.rows`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

import torch

StopReason = Literal["eos", "stop", "budget"]  # the built-in rules' reasons; a custom rule may name its own


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
class ForwardContext:
    """What a hidden-state hook knows about the forward it runs in."""

    rows: list[RowState]  # the rows of this forward, in batch order (a prefill of joining rows holds only them)
    positions: torch.Tensor  # LongTensor[B, S]: each column's position in its row (0 = first prompt token); -1: padding


@dataclass
class Continuation:
    """Tokens to inject after a stop, and how many more tokens the row may then generate."""

    tokens: list[int]
    extra_budget: int = 0
    note: str = ""


@dataclass(frozen=True)
class RequestConstraints:
    """A logits processor's effect over one whole request, for an engine that cannot call it every step (vLLM):
    ids never chosen, and EOS impossible until the row holds `min_tokens` generated tokens."""

    banned_ids: frozenset[int] = frozenset()
    min_tokens: int = 0


class LogitsProcessor:
    def __call__(self, logits: torch.Tensor, state: StepState) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def request_constraints(self, row: RowState) -> RequestConstraints | None:
        """This processor's effect on `row` from its current length to the end of the next request, for engines
        that decode a request without the loop; None: it needs the loop (such engines refuse it)."""
        return None


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


class HiddenStateHook:
    """Reads, or rewrites, the hidden state at named hook points (`models.hooks.HOOK_POINTS`) in every forward.

    `__call__` gets the point's name, its hidden state [B, S, d] (all positions of the forward: the prompt at
    prefill, one position per row at a step) and the forward's rows and positions; it returns None to leave
    the state as it is, or a tensor of the same shape that replaces it downstream.
    """

    points: Sequence[str] = ()

    def __call__(
        self, point: str, hidden: torch.Tensor, context: ForwardContext
    ) -> torch.Tensor | None:  # pragma: no cover - interface
        raise NotImplementedError


class StoppingRule:
    """Whether a row stops after its newest token (`row.token_ids[-1]`, `row.forced[-1]`), per row like HF's
    `StoppingCriteria`. A firing rule's `reason` goes to the continuation policies, which may keep the row going.

    `drops_token`: the stopping token itself is withheld while the policies decide, and a continuation takes its
    place (EOS); the rule is then asked before the token is appended for good.
    """

    reason: str = "stop"
    drops_token: bool = False

    def __call__(self, row: RowState, state: StepState) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class ContinuationPolicy:
    def on_stop(self, row: RowState, reason: str, state: StepState) -> Continuation | None:
        return None

    def on_start(self, row: RowState) -> None:
        """Called once per row before decoding (policies may set the row's budget)."""


# -- the built-in stopping rules --------------------------------------------------------------------------------


class EosStop(StoppingRule):
    """A chosen (not injected) end-of-sequence token stops the row; a continuation replaces it."""

    reason = "eos"
    drops_token = True

    def __init__(self, eos_ids: Iterable[int]):
        self.eos_ids = frozenset(int(i) for i in eos_ids)

    def __call__(self, row: RowState, state: StepState) -> bool:
        return not row.forced[-1] and row.token_ids[-1] in self.eos_ids


class StopStrings(StoppingRule):
    """A chosen token that completes one of `strings` in the decoded text stops the row."""

    reason = "stop"

    def __init__(self, strings: Sequence[str], tokenizer):
        self.strings = tuple(strings)
        self.tokenizer = tokenizer
        self.window = max((len(s) for s in self.strings), default=0) + 8  # tokens decoded: >= 1 char each

    def __call__(self, row: RowState, state: StepState) -> bool:
        if row.forced[-1] or not self.strings:
            return False
        tail = self.tokenizer.decode(row.token_ids[-self.window :], skip_special_tokens=True)
        return any(s in tail for s in self.strings)


class TokenBudget(StoppingRule):
    """The row has used its budget (`RowState.budget`, which policies may raise) and has nothing left to inject."""

    reason = "budget"

    def __call__(self, row: RowState, state: StepState) -> bool:
        return row.n_generated >= row.budget and not row.queue


PLUGIN_KINDS: tuple[type, ...] = (
    HiddenStateHook,
    LogitsProcessor,
    LayerRerun,
    Observer,
    StoppingRule,
    ContinuationPolicy,
)


def split_plugins(plugins: Sequence[Any]) -> dict[type, list]:
    """The plug-ins of each kind in `PLUGIN_KINDS`, in the order given; anything else is refused."""
    by_kind: dict[type, list] = {kind: [] for kind in PLUGIN_KINDS}
    for plugin in plugins:
        kinds = [kind for kind in PLUGIN_KINDS if isinstance(plugin, kind)]
        if not kinds:
            names = ", ".join(k.__name__ for k in PLUGIN_KINDS)
            raise TypeError(f"{type(plugin).__name__} is not a decode plug-in ({names})")
        for kind in kinds:
            by_kind[kind].append(plugin)
    return by_kind
