"""The one decode loop and its plug-ins."""

from reasonlens.decode.loop import DecodeConfig, Generation, decode, decode_batch
from reasonlens.decode.plugins import (
    Continuation,
    ContinuationPolicy,
    LayerRerun,
    LogitsProcessor,
    Observer,
    RowState,
    StepState,
)

__all__ = [
    "Continuation",
    "ContinuationPolicy",
    "DecodeConfig",
    "Generation",
    "LayerRerun",
    "LogitsProcessor",
    "Observer",
    "RowState",
    "StepState",
    "decode",
    "decode_batch",
]
