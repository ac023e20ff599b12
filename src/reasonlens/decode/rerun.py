"""Layer re-run with KV-cache rollback: the mechanism behind Representation Recycling.

At a re-run the current position is recomputed from decoder layer `l` upwards: layers below `l` reuse
their saved outputs and KV entries (no compute), layer `l` is applied `1 + repeats` times in the selected
rows (each extra pass attends to the cached prefix plus its own fresh key/value), and exactly one KV entry
per layer is kept for the position: layer `l` keeps its first-pass entry (computed from its real input),
layers above keep the entry of the recomputed pass. Hooks on the replayed layers (capture, `HiddenStateHook`s)
do not fire during the re-run: their first-pass states stand.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch

from reasonlens.errors import UserError
from reasonlens.models.hooks import attach_hooks, first_tensor, muted, replace_first


class LayerInputRecorder:
    """Keeps the last-position input (`blocks.{l}.resid_pre`) of chosen decoder layers from every forward
    (needed to replay them)."""

    def __init__(self, adapter, layer_indices: set[int]):
        self.inputs: dict[int, torch.Tensor] = {}
        self._stack = ExitStack()
        points = [(f"blocks.{index}.resid_pre", self._keeper(index)) for index in sorted(layer_indices)]
        self._stack.enter_context(attach_hooks(adapter, points))

    def _keeper(self, index: int):
        def keep(hidden: torch.Tensor) -> None:
            self.inputs[index] = hidden[:, -1:, :].detach()

        return keep

    def close(self) -> None:
        self._stack.close()


@contextmanager
def _patched_forwards(modules_and_fns) -> Iterator[None]:
    previous = [(module, module.__dict__.get("forward")) for module, _ in modules_and_fns]
    try:
        for module, fn in modules_and_fns:
            module.forward = fn
        yield
    finally:
        for module, old in previous:
            if old is None:
                del module.forward  # fall back to the class's forward
            else:
                module.forward = old  # e.g. an accelerate hook that wrapped forward


def rerun_last_position(lm, cache, forward, layer: int, repeats: int, rows: torch.Tensor, layer_input: torch.Tensor):
    """Recompute the last position of every row; rows in `rows` get layer `layer` applied 1 + repeats times.

    `forward()` runs the model on the last position's input again (same ids, mask and positions).
    Rows not selected get bit-identical results to the first pass (same inputs, same kernels).
    """
    decoder_layers = lm.layers.decoder_layers
    cache_layers = getattr(cache, "layers", None)
    if cache_layers is None or any(
        not getattr(cl, "is_croppable", True) or getattr(cl, "is_sliding", False) for cl in cache_layers
    ):
        raise UserError(
            "layer re-run needs a full-attention dynamic KV cache (sliding-window models are not supported)"
        )
    saved = [
        (cache_layers[i].keys[..., -1:, :].clone(), cache_layers[i].values[..., -1:, :].clone()) for i in range(layer)
    ]
    for cache_layer in cache_layers:
        cache_layer.crop(-1)

    def replay_below(index: int):
        def fn(hidden_states, *args, **kwargs):
            cache.update(saved[index][0], saved[index][1], index)
            return layer_input

        return fn

    original = decoder_layers[layer].forward
    select = rows.to(layer_input.device)[:, None, None]

    def doubled(hidden_states, *args, **kwargs):
        out = original(hidden_states, *args, **kwargs)
        first = first_tensor(out)
        keep_k = cache_layers[layer].keys[..., -1:, :].clone()
        keep_v = cache_layers[layer].values[..., -1:, :].clone()
        current = first
        for _ in range(repeats):
            cache_layers[layer].crop(-1)
            current = first_tensor(original(current, *args, **kwargs))
        cache_layers[layer].keys[..., -1:, :] = keep_k
        cache_layers[layer].values[..., -1:, :] = keep_v
        return replace_first(out, torch.where(select, current, first))

    patches = [(decoder_layers[i], replay_below(i)) for i in range(layer)] + [(decoder_layers[layer], doubled)]
    with _patched_forwards(patches), muted(list(decoder_layers[:layer])):  # below `layer`: replayed, not new states
        return forward()
