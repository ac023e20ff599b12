"""`suppress`: logit -inf for every token that spells a chosen thinking word (SPEC A5), or for as many
frequency-matched random words (the control)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.interventions.methods.words import chosen_token_set, control_traces, resolve_token_ids
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method
from reasonlens.interventions.suppress import TokenSuppressor, random_control_words, suppression_ids


@dataclass
class SuppressOptions:
    words: list[str] | None = None  # explicit word list (overrides token_set)
    token_set: Path | None = None  # token-set file from the MI analysis (default: the paper's list)
    token_set_dataset: str | None = None  # provenance override when the file does not record it
    token_set_split: str | None = None
    k: int | None = None  # number of words (top-k of the set)
    control: str = "thinking"  # thinking | random
    control_run: Path | None = None  # random: generate run whose traces give word frequencies
    band: float = 2.0  # random: frequency band factor
    seed: int = 0  # random: control draw
    split_starts: bool = False  # also ban the first piece of each split form of a word (warns)


@register_method("suppress", "logit -inf for every token that spells a chosen word")
class Suppress(Method):
    options_type = SuppressOptions
    engines = ("hf", "vllm")

    def resolve(self, lm, options: SuppressOptions, dataset: str, split: str) -> ResolvedMethod:
        warnings: list[str] = []
        provenance: dict[str, Any] = {}
        token_set = chosen_token_set(options, dataset, split, provenance, warnings)
        if options.control not in ("thinking", "random"):
            raise UserError(f"--control must be 'thinking' or 'random', got '{options.control}'")
        words = list(token_set.words)
        identity: dict[str, Any] = {"name": self.name, "control": options.control, "k": len(words)}
        if options.control == "random":
            traces, source, more = control_traces(options.control_run, dataset, split)
            warnings += more
            control = random_control_words(words, traces, options.seed, lm.tokenizer, band=options.band)
            provenance["control_run"] = source
            provenance["control_words"] = [c.__dict__ for c in control]
            identity.update(seed=options.seed, band=options.band, thinking_words=words)
            words = [c.word for c in control]
        identity["words"] = words
        entries = resolve_token_ids(lm, words, options.split_starts, identity, provenance, warnings)
        return ResolvedMethod(identity, provenance, warnings, entries)

    def build(self, lm, identity, budget=None) -> list:
        return [TokenSuppressor(suppression_ids(lm.tokenizer, identity["words"], identity.get("split_starts", False)))]

    def label_details(self, identity) -> list[str]:
        return [str(identity.get("control", "thinking")), f"k={identity.get('k', len(identity.get('words') or []))}"]
