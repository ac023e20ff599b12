"""Representation Recycling (SPEC A6) as a `LayerRerun` plug-in of the one decode loop.

When the token a row is about to emit is in the trigger set, the loop rolls the KV cache back one
position and recomputes it with decoder layer `layer` applied `1 + repeats` times (layers below reuse
their states, one KV entry per layer is kept) and emits the token chosen from that second pass
(`reasonlens.decode.rerun`). With probability `p` < 1 (the reference used 0.5) a trigger is recycled only
sometimes; the draw is seeded per sample key, so results do not depend on batch size or composition.
"""

from __future__ import annotations

import random
from typing import Iterable

import torch

from reasonlens.decode.plugins import LayerRerun, StepState
from reasonlens.errors import UserError


def default_layer(num_layers: int) -> int:
    """The documented default: the decoder layer at two thirds of the depth, floor(2 L / 3)."""
    return min(max((2 * num_layers) // 3, 0), num_layers - 1)


def layer_sweep(num_layers: int, count: int = 3) -> list[int]:
    """`count` layers spread from a third to five sixths of the depth: round(L * f) for f evenly spaced in
    [1/3, 5/6] (deduplicated, clipped to the stack). One layer gives the default layer."""
    if count < 1:
        raise UserError(f"layer sweep count must be >= 1, got {count}")
    if count == 1:
        return [default_layer(num_layers)]
    fractions = [1 / 3 + i * (5 / 6 - 1 / 3) / (count - 1) for i in range(count)]
    layers: list[int] = []
    for f in fractions:
        layer = min(max(round(num_layers * f), 0), num_layers - 1)
        if layer not in layers:
            layers.append(layer)
    return layers


class RepresentationRecycling(LayerRerun):
    """Recycle layer `layer` (applied 1 + `repeats` times) whenever the proposed token is a trigger id."""

    def __init__(self, trigger_ids: Iterable[int], layer: int, p: float = 1.0, repeats: int = 1, seed: int = 0):
        if not 0.0 <= p <= 1.0:
            raise UserError(f"--p must be in [0, 1], got {p}")
        if repeats < 1:
            raise UserError(f"--repeats must be >= 1, got {repeats}")
        self.trigger_ids = sorted({int(i) for i in trigger_ids})
        self.layer, self.p, self.repeats, self.seed = int(layer), float(p), int(repeats), int(seed)
        self._mask: torch.Tensor | None = None
        self._rngs: dict[object, random.Random] = {}

    def _trigger_mask(self, size: int) -> torch.Tensor:
        if self._mask is None or self._mask.numel() < size:
            mask = torch.zeros(max(size, max(self.trigger_ids, default=0) + 1), dtype=torch.bool)
            if self.trigger_ids:
                mask[torch.tensor(self.trigger_ids)] = True
            self._mask = mask
        return self._mask

    def _draw(self, key: object) -> bool:
        if self.p >= 1.0:
            return True
        rng = self._rngs.get(key)
        if rng is None:
            rng = self._rngs[key] = random.Random(f"{self.seed}:{key}")
        return rng.random() < self.p

    def select(self, state: StepState, proposed: torch.Tensor) -> torch.Tensor:
        proposed = proposed.cpu()
        mask = self._trigger_mask(int(proposed.max()) + 1)
        hits = mask[proposed] & state.active.cpu()
        if self.p < 1.0:
            for i in hits.nonzero().flatten().tolist():
                hits[i] = self._draw(state.rows[i].key)
        return hits
