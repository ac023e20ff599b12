"""KV cache of the recurrent-depth LM: one entry per (core iteration, core layer), with per-token depth.

Layout. Prelude and coda layers keep one K/V tensor each, `[B, H, S, hd]`. Every core layer keeps a
slot-major tensor `[n_slots, B, H, S, hd]`: iteration i of the core writes slot `i` (full cache) or
`i % n_slots` (compressed cache, `slots=N`). `depth[b, p]` is the number of core iterations that position p
of row b actually ran; when a later token reads position p at iteration i it uses the entry of iteration
`min(i, depth - 1)`, i.e. a token that exited early is read at its deepest available entry (reference
lookup "latest"). The full cache stores that entry in every deeper slot as well (copied when the position is
committed, and when a deeper slot is allocated), so a read is a plain slice of slot i. With compression,
that entry lives in slot `min(i, depth - 1) % N` and is gathered per position; for N >= the number of
iterations nothing is ever overwritten and the compressed cache equals the full one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _grow(
    storage: Tensor | None, shape_without_seq: tuple[int, ...], seq_dim: int, needed: int, like: Tensor
) -> Tensor:
    """Return `storage` with at least `needed` positions along `seq_dim` (capacity doubles, content kept)."""
    if storage is not None and storage.shape[seq_dim] >= needed:
        return storage
    old = 0 if storage is None else storage.shape[seq_dim]
    capacity = max(needed, 2 * old, 16)
    shape = list(shape_without_seq)
    shape.insert(seq_dim if seq_dim >= 0 else len(shape) + 1 + seq_dim, capacity)
    fresh = torch.zeros(shape, dtype=like.dtype, device=like.device)
    if storage is not None:
        fresh.narrow(seq_dim, 0, old).copy_(storage)
    return fresh


class RecurrentCache:
    """Per-(iteration, core layer) KV cache for `RecurrentDepthLM`, batched, with optional compression.

    `slots=None` keeps every iteration; `slots=N` keeps N slots per core layer (reference "compress-s").
    `last_state` holds each row's final core state of the last position, for continuous-CoT warm starts.
    """

    def __init__(self, batch_size: int, n_prelude: int, n_core: int, n_coda: int, slots: int | None = None):
        if slots is not None and slots < 1:
            raise ValueError(f"cache slots must be >= 1, got {slots}")
        self.batch_size = batch_size
        self.slots = slots
        self._length = 0
        self._pending = 0  # positions reserved by the forward pass in progress
        self.prelude: list[list[Tensor | None]] = [[None, None] for _ in range(n_prelude)]
        self.coda: list[list[Tensor | None]] = [[None, None] for _ in range(n_coda)]
        self.core: list[list[Tensor | None]] = [[None, None] for _ in range(n_core)]
        self._reserved = 0  # full cache: slots to allocate at once (see reserve)
        self.depth: Tensor | None = None  # LongTensor [B, capacity]
        self.last_state: Tensor | None = None  # [B, d]

    # ---- sizes ----
    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of cached positions (HF-style accessor)."""
        return self._length

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:  # an empty cache is still a cache (`cache or make_cache()` must keep it)
        return True

    @property
    def n_slots_allocated(self) -> int:
        first = self.core[0][0] if self.core else None
        return 0 if first is None else first.shape[0]

    # ---- forward-pass protocol ----
    def reserve(self, iterations: int) -> None:
        """Full cache: when a new slot is needed, allocate slots for `iterations` at once.

        Called by the model with the call's maximum number of iterations, so that adaptive exit, whose depth
        grows token by token, does not copy the whole cache once per new iteration reached.
        """
        if self.slots is None:
            self._reserved = max(self._reserved, iterations)

    def begin(self, new_tokens: int) -> int:
        """Reserve `new_tokens` positions for a forward pass; returns the number of positions already cached."""
        self._pending = new_tokens
        return self._length

    def commit(self, iterations_used: Tensor) -> None:
        """Record the depth of the positions just computed (`iterations_used`: LongTensor [B]) and close the pass."""
        start, end = self._length, self._length + self._pending
        depth = _grow(self.depth, (self.batch_size,), 1, end, iterations_used)
        depth[:, start:end] = iterations_used.to(depth.device)[:, None]
        self.depth = depth
        if self.slots is None:
            self._fill_beyond_depth(start, end, iterations_used)
        self._length = end
        self._pending = 0

    def _fill_beyond_depth(self, start: int, end: int, iterations_used: Tensor) -> None:
        """Full cache: copy each new position's deepest entry (iteration depth - 1) into every deeper slot.

        A later token reading the position at iteration i >= depth then finds the entry of iteration depth - 1
        in slot i (the "latest" lookup) with a plain slice: no per-position gather, which is what made adaptive
        exit slower than fixed depth. Slots allocated later start as copies of the deepest slot (update_core).
        """
        n_slots = self.n_slots_allocated
        used = iterations_used.to(self.depth.device)
        if n_slots == 0 or int(used.min()) >= n_slots:
            return
        # slot s of row b takes the entry of iteration min(s, depth_b - 1): one gather per cache tensor
        source = None
        for entry in self.core:
            for storage in entry:
                region = storage[:, :, :, start:end]
                if source is None:
                    source = torch.minimum(
                        torch.arange(n_slots, device=storage.device)[:, None], used.to(storage.device)[None, :] - 1
                    )
                    source = source[:, :, None, None, None].expand(region.shape)
                region.copy_(region.gather(0, source))

    def _total(self) -> int:
        return self._length + self._pending

    def _write_flat(
        self, entry: list[Tensor | None], k: Tensor, v: Tensor, rows: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        start, total = self._length, self._total()
        for index, new in enumerate((k, v)):
            storage = _grow(entry[index], (self.batch_size, new.shape[1], new.shape[3]), 2, total, new)
            target = storage[:, :, start:total]
            if rows is None:
                target.copy_(new)
            else:
                target.index_copy_(0, rows, new)
            entry[index] = storage
        keys, values = entry[0][:, :, :total], entry[1][:, :, :total]
        if rows is None:
            return keys, values
        return keys.index_select(0, rows), values.index_select(0, rows)

    def update_prelude(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self._write_flat(self.prelude[layer], k, v, None)

    def update_coda(self, layer: int, k: Tensor, v: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Write the coda entry of the new positions and return the K/V to attend to.

        `rows` (LongTensor of batch-row indices, None = every row): `k`/`v` hold only those rows, and only
        their entries are written and returned (a sub-batch, as adaptive exit runs it).
        """
        return self._write_flat(self.coda[layer], k, v, rows)

    def slot_of(self, iteration: int) -> int:
        return iteration if self.slots is None else iteration % self.slots

    def update_core(
        self, layer: int, iteration: int, k: Tensor, v: Tensor, rows: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Write iteration `iteration` of core layer `layer` for the new positions and return the K/V to attend to.

        Past positions are read at iteration min(iteration, depth - 1). `rows` (LongTensor of batch-row indices,
        None = every row) makes this a sub-batch call: `k`/`v` hold only those rows, only their entries are
        written and only theirs are returned, so rows that exited cost nothing and keep their deepest entries.
        """
        start, total = self._length, self._total()
        slot = self.slot_of(iteration)
        n_slots = max(slot + 1, self.n_slots_allocated)
        if n_slots > self.n_slots_allocated and self.slots is None:
            n_slots = max(n_slots, self._reserved)
        entry = self.core[layer]
        for index, new in enumerate((k, v)):
            storage = entry[index]
            if storage is not None and storage.shape[0] < n_slots:
                extra = (n_slots - storage.shape[0],) + tuple(storage.shape[1:])
                # Full cache: a new iteration's slot starts as a copy of the deepest one, so positions that never
                # ran this deep hold their deepest entry there (see commit); compressed: zeros, read by gather.
                pad = storage[-1:].expand(extra).clone() if self.slots is None else storage.new_zeros(extra)
                storage = torch.cat([storage, pad], dim=0)
            storage = _grow(storage, (n_slots, self.batch_size, new.shape[1], new.shape[3]), 3, total, new)
            target = storage[slot, :, :, start:total]
            if rows is None:
                target.copy_(new)
            else:
                target.index_copy_(0, rows, new)
            entry[index] = storage
        return self._read_core(layer, iteration, rows)

    def _read_core(self, layer: int, iteration: int, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        start, total = self._length, self._total()
        keys, values = self.core[layer]
        slot = self.slot_of(iteration)
        depth = None if start == 0 or self.slots is None else self.depth[:, :start]
        if depth is not None and rows is not None:
            depth = depth.index_select(0, rows.to(depth.device))
        if depth is None or int(depth.min()) > iteration:
            k, v = keys[slot, :, :, :total], values[slot, :, :, :total]
            if rows is None:
                return k, v
            return k.index_select(0, rows), v.index_select(0, rows)
        # Some past positions stopped before this iteration: read each at its deepest entry.
        n_rows = depth.shape[0]
        past_iteration = torch.clamp(depth - 1, max=iteration)
        current = torch.full((n_rows, total - start), iteration, dtype=torch.long, device=past_iteration.device)
        read_iteration = torch.cat([past_iteration, current], dim=1)
        read_slot = read_iteration if self.slots is None else read_iteration % self.slots
        read_slot = read_slot.to(keys.device)
        batch_rows = (torch.arange(self.batch_size, device=keys.device) if rows is None else rows)[:, None]
        positions = torch.arange(total, device=keys.device)[None, :]
        # advanced indexing -> [n_rows, S, H, hd]; back to [n_rows, H, S, hd]
        k = keys[read_slot, batch_rows, :, positions].transpose(1, 2)
        v = values[read_slot, batch_rows, :, positions].transpose(1, 2)
        return k, v

    # ---- maintenance ----
    def crop(self, max_length: int) -> None:
        """Forget every position from `max_length` on (negative: drop that many from the end)."""
        new_length = self._length + max_length if max_length < 0 else min(max_length, self._length)
        self._length = max(new_length, 0)

    def memory_bytes(self) -> int:
        total = 0
        for group in (self.prelude, self.coda, self.core):
            for entry in group:
                for tensor in entry:
                    if tensor is not None:
                        total += tensor.numel() * tensor.element_size()
        return total
