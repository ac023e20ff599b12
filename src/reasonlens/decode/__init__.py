"""The one decode loop and its plug-ins."""

from reasonlens.decode.loop import DecodeConfig, Generation, decode, decode_batch
from reasonlens.decode.plugins import (
    PLUGIN_KINDS,
    Continuation,
    ContinuationPolicy,
    EosStop,
    ForwardContext,
    HiddenStateHook,
    LayerRerun,
    LogitsProcessor,
    Observer,
    RequestConstraints,
    RowState,
    StepState,
    StoppingRule,
    StopStrings,
    TokenBudget,
)

__all__ = [
    "PLUGIN_KINDS",
    "Continuation",
    "ContinuationPolicy",
    "DecodeConfig",
    "EosStop",
    "ForwardContext",
    "Generation",
    "HiddenStateHook",
    "LayerRerun",
    "LogitsProcessor",
    "Observer",
    "RequestConstraints",
    "RowState",
    "StepState",
    "StopStrings",
    "StoppingRule",
    "TokenBudget",
    "decode",
    "decode_batch",
]
