"""`ttts`: thinking-token test-time scaling over --budgets (SPEC A7): an early stop becomes a thinking word."""

from __future__ import annotations

from dataclasses import dataclass

from reasonlens.errors import UserError
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method
from reasonlens.interventions.scaling import ANSWER_PROMPT, ANSWER_TOKENS, ThinkingTokenScaling
from reasonlens.interventions.tokens import PAPER_THINKING_WORDS


@dataclass
class ThinkingScalingOptions:
    words: list[str] | None = None  # thinking words used in turn (default: the paper's list)
    prefix: str = " "  # text before an injected word
    answer_prompt: str = ANSWER_PROMPT
    answer_tokens: int = ANSWER_TOKENS


@register_method("ttts", "thinking-token test-time scaling over --budgets")
class ThinkingScaling(Method):
    options_type = ThinkingScalingOptions
    engines = ("hf", "vllm")
    budgeted = True

    def resolve(self, lm, options: ThinkingScalingOptions, dataset: str, split: str) -> ResolvedMethod:
        if options.answer_tokens < 1:
            raise UserError(f"--answer-tokens must be >= 1, got {options.answer_tokens}")
        words = list(options.words) if options.words else list(PAPER_THINKING_WORDS)
        identity = {
            "name": self.name,
            "words": words,
            "prefix": options.prefix,
            "answer_prompt": options.answer_prompt,
            "answer_tokens": options.answer_tokens,
        }
        return ResolvedMethod(identity, {}, [])

    def build(self, lm, identity, budget=None) -> list:
        return [
            ThinkingTokenScaling(
                lm.tokenizer,
                budget,
                words=identity["words"],
                prefix=identity["prefix"],
                answer_prompt=identity["answer_prompt"],
                answer_tokens=identity["answer_tokens"],
            )
        ]
