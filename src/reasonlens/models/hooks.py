"""Forward hooks that record layer outputs at chosen positions (capture and gold representations)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from reasonlens.models.adapters import LayerAdapter, LayerKey


def first_tensor(output) -> torch.Tensor:
    """Decoder layers return a tensor (transformers 5) or a tuple whose first item is the hidden state."""
    return output[0] if isinstance(output, (tuple, list)) else output


@contextmanager
def record_layers(
    adapter: LayerAdapter, keys: list[LayerKey], store: dict[LayerKey, torch.Tensor], last_only: bool = True
) -> Iterator[dict[LayerKey, torch.Tensor]]:
    """While active, every forward writes each chosen layer's output into `store[key]`.

    With `last_only` only the last position is kept ([B, d]); otherwise the whole sequence ([B, S, d]).
    Integer keys are decoder layer outputs (before the final norm); "final" is the final norm's output;
    "embed" is the input of the first decoder layer (HF `hidden_states[0]`: token embeddings, plus learned
    positions where the family adds them).
    """
    handles = []

    def embed_hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        store["embed"] = hidden[:, -1, :].detach() if last_only else hidden.detach()

    def make_hook(key: LayerKey):
        def hook(module, args, output):
            hidden = first_tensor(output)
            store[key] = hidden[:, -1, :].detach() if last_only else hidden.detach()

        return hook

    try:
        for key in keys:
            if key == "embed":
                handles.append(adapter.decoder_layers[0].register_forward_pre_hook(embed_hook, with_kwargs=True))
                continue
            module = adapter.final_norm if key == "final" else adapter.decoder_layers[key]
            handles.append(module.register_forward_hook(make_hook(key)))
        yield store
    finally:
        for handle in handles:
            handle.remove()
