"""Tiny random models of real architectures, built in-process (tests and benchmarks; no download)."""

from __future__ import annotations

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from reasonlens.models.loaded import LoadedModel, byte_level_tokenizer

TINY_VOCAB = 300  # 256 byte tokens + specials; see byte_level_tokenizer


def _finish(model: PreTrainedModel, name: str, seed: int) -> LoadedModel:
    model.eval()
    tokenizer = byte_level_tokenizer()
    return LoadedModel.wrap(model, tokenizer, name=name, spec=name)


def tiny_llama(seed: int = 0, layers: int = 4, hidden: int = 64) -> LoadedModel:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return _finish(LlamaForCausalLM(config), "tiny-llama", seed)


def tiny_qwen2(seed: int = 0, layers: int = 3, hidden: int = 64) -> LoadedModel:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=TINY_VOCAB,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return _finish(Qwen2ForCausalLM(config), "tiny-qwen2", seed)


def tiny_gpt2(seed: int = 0, layers: int = 3, hidden: int = 64) -> LoadedModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=TINY_VOCAB,
        n_embd=hidden,
        n_layer=layers,
        n_head=4,
        n_positions=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return _finish(GPT2LMHeadModel(config), "tiny-gpt2", seed)


TINY_MODELS = {"tiny-llama": tiny_llama, "tiny-qwen2": tiny_qwen2, "tiny-gpt2": tiny_gpt2}
