"""THE decode loop: batched, left-padded, KV-cached generation with plug-ins.

Every token reasonlens generates comes from `decode`. Interventions are plug-ins (see plugins.py),
never copies of this loop.

Two schedules share the loop (`DecodeConfig.schedule`):
- "join" (default): `batch_size` slots; a row that finishes leaves the batch at once and the next pending
  prompt takes its slot. The newcomer's prompt except its last token is prefilled on its own (one padded
  forward for all rows joining at that step) and its KV entries are spliced into the batch's cache; its last
  prompt token then goes through the ordinary batched step with everybody else. Rows of different lengths
  share the cache through left padding, an attention mask and per-row position ids; columns no live row
  uses any more are cut off. A run of N prompts costs about its total tokens, not N / B x its longest row.
- "static": B prompts are prefilled together and decode until the longest ends (finished rows are fed
  padding), then the next B. Kept for comparison and benchmarks, and used automatically for models whose
  cache cannot be spliced (the recurrent-depth model's cache, sliding-window layers).

Either way the schedule is a function of the prompts and the settings only (admission in input order), so
a unit of prompts (`DecodeConfig.unit`) gives the same results however often it is decoded.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from reasonlens.decode.plugins import (
    ContinuationPolicy,
    ForwardContext,
    HiddenStateHook,
    LayerRerun,
    LogitsProcessor,
    Observer,
    RowState,
    StepState,
    StoppingRule,
    split_plugins,
)
from reasonlens.decode.rerun import LayerInputRecorder, rerun_last_position
from reasonlens.decode.rows import RowStopper, default_stopping_rules
from reasonlens.decode.sampling import choose_tokens
from reasonlens.errors import UserError
from reasonlens.models.hooks import attach_hooks, record_layers

SCHEDULES = ("join", "static")


@dataclass
class DecodeConfig:
    """Decoding parameters (recorded in every run manifest)."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop_strings: tuple[str, ...] = ()
    batch_size: int = 8
    add_special_tokens: bool = True
    forward_kwargs: dict[str, Any] = field(default_factory=dict)  # extra model kwargs, e.g. num_steps
    schedule: str = "join"  # "join": finished rows leave, pending prompts take their slots; "static": fixed batches
    window: int = 8  # with "join": prompts are decoded in windows of window x batch_size, the unit of resume

    @property
    def unit(self) -> int:
        """Prompts decoded as one unit: a batch (static) or a window of batches (join). Runs resume by unit."""
        return self.batch_size * (self.window if self.schedule == "join" else 1)

    def validate(self) -> "DecodeConfig":
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.window < 1:
            raise UserError(f"--window must be >= 1, got {self.window}")
        if self.do_sample and not self.temperature > 0:
            raise UserError(f"--temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop_strings": list(self.stop_strings),
            "batch_size": self.batch_size,
            "add_special_tokens": self.add_special_tokens,
            "forward_kwargs": {
                k: v for k, v in self.forward_kwargs.items() if isinstance(v, (int, float, str, bool, list, tuple))
            },
            "schedule": self.schedule,
            **({"window": self.window} if self.schedule == "join" else {}),
        }


