"""Thinking-token suppression (SPEC A5) and its fair random control.

Suppression sets the logit of every id variant of each chosen word to -inf before the token is chosen.
The control suppresses the same number of *non-thinking* words drawn, word by word, from a matched
frequency band of the model's own traces (a generate run's completions): a control word is used about as
often by the model as the thinking word it stands in for, so both suppressions remove a comparable
amount of probability mass.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from reasonlens.analysis.tokens import word_variant_ids, words_ids
from reasonlens.decode.plugins import LogitsProcessor, RequestConstraints, RowState, StepState
from reasonlens.errors import UserError
from reasonlens.interventions.tokens import display_forms, trace_word_counts


class TokenSuppressor(LogitsProcessor):
    """Gives every id in `token_ids` a logit of -inf at every step (all rows)."""

    def __init__(self, token_ids: Iterable[int]):
        self.token_ids = sorted({int(i) for i in token_ids})
        self._index: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor, state: StepState) -> torch.Tensor:
        if not self.token_ids:
            return logits
        if self._index is None or self._index.device != logits.device:
            ids = [i for i in self.token_ids if i < logits.shape[-1]]
            self._index = torch.tensor(ids, dtype=torch.long, device=logits.device)
        return logits.index_fill(-1, self._index, float("-inf"))

    def request_constraints(self, row: RowState) -> RequestConstraints:
        return RequestConstraints(banned_ids=frozenset(self.token_ids))


@dataclass(frozen=True)
class ControlWord:
    """A random control word and the thinking word whose frequency it matches."""

    word: str
    frequency: int
    matches: str
    matched_frequency: int


def random_control_words(
    thinking_words: Sequence[str],
    traces: Sequence[str],
    seed: int,
    tokenizer=None,
    band: float = 2.0,
    min_length: int = 2,
) -> list[ControlWord]:
    """One non-thinking word per thinking word, drawn from words whose frequency in `traces` lies within a
    factor `band` of the thinking word's (widening to the nearest frequencies when the band is empty).

    A candidate is never a thinking word (case-insensitive) and, when `tokenizer` is given, has at least one
    token that spells it whole (suppressing a word the tokenizer always splits would ban nothing) and never
    shares an id with the thinking words (so the control cannot suppress a thinking token by accident).
    """
    if band < 1:
        raise UserError(f"--band must be >= 1, got {band}")
    counts = trace_word_counts(traces)
    forms = display_forms(traces)
    thinking_keys = {w.lower() for w in thinking_words}
    blocked_ids = set(words_ids(tokenizer, thinking_words)) if tokenizer is not None else set()
    candidates = []
    for key, count in counts.items():
        if key in thinking_keys or len(key) < min_length:
            continue
        if tokenizer is not None:
            ids = word_variant_ids(tokenizer, forms[key])
            if not ids or blocked_ids.intersection(ids):
                continue
        candidates.append((key, count))
    candidates.sort()  # deterministic order before seeded draws
    if len(candidates) < len(thinking_words):
        raise UserError(
            f"control traces have only {len(candidates)} usable non-thinking words, "
            f"need {len(thinking_words)}: use a larger generate run"
        )
    rng = random.Random(seed)
    used: set[str] = set()
    chosen: list[ControlWord] = []
    for word in thinking_words:
        target = max(counts.get(word.lower(), 0), 1)
        free = [(k, c) for k, c in candidates if k not in used]
        in_band = [(k, c) for k, c in free if target / band <= c <= target * band]
        if not in_band:
            # Nearest in log-frequency: the closest few, so the draw still has some randomness.
            free.sort(key=lambda kc: (abs(math.log(kc[1]) - math.log(target)), kc[0]))
            in_band = free[:5]
        key, count = rng.choice(in_band)
        used.add(key)
        chosen.append(ControlWord(forms[key], count, word, counts.get(word.lower(), 0)))
    return chosen


def suppression_ids(tokenizer, words: Sequence[str], include_split_starts: bool = False) -> list[int]:
    return words_ids(tokenizer, words, include_split_starts)
