"""`nowait`: suppress reflection words to shorten reasoning (NoWait, arXiv 2506.08343; SPEC A10).

The same logit mask as `suppress`, read the other way: where SPEC A5 bans thinking words to show that
accuracy needs them, NoWait bans the words that open a self-check ("Wait", "Hmm", "Alternatively", ...) to cut
tokens at little accuracy cost. Its metric is therefore the completion length: every eval summary reports
`mean_tokens`, and `compare-eval` against a baseline run gives the tokens saved with a paired bootstrap CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasonlens.interventions.methods.words import identity_token_ids, resolve_token_ids
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method
from reasonlens.interventions.suppress import TokenSuppressor

# The paper's reflection keywords (its Sec. 3); every case/space variant of each is banned (word_token_ids).
NOWAIT_WORDS = (
    "Wait",
    "Alternatively",
    "Hmm",
    "But",
    "However",
    "Alternative",
    "Another",
    "Check",
    "Double-check",
    "Oh",
    "Maybe",
    "Verify",
    "Other",
    "Again",
    "Now",
    "Ah",
    "Any",
)


@dataclass
class NoWaitOptions:
    words: list[str] | None = None  # reflection words to ban (default: NOWAIT_WORDS)
    split_starts: bool = False  # also ban the first piece of words the tokenizer splits (warns)


@register_method("nowait", "NoWait: ban reflection words (Wait, Hmm, ...) to shorten reasoning")
class NoWait(Method):
    options_type = NoWaitOptions
    engines = ("hf", "vllm")

    def resolve(self, lm, options: NoWaitOptions, dataset: str, split: str) -> ResolvedMethod:
        words = list(options.words) if options.words else list(NOWAIT_WORDS)
        identity: dict[str, Any] = {"name": self.name, "words": words}
        provenance: dict[str, Any] = {"token_set": {"kind": "nowait" if not options.words else "command line"}}
        warnings: list[str] = []
        entries = resolve_token_ids(lm, words, options.split_starts, identity, provenance, warnings)
        return ResolvedMethod(identity, provenance, warnings, entries)

    def build(self, lm, identity, budget=None) -> list:
        return [TokenSuppressor(identity_token_ids(lm, identity))]

    def label_details(self, identity) -> list[str]:
        return [f"{len(identity.get('words') or [])} words"]