@dataclass
class Generation:
    """One finished sequence."""

    key: Any
    prompt_ids: list[int]
    token_ids: list[int]
    forced: list[bool]
    text: str
    stop_reason: str
    events: list[dict]
    seconds: float

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_forced(self) -> int:
        return sum(self.forced)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def cache_argument(model) -> str:
    """The forward() keyword of the KV cache: `cache` in transformers >= 5.2x (where `past_key_values` is
    deprecated and warns on every call), `past_key_values` before and in the recurrent-depth model."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"


def _left_pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def _new_cache(model, batch_size: int):
    if hasattr(model, "make_cache"):
        return model.make_cache(batch_size)
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def encode_prompts(lm, prompts: Sequence[str | list[int]], add_special_tokens: bool) -> list[list[int]]:
    """Token ids of each prompt. A text that already starts with the BOS token (a rendered chat template) does
    not get a second one from `add_special_tokens` (a doubled BOS shifts every state of the trace)."""
    encoded = []
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    for prompt in prompts:
        ids = (
            list(prompt)
            if not isinstance(prompt, str)
            else lm.tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        )
        if (
            isinstance(prompt, str)
            and add_special_tokens
            and bos is not None
            and ids[:2] == [bos, bos]
            and prompt.startswith(str(lm.tokenizer.bos_token))
        ):
            ids = ids[1:]
        if not ids:
            raise UserError("empty prompt: nothing to condition on")
        encoded.append(ids)
    return encoded


@torch.inference_mode()
def decode(
    lm,
    prompts: Sequence[str | list[int]],
    config: DecodeConfig | None = None,
    plugins: Sequence[Any] = (),
    keys: Sequence[Any] | None = None,
    on_batch: Callable[[list[Generation]], None] | None = None,
    progress: Callable[[int], None] | None = None,
    show_progress: bool = True,
) -> list[Generation]:
    """Generate a completion for every prompt, through `config.batch_size` slots, one unit of prompts at a time.

    `keys` identify samples to plug-ins (default: position in `prompts`); per-row sampling seeds are
    `config.seed + position`, so sampled outputs do not depend on batch composition. `on_batch` is called
    with each finished unit (`config.unit` prompts; runs write results there); `progress(n_rows)` after
    every step with the number of rows still generating (= tokens generated in that step). Results come back
    in the order of `prompts`. Without a `progress` callback a rich progress bar on stderr counts samples and
    tokens (`show_progress=False`: none).
    """
    config = (config or DecodeConfig()).validate()
    keys = list(range(len(prompts))) if keys is None else list(keys)
    if len(keys) != len(prompts):
        raise ValueError("keys and prompts differ in length")
    results: list[Generation] = []
    with _default_progress(lm, len(prompts), progress, show_progress) as (step_progress, unit_done):
        for start in range(0, len(prompts), config.unit):
            part = prompts[start : start + config.unit]
            batch = decode_batch(
                lm,
                part,
                config,
                plugins,
                keys[start : start + config.unit],
                seeds=[config.seed + start + i for i in range(len(part))],
                progress=step_progress,
            )
            if on_batch is not None:
                on_batch(batch)
            results.extend(batch)
            unit_done(len(batch))
    return results


@contextlib.contextmanager
def _default_progress(lm, total: int, progress: Callable[[int], None] | None, show: bool):
    """(per-step callback, per-batch callback): the caller's callback, or a rich bar of samples and tokens."""
    if progress is not None or not show:
        yield progress, lambda n: None
        return
    from rich.errors import LiveError

    from reasonlens.runs.progress import progress_bar

    tokens = [0]
    started = time.perf_counter()
    bar = progress_bar()
    try:
        bar.start()
    except LiveError:  # inside another live display (a caller's bar): stay quiet
        yield None, lambda n: None
        return
    with bar:
        task = bar.add_task(f"decode {getattr(lm, 'name', '')}".strip(), total=total, info="")

        def step(n_tokens: int) -> None:
            tokens[0] += n_tokens
            rate = tokens[0] / max(time.perf_counter() - started, 1e-9)
            bar.update(task, info=f"{tokens[0]} tok {rate:.0f} tok/s")

        yield step, lambda n: bar.advance(task, n)


def joinable(model) -> bool:
    """Whether rows can join and leave this model's batch: its KV cache must be plain full-attention
    DynamicCache layers (tensors [B, H, S, d] that can be spliced); otherwise decoding falls back to static."""
    if hasattr(model, "make_cache"):
        return False
    from transformers.cache_utils import DynamicLayer

    cache = _new_cache(model, 1)
    layers = getattr(cache, "layers", None)
    if layers is None:
        return False
    return all(type(layer) is DynamicLayer for layer in layers) and (
        bool(layers) or cache.layer_class_to_replicate is DynamicLayer
    )


