"""Steering and activation patching as decode plug-ins (`HiddenStateHook`s that rewrite a hidden state).

`Steering(layer, vector)` adds `scale * vector` to the output of decoder layer `layer`
(`blocks.{layer}.resid_post`) in every forward of the decode loop: prompt positions at prefill, each new
position at every step; with `positions`, only at those positions of each row (0 = its first prompt token).
`ActivationPatch(point, position, value)` replaces the state at one position with a given vector (e.g. a state
captured from another prompt).

    from reasonlens.decode import DecodeConfig, decode
    from reasonlens.interventions.steering import Steering

    gens = decode(lm, prompts, DecodeConfig(max_new_tokens=64), plugins=[Steering(12, direction, scale=4.0)])
"""

from __future__ import annotations

from typing import Iterable

import torch

from reasonlens.decode.plugins import ForwardContext, HiddenStateHook
from reasonlens.errors import UserError


def _position_mask(context: ForwardContext, positions: torch.Tensor, device) -> torch.Tensor:
    """BoolTensor[B, S, 1]: the forward's columns whose position is one of `positions`."""
    return torch.isin(context.positions.to(device), positions.to(device))[..., None]


class Steering(HiddenStateHook):
    """Add `scale * vector` to a hidden state at a hook point (default: the output of decoder layer `layer`)."""

    def __init__(
        self,
        layer: int | str,
        vector: torch.Tensor,
        scale: float = 1.0,
        positions: Iterable[int] | None = None,
    ):
        vector = torch.as_tensor(vector)
        if vector.dim() != 1:
            raise UserError(f"steering vector must be one-dimensional [d], got shape {tuple(vector.shape)}")
        self.points = [layer if isinstance(layer, str) else f"blocks.{int(layer)}.resid_post"]
        self.vector = vector.detach()
        self.scale = float(scale)
        self.positions = None if positions is None else torch.tensor(sorted({int(p) for p in positions}))
        self._cast: torch.Tensor | None = None

    def __call__(self, point: str, hidden: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        if hidden.shape[-1] != self.vector.shape[0]:
            raise UserError(f"steering vector has {self.vector.shape[0]} dims, {point} has {hidden.shape[-1]}")
        if self._cast is None or self._cast.dtype != hidden.dtype or self._cast.device != hidden.device:
            self._cast = (self.scale * self.vector.to(torch.float32)).to(hidden.dtype).to(hidden.device)
        if self.positions is None:
            return hidden + self._cast
        return hidden + _position_mask(context, self.positions, hidden.device) * self._cast


class ActivationPatch(HiddenStateHook):
    """Replace the state at `point` and sequence position `position` of every row with `value` [d]."""

    def __init__(self, point: str, position: int, value: torch.Tensor):
        value = torch.as_tensor(value)
        if value.dim() != 1:
            raise UserError(f"patched value must be one-dimensional [d], got shape {tuple(value.shape)}")
        self.points = [point]
        self.position = torch.tensor([int(position)])
        self.value = value.detach()

    def __call__(self, point: str, hidden: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        mask = _position_mask(context, self.position, hidden.device)
        return torch.where(mask, self.value.to(hidden.device, hidden.dtype), hidden)
