"""Test-time scaling as continuation policies (SPEC A7): thinking-token scaling (TTTS) and s1 budget forcing.

Both give every row a token budget B. At B the answer is forced: the answer prompt (reference:
" Final Answer within \\boxed{}:") is injected and the model may write `answer_tokens` more tokens.
- TTTS: whenever the model stops (EOS or a stop string) before B, a thinking token is appended (the
  configured words in turn, the paper's list by default) and decoding goes on, so the whole budget is used.
- Budget forcing (s1): an early stop before the minimum `min_tokens` is replaced by "Wait" (s1's "ignore the
  end of thinking and append Wait"); with `block_eos`, an `EosBlocker` also removes EOS from the choice below
  the minimum. Stops after the minimum are final; at the cap B the answer is forced.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from reasonlens.decode.plugins import (
    Continuation,
    ContinuationPolicy,
    LogitsProcessor,
    RequestConstraints,
    RowState,
    StepState,
)
from reasonlens.errors import UserError
from reasonlens.interventions.tokens import PAPER_THINKING_WORDS

ANSWER_PROMPT = " Final Answer within \\boxed{}:"
ANSWER_TOKENS = 16


def encode_text(tokenizer, text: str) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise UserError(f"text {text!r} encodes to no tokens")
    return ids


def parse_budgets(text: str) -> list[int]:
    """'64,128,256' -> [64, 128, 256] (sorted, unique, each >= 1)."""
    try:
        budgets = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--budgets: expected comma-separated integers, got {text!r}") from None
    if not budgets or budgets[0] < 1:
        raise UserError(f"--budgets: need at least one budget >= 1, got {text!r}")
    return budgets


class _ForcedAnswer(ContinuationPolicy):
    """Shared budget and answer forcing; subclasses decide what an early stop becomes."""

    def __init__(self, tokenizer, budget: int, answer_prompt: str = ANSWER_PROMPT, answer_tokens: int = ANSWER_TOKENS):
        if budget < 1:
            raise UserError(f"budget must be >= 1, got {budget}")
        if answer_tokens < 1:
            raise UserError(f"--answer-tokens must be >= 1, got {answer_tokens}")
        self.budget = int(budget)
        self.answer_ids = encode_text(tokenizer, answer_prompt)
        self.answer_tokens = int(answer_tokens)
        self._answering: set = set()
        self._extensions: dict = {}

    def on_start(self, row: RowState) -> None:
        row.budget = self.budget
        self._answering.discard(row.key)
        self._extensions[row.key] = 0

    def on_stop(self, row: RowState, reason, state: StepState) -> Continuation | None:
        if row.key in self._answering or reason not in ("eos", "stop", "budget"):
            return None
        if reason == "budget":
            self._answering.add(row.key)
            return Continuation(
                list(self.answer_ids), extra_budget=len(self.answer_ids) + self.answer_tokens, note="force answer"
            )
        tokens = self.early_stop(row)
        if tokens is None:
            return None
        self._extensions[row.key] += 1
        return Continuation(tokens, extra_budget=0, note="extend")

    def early_stop(self, row: RowState) -> list[int] | None:  # pragma: no cover - interface
        raise NotImplementedError


class ThinkingTokenScaling(_ForcedAnswer):
    """TTTS: append a thinking token on every stop before the budget; force the answer at the budget."""

    def __init__(
        self,
        tokenizer,
        budget: int,
        words: Sequence[str] = PAPER_THINKING_WORDS,
        prefix: str = " ",
        answer_prompt: str = ANSWER_PROMPT,
        answer_tokens: int = ANSWER_TOKENS,
    ):
        super().__init__(tokenizer, budget, answer_prompt, answer_tokens)
        if not words:
            raise UserError("--words: TTTS needs at least one thinking word")
        self.word_ids = [encode_text(tokenizer, prefix + word) for word in words]

    def early_stop(self, row: RowState) -> list[int] | None:
        if row.n_generated >= row.budget:
            return None
        return list(self.word_ids[self._extensions[row.key] % len(self.word_ids)])


class BudgetForcing(_ForcedAnswer):
    """s1 budget forcing: "Wait" replaces stops before `min_tokens`; the answer is forced at `budget`."""

    def __init__(
        self,
        tokenizer,
        budget: int,
        min_tokens: int,
        wait: str = "Wait",
        prefix: str = " ",
        answer_prompt: str = ANSWER_PROMPT,
        answer_tokens: int = ANSWER_TOKENS,
        max_waits: int | None = None,
    ):
        super().__init__(tokenizer, budget, answer_prompt, answer_tokens)
        if not 0 <= min_tokens <= budget:
            raise UserError(f"minimum budget must be in [0, {budget}], got {min_tokens}")
        if max_waits is not None and max_waits < 1:
            raise UserError(f"--max-waits must be >= 1, got {max_waits}")
        self.min_tokens = int(min_tokens)
        self.max_waits = max_waits  # s1 ignores the end of thinking a fixed number of times; None: no limit
        self.wait_ids = encode_text(tokenizer, prefix + wait)

    def early_stop(self, row: RowState) -> list[int] | None:
        if self.max_waits is not None and self._extensions[row.key] >= self.max_waits:
            return None
        return list(self.wait_ids) if row.n_generated < self.min_tokens else None


class EosBlocker(LogitsProcessor):
    """EOS ids get logit -inf in rows that have generated fewer than `min_tokens` tokens."""

    def __init__(self, eos_ids: Iterable[int], min_tokens: int):
        self.eos_ids = sorted({int(i) for i in eos_ids})
        self.min_tokens = int(min_tokens)

    def __call__(self, logits: torch.Tensor, state: StepState) -> torch.Tensor:
        if not self.eos_ids:
            return logits
        young = torch.tensor([r.n_generated < self.min_tokens for r in state.rows], device=logits.device)
        if not young.any():
            return logits
        logits = logits.clone()
        ids = torch.tensor(self.eos_ids, device=logits.device)
        rows = young.nonzero().flatten()
        logits[rows[:, None], ids[None, :]] = float("-inf")
        return logits

    def request_constraints(self, row: RowState) -> RequestConstraints:
        # an engine's EOS is the model's EOS: the same ids this processor was built with (lm.eos_token_ids())
        return RequestConstraints(min_tokens=self.min_tokens if self.eos_ids else 0)


def min_tokens_for(budget: int, min_fraction: float) -> int:
    if not 0.0 <= min_fraction <= 1.0:
        raise UserError(f"--min-fraction must be in [0, 1], got {min_fraction}")
    return int(round(budget * min_fraction))
