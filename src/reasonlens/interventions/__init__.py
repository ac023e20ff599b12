"""Interventions and test-time scaling, all plug-ins of the one decode loop (SPEC A5-A8)."""

from reasonlens.analysis.tokens import WordTokenId, word_token_ids, word_variant_ids, words_ids
from reasonlens.interventions.evaluate import (
    EvalSpec,
    MethodOptions,
    Variant,
    compare_runs,
    evaluate,
    load_eval_run,
    resolve_method,
    rr_layer_variants,
    run_sweep,
    suppression_variants,
)
from reasonlens.interventions.methods import (
    Method,
    ResolvedMethod,
    build_plugins,
    get_method,
    method_names,
    register_method,
)
from reasonlens.interventions.recycle import RepresentationRecycling, default_layer, layer_sweep
from reasonlens.interventions.registry import parse_settings
from reasonlens.interventions.scaling import BudgetForcing, EosBlocker, ThinkingTokenScaling, parse_budgets
from reasonlens.interventions.suppress import ControlWord, TokenSuppressor, random_control_words
from reasonlens.interventions.tokens import (
    PAPER_THINKING_WORDS,
    TokenSet,
    leakage_warning,
    load_token_set,
    paper_token_set,
)

__all__ = [
    "PAPER_THINKING_WORDS",
    "BudgetForcing",
    "ControlWord",
    "EosBlocker",
    "EvalSpec",
    "Method",
    "MethodOptions",
    "ResolvedMethod",
    "get_method",
    "parse_settings",
    "RepresentationRecycling",
    "ThinkingTokenScaling",
    "TokenSet",
    "TokenSuppressor",
    "build_plugins",
    "compare_runs",
    "default_layer",
    "evaluate",
    "layer_sweep",
    "leakage_warning",
    "load_eval_run",
    "load_token_set",
    "method_names",
    "paper_token_set",
    "parse_budgets",
    "random_control_words",
    "register_method",
    "resolve_method",
    "rr_layer_variants",
    "run_sweep",
    "suppression_variants",
    "Variant",
    "word_variant_ids",
    "WordTokenId",
    "word_token_ids",
    "words_ids",
]
