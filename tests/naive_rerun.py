"""The naive, obviously correct reference for layer re-runs (Representation Recycling) used by the tests.

No KV cache: every step re-forwards the whole sequence. At each recycled position q, decoder layer `layer`'s
output is replaced by the layer applied again (`repeats` times) to its own output at q, attending to the
layer's normal inputs at positions < q — exactly what extra passes over a cached prefix compute.
"""

from __future__ import annotations

from typing import Callable

import torch

from reasonlens.models.hooks import first_tensor


def naive_rerun_greedy(
    lm, prompt_ids: list[int], layer: int, repeats: int, max_new_tokens: int, should_recycle: Callable[[int], bool]
) -> list[int]:
    """Greedy tokens; `should_recycle(proposed_token)` decides (in step order) whether a position is recycled."""
    module = lm.layers.decoder_layers[layer]
    recycled: set[int] = set()
    inner = {"busy": False}

    def hook(mod, args, kwargs, output):
        if inner["busy"]:
            return output
        hidden_in = args[0] if args else kwargs["hidden_states"]
        out = first_tensor(output).clone()
        for q in sorted(recycled):
            current = out[:, q : q + 1]
            for _ in range(repeats):
                kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                cos, sin = kw["position_embeddings"]
                kw["position_embeddings"] = (cos[:, : q + 1], sin[:, : q + 1])
                if kw.get("position_ids") is not None:
                    kw["position_ids"] = kw["position_ids"][:, : q + 1]
                if isinstance(kw.get("attention_mask"), torch.Tensor):
                    kw["attention_mask"] = kw["attention_mask"][..., : q + 1, : q + 1]
                inner["busy"] = True
                try:
                    current = first_tensor(mod(torch.cat([hidden_in[:, :q], current], dim=1), **kw))[:, -1:]
                finally:
                    inner["busy"] = False
            out[:, q : q + 1] = current
        return out if not isinstance(output, tuple) else (out,) + tuple(output[1:])

    handle = module.register_forward_hook(hook, with_kwargs=True)
    tokens: list[int] = []
    eos = set(lm.eos_token_ids())
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                seq = torch.tensor([prompt_ids + tokens])
                proposed = int(lm.model(seq, use_cache=False).logits[0, -1].argmax())
                if should_recycle(proposed):
                    recycled.add(seq.shape[1] - 1)
                    proposed = int(lm.model(seq, use_cache=False).logits[0, -1].argmax())
                tokens.append(proposed)
                if proposed in eos:
                    break
    finally:
        handle.remove()
    return tokens
