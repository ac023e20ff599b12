"""Thinking-token suppression (SPEC A5) and its fair random control.

Suppression sets the logit of every id variant of each chosen word to -inf before the token is chosen.
The control suppresses the same number of *non-thinking* words drawn, word by word, from a matched
frequency band of the model's own traces (a generate run's completions): a control word is used about as
often by the model as the thinking word it stands in for, so both suppressions remove a comparable
amount of probability mass.

Neither side bans a word of the *answer format* (``\\boxed``, ...): a word the grader reads the answer from
has no substitute, so banning it removes the answer whatever it does to reasoning (on organism-reasoner
every frequency-matched draw contained ``boxed``). See :func:`answer_format_words`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
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


# The LaTeX commands reasonlens.eval.extract reads a final answer from (\boxed{..}, \fbox{..}).
GRADER_ANSWER_COMMANDS: tuple[str, ...] = ("boxed", "fbox")
_WORD = re.compile(r"[A-Za-z]+")


def answer_wrapping_words(solution: str, answer: str) -> list[str]:
    """Alphabetic words written *onto* the final answer in a reference solution: the text of the
    whitespace-delimited stretch around the last occurrence of `answer`, minus the answer itself
    (``... is \\boxed{74}.`` -> ``["boxed"]``; ``#### 72`` -> ``[]``). Empty when the solution never states it."""
    at = _last_standalone(solution, answer.strip())
    if at < 0:
        return []
    answer = answer.strip()
    end = at + len(answer)
    start = at
    while start > 0 and not solution[start - 1].isspace():
        start -= 1
    while end < len(solution) and not solution[end].isspace():
        end += 1
    wrapper = solution[start:at] + solution[at + len(answer) : end]
    return [w.lower() for w in _WORD.findall(wrapper)]


def _last_standalone(text: str, answer: str) -> int:
    """Index of the last occurrence of `answer` not inside a longer word or number ("5" in "15" or "B" in
    "Bob" does not count); -1 if none."""
    at = text.rfind(answer) if answer else -1
    while at >= 0:
        before = text[at - 1] if at > 0 else " "
        after = text[at + len(answer)] if at + len(answer) < len(text) else " "
        if not (before.isalnum() and answer[0].isalnum()) and not (after.isalnum() and answer[-1].isalnum()):
            return at
        at = text.rfind(answer, 0, at)
    return -1


def answer_format_words(solutions_and_answers: Iterable[tuple[str, str]], share: float = 0.5) -> list[str]:
    """The words of a dataset's answer format (lower case, sorted): every word written onto the gold answer
    (:func:`answer_wrapping_words`) in at least `share` of the reference solutions that state it, plus the
    grader's answer commands (:data:`GRADER_ANSWER_COMMANDS`, which it reads whatever the dataset).

    The rule reads the format from the data, not from a word list: on ``synthetic-*`` and MATH-500 it gives
    ``boxed`` (and ``fbox``); GSM8K's ``#### 72`` adds nothing."""
    glued: Counter[str] = Counter()
    stated = 0
    for solution, answer in solutions_and_answers:
        solution, answer = solution or "", (answer or "").strip()
        if _last_standalone(solution, answer) >= 0:
            stated += 1
            glued.update(set(answer_wrapping_words(solution, answer)))
    usual = {w for w, c in glued.items() if stated and c / stated >= share}
    return sorted(usual | set(GRADER_ANSWER_COMMANDS))


def without_words(words: Sequence[str], excluded: Iterable[str]) -> tuple[list[str], list[str]]:
    """`words` split into (kept, dropped) by case-insensitive membership in `excluded`, order kept."""
    keys = {w.lower() for w in excluded}
    kept = [w for w in words if w.lower() not in keys]
    dropped = [w for w in words if w.lower() in keys]
    return kept, dropped


def random_control_words(
    thinking_words: Sequence[str],
    traces: Sequence[str],
    seed: int,
    tokenizer=None,
    band: float = 2.0,
    min_length: int = 2,
    excluded: Iterable[str] = (),
) -> list[ControlWord]:
    """One non-thinking word per thinking word, drawn from words whose frequency in `traces` lies within a
    factor `band` of the thinking word's (widening to the nearest frequencies when the band is empty).

    A candidate is never a thinking word (case-insensitive) and, when `tokenizer` is given, has at least one
    token that spells it whole (suppressing a word the tokenizer always splits would ban nothing) and never
    shares an id with the thinking words (so the control cannot suppress a thinking token by accident).
    Words in `excluded` (case-insensitive; e.g. :func:`answer_format_words`) are never candidates.
    """
    if band < 1:
        raise UserError(f"--band must be >= 1, got {band}")
    counts = trace_word_counts(traces)
    forms = display_forms(traces)
    thinking_keys = {w.lower() for w in thinking_words}
    excluded_keys = {w.lower() for w in excluded}
    blocked_ids = set(words_ids(tokenizer, thinking_words)) if tokenizer is not None else set()
    candidates = []
    for key, count in counts.items():
        if key in thinking_keys or key in excluded_keys or len(key) < min_length:
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
