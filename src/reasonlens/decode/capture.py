"""Hidden-state capture: an Observer that streams each finished sample's states to a sink."""

from __future__ import annotations

from typing import Callable

import torch

from reasonlens.decode.plugins import Observer, RowState, StepState

StateSink = Callable[[RowState, dict[str, torch.Tensor]], None]


class _RowStates:
    """One row's captured states, [n_layers, T, d] in the storage dtype (so each layer's [T, d] is contiguous);
    capacity doubles as the row grows."""

    def __init__(self, row: RowState, n_layers: int, width: int, dtype: torch.dtype):
        self.row = row
        self.data = torch.empty((n_layers, 64, width), dtype=dtype)
        self.n = 0

    def append(self, states: torch.Tensor) -> None:
        if self.n == self.data.shape[1]:
            grown = self.data.new_empty((self.data.shape[0], 2 * self.n, self.data.shape[2]))
            grown[:, : self.n] = self.data
            self.data = grown
        self.data[:, self.n] = states
        self.n += 1


class HiddenStateCapture(Observer):
    """For each generated token t, the state at each chosen layer that predicted it (last position given y_<t).

    Each step's states of all rows move to the CPU in one copy (converted to `dtype` on the model's device
    first), then into a buffer per row; rows may join and leave the batch at any step. When a row finishes,
    `sink` gets `{"layer.<k>": [T, d], "token_ids": [T], "forced": [T]}` (the layer tensors are views into
    the row's buffer), so memory is bounded by the rows in flight whatever the number of samples.
    """

    def __init__(self, layers: list, sink: StateSink, dtype: torch.dtype = torch.float32):
        self.layers = list(layers)
        self.sink = sink
        self.dtype = dtype
        self._rows: dict[int, _RowStates] = {}

    def on_step(self, state: StepState, hidden: dict, tokens: torch.Tensor) -> None:
        states = torch.stack([hidden[key] for key in self.layers], dim=1).to(self.dtype).cpu()  # [B, L, d]
        active = state.active.tolist()
        for row in state.rows:
            if not active[row.row]:
                continue
            buffer = self._rows.get(id(row))
            if buffer is None or buffer.row is not row:  # ids of rows from an aborted decode may be reused
                buffer = self._rows[id(row)] = _RowStates(row, states.shape[1], states.shape[2], self.dtype)
            buffer.append(states[row.row])

    def on_finish(self, row: RowState) -> None:
        buffer = self._rows.pop(id(row), None)
        if buffer is None or buffer.row is not row:
            raise RuntimeError(f"capture saw no step of sample {row.key!r}")
        data = buffer.data[:, : row.n_generated]
        tensors = {f"layer.{key}": data[j] for j, key in enumerate(self.layers)}
        tensors["token_ids"] = torch.tensor(row.token_ids, dtype=torch.long)
        tensors["forced"] = torch.tensor(row.forced, dtype=torch.bool).to(torch.uint8)
        if not torch.isfinite(data).all():
            row.events.append({"type": "nonfinite_state"})
        self.sink(row, tensors)
