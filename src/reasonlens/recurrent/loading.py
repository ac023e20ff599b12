"""Recognise and load huginn-format and Ouro (LoopLM) directories (no trust_remote_code needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from reasonlens.errors import UserError
from reasonlens.recurrent.config import HUGINN_ARCHITECTURE, HUGINN_MODEL_TYPE
from reasonlens.recurrent.model import RecurrentDepthLM

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def is_recurrent_dir(path: str | Path) -> bool:
    """True when `path` is a directory whose config.json declares a huginn / raven or Ouro (LoopLM) architecture."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    from reasonlens.runs.io import read_json_object

    try:
        config = read_json_object(config_path, "model config")
    except UserError:
        return False
    if not isinstance(config, dict):
        return False
    from reasonlens.recurrent.ouro import is_ouro_config

    architectures = config.get("architectures") or []
    return (
        config.get("model_type") == HUGINN_MODEL_TYPE
        or HUGINN_ARCHITECTURE in architectures
        or "n_layers_in_recurrent_block" in config
        or is_ouro_config(config)
    )


def load_tokenizer(path: str | Path, vocab_size: int):
    """The directory's tokenizer; without one, the byte-level tokenizer when the vocabulary can hold it, else None."""
    path = Path(path)
    if (path / "tokenizer.json").is_file():
        # A fast tokenizer file needs no model config (AutoTokenizer would parse config.json and warn about
        # the unknown huginn model type).
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    elif any((path / name).is_file() for name in _TOKENIZER_FILES):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    elif vocab_size >= 259:
        from reasonlens.models.loaded import byte_level_tokenizer

        tokenizer = byte_level_tokenizer(vocab_size)
    else:
        return None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def ouro_layer_adapter(model):
    """Capture view of an Ouro model: layer 0 = the final loop state (each row at its exit), "final" = the same
    state as the LM head reads it. Per-loop states come from `forward(..., output_latents=True)`."""
    from torch import nn

    from reasonlens.models.adapters import LayerAdapter

    return LayerAdapter(
        decoder_layers=nn.ModuleList([model.core_output]),
        final_norm=model.final_output,
        lm_head=model.lm_head,
        hidden_size=model.config.hidden_size,
        family="ouro",
    )


def recurrent_layer_adapter(model: RecurrentDepthLM):
    """A `reasonlens.models.LayerAdapter` view for hidden-state capture by forward hooks.

    Layer k: 0..P-1 = prelude block outputs; P = the final raw core state s_r (each row at its own exit
    iteration under adaptive exit); P+1..P+C = coda block outputs; "final" = ln_f after the coda. The
    per-iteration core states are not layers; get them from `forward(..., output_latents=True)`.
    """
    from torch import nn

    from reasonlens.models.adapters import LayerAdapter

    stack = nn.ModuleList([*model.transformer.prelude, model.core_output, *model.transformer.coda])
    return LayerAdapter(
        decoder_layers=stack,
        final_norm=model.transformer.ln_f,
        lm_head=model.lm_head,
        hidden_size=model.config.n_embd,
        family="huginn_raven",
    )


def load_recurrent(path: str | Path, dtype: torch.dtype | str | None = "fp32", device: str | torch.device = "cpu"):
    """A `reasonlens.models.LoadedModel` for a huginn-format or Ouro directory (config.json + safetensors + tokenizer).

    `layers` is `recurrent_layer_adapter(model)` (prelude blocks, final core state, coda blocks) for huginn,
    `ouro_layer_adapter(model)` for Ouro.
    """
    from reasonlens.models.loaded import LoadedModel
    from reasonlens.recurrent.ouro import OuroLM, fix_special_token_ids, is_ouro_config
    from reasonlens.runs.io import read_json_object

    path = Path(path)
    config = read_json_object(path / "config.json", "model config")
    if is_ouro_config(config):
        model = OuroLM.from_pretrained(path, dtype=dtype, device=device)
        tokenizer = load_tokenizer(path, model.config.vocab_size)
        fix_special_token_ids(model, tokenizer)
        layers = ouro_layer_adapter(model)
    else:
        model = RecurrentDepthLM.from_pretrained(path, dtype=dtype, device=device)
        tokenizer = load_tokenizer(path, model.config.vocab_size)
        layers = recurrent_layer_adapter(model)
    return LoadedModel(model=model, tokenizer=tokenizer, layers=layers, name=path.name, spec=str(path))