class _Batch:
    """The rows being decoded now, their KV cache and attention mask (width = cache length between steps)."""

    def __init__(self, model, device, extra: dict[str, Any], pad_id: int):
        self.model, self.device, self.extra, self.pad_id = model, device, extra, pad_id
        self.cache_kwarg = cache_argument(model)
        self.rows: list[RowState] = []
        self.cache = None
        self.attention = torch.zeros((0, 0), dtype=torch.long, device=device)
        self.last_ids = torch.zeros((0, 1), dtype=torch.long, device=device)
        self.last_pos = torch.zeros((0, 1), dtype=torch.long, device=device)
        self.hooked = False  # HiddenStateHook plug-ins read `context` in every forward
        self.context: ForwardContext | None = None

    def forward(
        self,
        ids: torch.Tensor,
        pos: torch.Tensor,
        attention: torch.Tensor | None = None,
        cache=None,
        rows: list[RowState] | None = None,
        **kwargs,
    ):
        cache = self.cache if cache is None else cache
        attention = self.attention if attention is None else attention
        if self.hooked:
            columns = attention[:, attention.shape[1] - ids.shape[1] :]
            self.context = ForwardContext(self.rows if rows is None else rows, pos.masked_fill(columns == 0, -1))
        return self.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=pos,
            use_cache=True,
            **{self.cache_kwarg: cache, **self.extra, **kwargs},
        )

    def step(self):
        """One batched forward of every row's last token (the cache and mask grow by one column)."""
        ones = torch.ones((len(self.rows), 1), dtype=self.attention.dtype, device=self.device)
        self.attention = torch.cat([self.attention, ones], -1)
        return self.forward(self.last_ids, self.last_pos)

    def start_static(self, rows: list[RowState]):
        """A fresh batch: all prompts prefilled together, left-padded; returns the forward output (first step)."""
        ids, self.attention = _left_pad([r.prompt_ids for r in rows], self.pad_id, self.device)
        positions = (self.attention.cumsum(-1) - 1).masked_fill(self.attention == 0, 1)
        self.rows = list(rows)
        self._renumber()
        self.cache = _new_cache(self.model, len(rows))
        output = self.forward(ids, positions)
        self.last_ids, self.last_pos = ids[:, -1:], positions[:, -1:]
        return output

    def join(self, rows: list[RowState]) -> None:
        """Splice `rows` in: their prompts but the last token are prefilled (one padded forward of the joiners)
        and appended to the cache; the last prompt token goes through the next `step` with every other row."""
        prefixes = [r.prompt_ids[:-1] for r in rows]
        side_cache, side_mask = None, torch.zeros((len(rows), 0), dtype=torch.long, device=self.device)
        if any(prefixes):
            ids, side_mask = _left_pad(prefixes, self.pad_id, self.device)
            positions = (side_mask.cumsum(-1) - 1).masked_fill(side_mask == 0, 1)
            side_cache = _new_cache(self.model, len(rows))
            self.forward(ids, positions, attention=side_mask, cache=side_cache, rows=list(rows))
        if self.cache is None:
            self.cache = side_cache if side_cache is not None else _new_cache(self.model, len(rows))
            self.attention = side_mask
        else:
            width = max(self.attention.shape[1], side_mask.shape[1])
            for main, side in zip(
                self.cache.layers, side_cache.layers if side_cache is not None else [None] * len(self.cache.layers)
            ):
                if not main.is_initialized:
                    continue
                new_keys = _blank_rows(main.keys, len(rows)) if side is None else _masked(side.keys, side_mask)
                new_values = _blank_rows(main.values, len(rows)) if side is None else _masked(side.values, side_mask)
                main.keys = torch.cat([_pad_columns(main.keys, width), _pad_columns(new_keys, width)], 0)
                main.values = torch.cat([_pad_columns(main.values, width), _pad_columns(new_values, width)], 0)
            self.attention = torch.cat(
                [_pad_columns(self.attention, width, dim=-1), _pad_columns(side_mask, width, dim=-1)], 0
            )
        last_ids = torch.tensor([[r.prompt_ids[-1]] for r in rows], dtype=torch.long, device=self.device)
        last_pos = torch.tensor([[len(r.prompt_ids) - 1] for r in rows], dtype=torch.long, device=self.device)
        self.last_ids = torch.cat([self.last_ids, last_ids], 0)
        self.last_pos = torch.cat([self.last_pos, last_pos], 0)
        self.rows += rows
        self._renumber()

    def leave(self) -> None:
        """Drop finished rows from the batch and the cache columns no remaining row attends to."""
        keep = [i for i, r in enumerate(self.rows) if not r.finished]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.clear()
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.attention = self.attention.index_select(0, index)
        used = self.attention.any(0).nonzero()
        first = int(used[0]) if used.numel() else self.attention.shape[1]
        for layer in self.cache.layers:
            if layer.is_initialized:
                layer.keys = layer.keys.index_select(0, index)[:, :, first:]
                layer.values = layer.values.index_select(0, index)[:, :, first:]
        self.attention = self.attention[:, first:]
        self.last_ids = self.last_ids.index_select(0, index)
        self.last_pos = self.last_pos.index_select(0, index)
        self._renumber()

    def clear(self) -> None:
        hooked = self.hooked
        self.__init__(self.model, self.device, self.extra, self.pad_id)
        self.hooked = hooked

    def _renumber(self) -> None:
        for i, row in enumerate(self.rows):
            row.row = i


