"""Hidden-state capture: an Observer that streams each finished sample's states to a sink."""

from __future__ import annotations

from typing import Callable

import torch

from reasonlens.decode.plugins import Observer, RowState, StepState

StateSink = Callable[[RowState, dict[str, torch.Tensor]], None]


class HiddenStateCapture(Observer):
    """For each generated token t, the state at each chosen layer that predicted it (last position given y_<t).

    States are kept per batch on the CPU (one [B, d] copy per layer per step) and handed to `sink` as
    `{"layer.<k>": [T, d], "token_ids": [T], "forced": [T]}` when the row finishes, so memory is bounded
    by one batch whatever the number of samples.
    """

    def __init__(self, layers: list, sink: StateSink, dtype: torch.dtype = torch.float32):
        self.layers = list(layers)
        self.sink = sink
        self.dtype = dtype
        self._steps: dict = {key: [] for key in self.layers}
        self._batch_id: int | None = None

    def on_step(self, state: StepState, hidden: dict, tokens: torch.Tensor) -> None:
        # A new batch started: drop the previous batch's buffers. Step 0 marks it reliably; id() alone does not,
        # since a freed rows list's id can be reused by the next batch's list.
        if state.step == 0 or self._batch_id != id(state.rows):
            self._steps = {key: [] for key in self.layers}
            self._batch_id = id(state.rows)
        for key in self.layers:
            self._steps[key].append(hidden[key].to(device="cpu", dtype=self.dtype))

    def on_finish(self, row: RowState) -> None:
        n = row.n_generated
        tensors = {f"layer.{key}": torch.stack([step[row.row] for step in self._steps[key][:n]])
                   for key in self.layers}
        tensors["token_ids"] = torch.tensor(row.token_ids, dtype=torch.long)
        tensors["forced"] = torch.tensor(row.forced, dtype=torch.bool).to(torch.uint8)
        if not all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("layer.")):
            row.events.append({"type": "nonfinite_state"})
        self.sink(row, tensors)
