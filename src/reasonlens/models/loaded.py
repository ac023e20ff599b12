"""LoadedModel: an HF (or recurrent-depth) model, its tokenizer and a uniform layer view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reasonlens.models.adapters import LayerAdapter, adapter_for
from reasonlens.models.dtypes import DTYPES  # noqa: F401 - re-exported (the one dtype table)


@dataclass
class LoadedModel:
    """Everything the pipeline needs about one model."""

    model: nn.Module
    tokenizer: Any
    layers: LayerAdapter | None  # None when no adapter is known; recurrent loaders pass their own (prelude/core/coda)
    name: str
    spec: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def wrap(cls, model: nn.Module, tokenizer: Any, name: str, spec: str) -> "LoadedModel":
        layers = (
            adapter_for(model) if hasattr(model, "config") and not getattr(model, "is_recurrent_depth", False) else None
        )
        if tokenizer.pad_token_id is None:
            # Left-padded batches need a pad id; masked positions never influence the output.
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        return cls(model=model, tokenizer=tokenizer, layers=layers, name=name, spec=spec)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        if self.layers is not None:
            return self.layers.hidden_size
        return int(getattr(self.model.config, "n_embd", getattr(self.model.config, "hidden_size", 0)))

    def eos_token_ids(self) -> list[int]:
        """Every id that ends generation: the generation config's EOS ids and the tokenizer's."""
        ids: list[int] = []
        gen = getattr(self.model, "generation_config", None)
        for source in (
            getattr(gen, "eos_token_id", None),
            getattr(self.model.config, "eos_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            for i in source if isinstance(source, (list, tuple)) else [source]:
                if i is not None and int(i) not in ids:
                    ids.append(int(i))
        return ids


def byte_level_tokenizer(vocab_size: int = 300):
    """A real (not mocked) byte-level BPE tokenizer with no merges, for tiny random models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    for extra in range(len(vocab), vocab_size):
        vocab[f"<x{extra}>"] = extra
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.padding_side = "left"
    return fast
