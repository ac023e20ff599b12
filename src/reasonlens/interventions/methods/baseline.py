"""`baseline`: plain decoding (optionally at several --budgets)."""

from __future__ import annotations

from reasonlens.interventions.registry import Method, register_method


@register_method("baseline", "plain decoding (optionally at several --budgets)")
class Baseline(Method):
    engines = ("hf", "vllm")

    def build(self, lm, identity, budget=None) -> list:
        return []
