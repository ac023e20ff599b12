"""Registry of evaluation methods: a name and resolved options -> the decode-loop plug-ins that implement it.

A method's options are resolved once (words chosen, layer fixed, ...) into a JSON-able dict that becomes the
run's `method` identity, so a resumed run with different settings is refused. `build_plugins(lm, method,
budget)` turns that dict into plug-ins; adding a method is one builder function and one `register_method` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from reasonlens.errors import UserError
from reasonlens.interventions.recycle import RepresentationRecycling
from reasonlens.interventions.scaling import (
    BudgetForcing,
    EosBlocker,
    ThinkingTokenScaling,
    min_tokens_for,
)
from reasonlens.interventions.suppress import TokenSuppressor, suppression_ids

Builder = Callable[[Any, dict[str, Any], "int | None"], list]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    build: Builder
    budgeted: bool  # evaluated over a list of token budgets (one sub-run per budget)
    description: str


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, build: Builder, budgeted: bool = False, description: str = "") -> None:
    _METHODS[name] = MethodInfo(name, build, budgeted, description)


def method_names() -> list[str]:
    return list(_METHODS)


def method_info(name: str) -> MethodInfo:
    try:
        return _METHODS[name]
    except KeyError:
        raise UserError(f"unknown --method '{name}' (choose from {', '.join(_METHODS)})") from None


def build_plugins(lm, method: dict[str, Any], budget: int | None = None) -> list:
    """The plug-ins for a resolved method dict ({"name": ..., options...}); `budget` for budgeted methods."""
    info = method_info(method["name"])
    if info.budgeted and budget is None:
        raise UserError(f"--method {info.name} needs --budgets")
    return info.build(lm, method, budget)


def _baseline(lm, method, budget):
    return []


def _suppress(lm, method, budget):
    return [TokenSuppressor(suppression_ids(lm.tokenizer, method["words"], method.get("split_starts", False)))]


def _rr(lm, method, budget):
    triggers = suppression_ids(lm.tokenizer, method["words"], method.get("split_starts", False))
    return [RepresentationRecycling(triggers, layer=method["layer"], p=method["p"], repeats=method["repeats"],
                                    seed=method["seed"])]


def _ttts(lm, method, budget):
    return [ThinkingTokenScaling(lm.tokenizer, budget, words=method["words"], prefix=method["prefix"],
                                 answer_prompt=method["answer_prompt"], answer_tokens=method["answer_tokens"])]


def _budget_force(lm, method, budget):
    min_tokens = min_tokens_for(budget, method["min_fraction"])
    plugins: list = [BudgetForcing(lm.tokenizer, budget, min_tokens, wait=method["wait"], prefix=method["prefix"],
                                   answer_prompt=method["answer_prompt"], answer_tokens=method["answer_tokens"],
                                   max_waits=method.get("max_waits"))]
    if method["block_eos"]:
        plugins.append(EosBlocker(lm.eos_token_ids(), min_tokens))
    return plugins


register_method("baseline", _baseline, description="plain decoding (optionally at several --budgets)")
register_method("suppress", _suppress, description="logit -inf for every token that spells a chosen word")
register_method("rr", _rr, description="Representation Recycling: layer re-run on trigger tokens")
register_method("ttts", _ttts, budgeted=True, description="thinking-token test-time scaling over --budgets")
register_method("budget-force", _budget_force, budgeted=True, description="s1 budget forcing over --budgets")
