"""References computed with plain transformers calls, which the decode loop's outputs are checked against."""

import torch

from reasonlens.models import record_layers


def hf_greedy(lm, prompts, max_new_tokens):
    """transformers' own generate, greedy (left padding), trimmed after the first EOS."""
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    out = lm.model.generate(
        **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id
    )
    eos = set(lm.eos_token_ids())
    result = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        result.append(row[:cut])
    return result


def full_forward_states(lm, generation, layers):
    """{layer key: [n_tokens, d]}: the states one uncached forward over prompt + generated tokens gives at the
    positions whose outputs chose each generated token (what a capture plug-in must have recorded)."""
    store = {}
    with torch.no_grad(), record_layers(lm.layers, layers, store, last_only=False):
        lm.model(torch.tensor([generation.prompt_ids + generation.token_ids]))
    start = len(generation.prompt_ids) - 1
    return {key: store[key][0, start : start + generation.n_tokens] for key in layers}
