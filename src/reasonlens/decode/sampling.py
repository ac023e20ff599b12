"""Token choice: greedy, or temperature / top-p sampling with one generator per row (batch-independent)."""

from __future__ import annotations

import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p` (at least one token)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    remove = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def choose_tokens(
    logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, generators: list[torch.Generator] | None
) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(dim=-1)
    scaled = top_p_filter(logits / max(temperature, 1e-6), top_p)
    probs = torch.softmax(scaled, dim=-1)
    assert generators is not None
    return torch.stack([torch.multinomial(probs[i], 1, generator=generators[i])[0] for i in range(probs.shape[0])])
