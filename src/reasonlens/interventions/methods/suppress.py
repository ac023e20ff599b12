"""`suppress`: logit -inf for every token that spells a chosen thinking word (SPEC A5), or for as many
frequency-matched random words (the control).

Words of the dataset's answer format (``boxed``: what the grader reads the answer from) are taken out of
both sides by default: out of the thinking words (before the top k are taken) and out of the random
candidates, so thinking and random suppression are compared on the same footing (`keep_answer_format`
turns this off)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.interventions.methods.words import (
    chosen_token_set,
    control_traces,
    identity_token_ids,
    resolve_token_ids,
)
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method
from reasonlens.interventions.suppress import (
    TokenSuppressor,
    answer_format_words,
    random_control_words,
    without_words,
)
from reasonlens.interventions.tokens import TokenSet

# Reference solutions the answer format is read from (the format is uniform; a few hundred show it).
ANSWER_FORMAT_SAMPLE = 200


@dataclass
class SuppressOptions:
    words: list[str] | None = None  # explicit word list (overrides token_set)
    token_set: Path | None = None  # token-set file from the MI analysis (default: the paper's list)
    token_set_dataset: str | None = None  # provenance override when the file does not record it
    token_set_split: str | None = None
    k: int | None = None  # number of words (top-k of the set, after the answer-format words are taken out)
    control: str = "thinking"  # thinking | random
    control_run: Path | None = None  # random: generate run whose traces give word frequencies
    band: float = 2.0  # random: frequency band factor
    seed: int = 0  # random: control draw
    split_starts: bool = False  # also ban the first piece of each split form of a word (warns)
    keep_answer_format: bool = False  # allow answer-format words (boxed, ...) on both sides


def dataset_answer_format(dataset: str, split: str) -> tuple[list[str], dict[str, Any]]:
    """The answer-format words of `dataset` (:func:`answer_format_words`), read from the reference solutions of
    its train split when it has one (else of `split`), and where they were read."""
    words, source_split, n = _answer_format(dataset, split)
    return list(words), {"dataset": dataset, "split": source_split, "n_solutions": n, "words": list(words)}


@lru_cache(maxsize=32)
def _answer_format(dataset: str, split: str) -> tuple[tuple[str, ...], str, int]:
    from reasonlens.data import dataset_info, load_problems

    info = dataset_info(dataset.split(":", 1)[0])
    source_split = "train" if info is not None and "train" in info.splits else split
    problems = load_problems(dataset, source_split, n=ANSWER_FORMAT_SAMPLE)
    return tuple(answer_format_words((p.solution, p.answer) for p in problems)), source_split, len(problems)


@register_method("suppress", "logit -inf for every token that spells a chosen word")
class Suppress(Method):
    options_type = SuppressOptions
    engines = ("hf", "vllm")

    def resolve(self, lm, options: SuppressOptions, dataset: str, split: str) -> ResolvedMethod:
        warnings: list[str] = []
        notes: list[str] = []
        provenance: dict[str, Any] = {}
        if options.control not in ("thinking", "random"):
            raise UserError(f"--control must be 'thinking' or 'random', got '{options.control}'")
        answer_words: list[str] = []
        if not options.keep_answer_format:
            answer_words, provenance["answer_format"] = dataset_answer_format(dataset, split)
        token_set = chosen_token_set(replace(options, k=None), dataset, split, provenance, warnings)
        kept, dropped = without_words(token_set.words, answer_words)
        token_set = TokenSet(kept, token_set.source)
        if options.k is not None:
            token_set = token_set.top(options.k)
        provenance["token_set"] = token_set.describe()
        words = list(token_set.words)
        identity: dict[str, Any] = {"name": self.name, "control": options.control, "k": len(words)}
        if not options.keep_answer_format:
            identity["excluded_answer_format"] = answer_words
            provenance["excluded_thinking_words"] = dropped
            notes.append(
                f"answer-format words excluded from thinking and random words: {', '.join(answer_words)}"
                + (f" (taken out of the thinking words: {', '.join(dropped)})" if dropped else "")
            )
        if options.control == "random":
            traces, source, more = control_traces(options.control_run, dataset, split)
            warnings += more
            control = random_control_words(
                words, traces, options.seed, lm.tokenizer, band=options.band, excluded=answer_words
            )
            provenance["control_run"] = source
            provenance["control_words"] = [c.__dict__ for c in control]
            identity.update(seed=options.seed, band=options.band, thinking_words=words)
            words = [c.word for c in control]
            notes.append("random control words: " + ", ".join(f"{c.word} (for {c.matches})" for c in control))
        identity["words"] = words
        entries = resolve_token_ids(lm, words, options.split_starts, identity, provenance, warnings)
        return ResolvedMethod(identity, provenance, warnings, entries, notes)

    def build(self, lm, identity, budget=None) -> list:
        return [TokenSuppressor(identity_token_ids(lm, identity))]

    def label_details(self, identity) -> list[str]:
        return [str(identity.get("control", "thinking")), f"k={identity.get('k', len(identity.get('words') or []))}"]
