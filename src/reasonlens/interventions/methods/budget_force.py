"""`budget-force`: s1 budget forcing over --budgets (SPEC A8): early stops below a minimum become "Wait"."""

from __future__ import annotations

from dataclasses import dataclass

from reasonlens.errors import UserError
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method
from reasonlens.interventions.scaling import ANSWER_PROMPT, ANSWER_TOKENS, BudgetForcing, EosBlocker, min_tokens_for


@dataclass
class BudgetForceOptions:
    min_fraction: float = 0.5  # minimum budget as a fraction of the cap
    block_eos: bool = False  # also block EOS below the minimum
    wait: str = "Wait"  # the word appended on early stops
    prefix: str = " "  # text before an injected word
    answer_prompt: str = ANSWER_PROMPT
    answer_tokens: int = ANSWER_TOKENS
    max_waits: int | None = None  # at most this many stops become "Wait" (s1's "N times"); None: all


@register_method("budget-force", "s1 budget forcing over --budgets")
class BudgetForce(Method):
    options_type = BudgetForceOptions
    engines = ("hf", "vllm")
    budgeted = True

    def resolve(self, lm, options: BudgetForceOptions, dataset: str, split: str) -> ResolvedMethod:
        if options.answer_tokens < 1:
            raise UserError(f"--answer-tokens must be >= 1, got {options.answer_tokens}")
        min_tokens_for(1, options.min_fraction)  # validates the fraction
        identity = {
            "name": self.name,
            "min_fraction": options.min_fraction,
            "block_eos": options.block_eos,
            "wait": options.wait,
            "prefix": options.prefix,
            "answer_prompt": options.answer_prompt,
            "answer_tokens": options.answer_tokens,
        }
        if options.max_waits is not None:
            if options.max_waits < 1:
                raise UserError(f"--max-waits must be >= 1, got {options.max_waits}")
            identity["max_waits"] = options.max_waits
        return ResolvedMethod(identity, {}, [])

    def build(self, lm, identity, budget=None) -> list:
        min_tokens = min_tokens_for(budget, identity["min_fraction"])
        plugins: list = [
            BudgetForcing(
                lm.tokenizer,
                budget,
                min_tokens,
                wait=identity["wait"],
                prefix=identity["prefix"],
                answer_prompt=identity["answer_prompt"],
                answer_tokens=identity["answer_tokens"],
                max_waits=identity.get("max_waits"),
            )
        ]
        if identity["block_eos"]:
            plugins.append(EosBlocker(lm.eos_token_ids(), min_tokens))
        return plugins

    def label_details(self, identity) -> list[str]:
        details = [f"min {identity.get('min_fraction')}"]
        if identity.get("max_waits") is not None:
            details.append(f"max {identity['max_waits']} waits")
        return details