def _pad_columns(t: torch.Tensor, width: int, dim: int = -2) -> torch.Tensor:
    """Left-pad `t` with zeros along `dim` to `width` columns."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim)


def _blank_rows(like: torch.Tensor, n: int) -> torch.Tensor:
    return like.new_zeros((n, like.shape[1], 0, like.shape[3]))


def _masked(kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Padding positions hold whatever the model computed for them; zeros keep the spliced cache finite.
    return torch.where(mask.bool()[:, None, :, None], kv, torch.zeros((), dtype=kv.dtype, device=kv.device))


@torch.inference_mode()
def decode_batch(
    lm,
    prompts: Sequence[str | list[int]],
    config: DecodeConfig,
    plugins: Sequence[Any] = (),
    keys: Sequence[Any] | None = None,
    seeds: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Decode one unit of prompts through `config.batch_size` slots with `config.schedule` (see `decode`).

    Prompts are admitted in their order; results come back in that order.
    """
    kinds = split_plugins(plugins)
    hooks: list[HiddenStateHook] = kinds[HiddenStateHook]
    processors: list[LogitsProcessor] = kinds[LogitsProcessor]
    reruns: list[LayerRerun] = kinds[LayerRerun]
    observers: list[Observer] = kinds[Observer]
    policies: list[ContinuationPolicy] = kinds[ContinuationPolicy]
    model, tokenizer = lm.model, lm.tokenizer
    device = lm.device
    prompt_ids = encode_prompts(lm, prompts, config.add_special_tokens)
    n = len(prompt_ids)
    keys = list(range(n)) if keys is None else list(keys)
    all_rows = [RowState(row=-1, key=keys[i], prompt_ids=prompt_ids[i], budget=config.max_new_tokens) for i in range(n)]
    seconds = {id(r): 0.0 for r in all_rows}
    eos_ids = set(lm.eos_token_ids())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
    generator_of: dict[int, torch.Generator] = {}
    if config.do_sample:
        seeds = list(seeds) if seeds is not None else [config.seed + i for i in range(n)]
        generator_of = {id(r): torch.Generator(device="cpu").manual_seed(int(s)) for r, s in zip(all_rows, seeds)}
    rules: list[StoppingRule] = default_stopping_rules(eos_ids, config.stop_strings, tokenizer)
    stopper = RowStopper(rules + kinds[StoppingRule], policies)
    joining = config.schedule == "join" and joinable(model)
    slots = max(1, min(config.batch_size, n))

    extra = dict(config.forward_kwargs)
    if _accepts(model.forward, "logits_to_keep") and not hasattr(model, "make_cache"):
        extra["logits_to_keep"] = 1
    observed_layers: list = []
    for observer in observers:
        observed_layers += [k for k in observer.layers if k not in observed_layers]
    if (observed_layers or reruns or hooks) and lm.layers is None:
        raise UserError(f"model '{lm.name}' does not support layer capture, hooks or layer re-run")
    if hooks and reruns:
        raise UserError("hidden-state hooks (steering, patching) cannot be combined with a layer re-run (rr) yet")
    hidden: dict = {}
    batch = _Batch(model, device, extra, pad_id)
    batch.hooked = bool(hooks)
    hook_points = [(point, _hook_fn(hook, point, batch)) for hook in hooks for point in hook.points]
    pending = list(reversed(all_rows))  # pop() admits in input order
    clock = time.perf_counter()
    recorder = None
    with contextlib.ExitStack() as attached:
        if hook_points:  # before capture: observers see the states the hooks wrote
            attached.enter_context(attach_hooks(lm.layers, hook_points))
        if observed_layers:
            attached.enter_context(record_layers(lm.layers, observed_layers, hidden))
        if reruns:
            recorder = LayerInputRecorder(lm.layers, {r.layer for r in reruns})
            attached.callback(recorder.close)
        step = 0
        while pending or batch.rows:
            output = None
            free = slots - len(batch.rows)
            if pending and free > 0 and (joining or not batch.rows):
                newcomers = [pending.pop() for _ in range(min(free, len(pending)))]
                for row in newcomers:
                    stopper.start(row)
                if joining:
                    batch.join(newcomers)
                else:
                    output = batch.start_static(newcomers)
            if output is None:
                output = batch.step()
            rows = batch.rows
            generators = [generator_of[id(r)] for r in rows] if generator_of else None
            active = torch.tensor([not r.finished for r in rows])
            state = StepState(step=step, rows=rows, active=active, lm=lm, model_output=output)
            tokens = _choose(output, processors, state, config, generators)
            queued = torch.tensor([bool(r.queue) for r in rows])
            for rerun in reruns:
                selected = rerun.select(state, tokens).cpu() & active & ~queued
                if selected.any():
                    output = rerun_last_position(
                        lm,
                        batch.cache,
                        lambda: batch.forward(batch.last_ids, batch.last_pos),
                        rerun.layer,
                        rerun.repeats,
                        selected,
                        recorder.inputs[rerun.layer],
                    )
                    state.model_output = output
                    second = _choose(output, processors, state, config, generators)
                    for i in selected.nonzero().flatten().tolist():
                        rows[i].events.append(
                            {
                                "type": "rerun",
                                "step": rows[i].n_generated,
                                "layer": rerun.layer,
                                "first": int(tokens[i]),
                                "second": int(second[i]),
                            }
                        )
                    tokens = torch.where(selected.to(tokens.device), second, tokens)
            tokens, forced = _settle_tokens(rows, tokens, pad_id, stopper, state)
            state.forced = forced
            for observer in observers:
                observer.on_step(state, hidden, tokens)
            _advance_rows(rows, tokens, forced, stopper, state, observers)
            now = time.perf_counter()
            for row in rows:  # each step's time is shared by the rows it served
                seconds[id(row)] += (now - clock) / len(rows)
            clock = now
            still = [not r.finished for r in rows]
            if progress is not None:
                progress(sum(still))
            batch.last_ids = tokens.view(len(rows), 1).to(device)
            batch.last_pos = batch.last_pos + 1
            if joining:
                batch.leave()
            elif not any(still):
                batch.clear()
            step += 1

    return [
        Generation(
            key=r.key,
            prompt_ids=r.prompt_ids,
            token_ids=r.token_ids,
            forced=r.forced,
            text=tokenizer.decode(r.token_ids, skip_special_tokens=True),
            stop_reason=r.stop_reason or "",
            events=r.events,
            seconds=seconds[id(r)],
        )
        for r in all_rows
    ]


def _hook_fn(hook: HiddenStateHook, point: str, batch: _Batch):
    def call(hidden: torch.Tensor) -> torch.Tensor | None:
        return hook(point, hidden, batch.context)

    return call


def _choose(
    output, processors: list[LogitsProcessor], state: StepState, config: DecodeConfig, generators
) -> torch.Tensor:
    logits = output.logits[:, -1, :].float()
    nonfinite = ~torch.isfinite(logits).all(dim=-1)
    if nonfinite.any():
        # Numerical guard: a row whose raw logits hold NaN/Inf stops here and is reported, the batch goes on.
        for i in nonfinite.nonzero().flatten().tolist():
            row = state.rows[i]
            if not row.finished and not any(e.get("type") == "nonfinite_logits" for e in row.events):
                row.events.append({"type": "nonfinite_logits", "step": row.n_generated})
        logits = torch.nan_to_num(logits, nan=0.0, posinf=0.0, neginf=0.0)
    for processor in processors:
        logits = processor(logits, state)
    return choose_tokens(logits, config.do_sample, config.temperature, config.top_p, generators).cpu()


def _settle_tokens(
    rows: list[RowState], tokens: torch.Tensor, pad_id: int, stopper: RowStopper, state: StepState
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, forced): finished rows get padding, queued injections override the choice, and a stopping
    token that a continuation replaces (EOS) becomes the continuation's first token."""
    chosen = tokens.tolist()
    forced = [False] * len(rows)
    for row in rows:
        i = row.row
        if row.finished:
            chosen[i] = pad_id
        else:
            chosen[i], forced[i] = stopper.settle(row, chosen[i], state)
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(forced, dtype=torch.bool)


def _advance_rows(
    rows: list[RowState],
    tokens: torch.Tensor,
    forced: torch.Tensor,
    stopper: RowStopper,
    state: StepState,
    observers: list[Observer],
) -> None:
    token_list, forced_list = tokens.tolist(), forced.tolist()
    for row in rows:
        if row.finished:
            continue
        i = row.row
        if any(e.get("type") == "nonfinite_logits" for e in row.events):
            row.token_ids.append(token_list[i])
            row.forced.append(forced_list[i])
            reason = "numerical"
        else:
            reason = stopper.advance(row, token_list[i], forced_list[i], state)
        if reason is None:
            continue
        row.finished = True
        row.stop_reason = reason
        for observer in observers:
            observer.on_finish(row)
