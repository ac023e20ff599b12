"""THE decode loop: batched, left-padded, KV-cached generation with plug-ins.

Every token reasonlens generates comes from `decode`. Interventions are plug-ins (see plugins.py),
never copies of this loop.
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
    LayerRerun,
    LogitsProcessor,
    Observer,
    RowState,
    StepState,
)
from reasonlens.decode.rerun import LayerInputRecorder, rerun_last_position
from reasonlens.decode.sampling import choose_tokens
from reasonlens.errors import UserError
from reasonlens.models.hooks import record_layers


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

    def validate(self) -> "DecodeConfig":
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.do_sample and not self.temperature > 0:
            raise UserError(f"--temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed, "stop_strings": list(self.stop_strings),
                "batch_size": self.batch_size, "add_special_tokens": self.add_special_tokens,
                "forward_kwargs": {k: v for k, v in self.forward_kwargs.items()
                                   if isinstance(v, (int, float, str, bool, list, tuple))}}


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


def _split_plugins(plugins: Sequence[Any]):
    kinds = (LogitsProcessor, LayerRerun, Observer, ContinuationPolicy)
    for plugin in plugins:
        if not isinstance(plugin, kinds):
            raise TypeError(f"{type(plugin).__name__} is not a decode plug-in ({', '.join(k.__name__ for k in kinds)})")
    return ([p for p in plugins if isinstance(p, LogitsProcessor)], [p for p in plugins if isinstance(p, LayerRerun)],
            [p for p in plugins if isinstance(p, Observer)], [p for p in plugins if isinstance(p, ContinuationPolicy)])


def _left_pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq):] = 1
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
        ids = list(prompt) if not isinstance(prompt, str) else lm.tokenizer(
            prompt, add_special_tokens=add_special_tokens)["input_ids"]
        if isinstance(prompt, str) and add_special_tokens and bos is not None and ids[:2] == [bos, bos] \
                and prompt.startswith(str(lm.tokenizer.bos_token)):
            ids = ids[1:]
        if not ids:
            raise UserError("empty prompt: nothing to condition on")
        encoded.append(ids)
    return encoded


@torch.inference_mode()
def decode(lm, prompts: Sequence[str | list[int]], config: DecodeConfig | None = None, plugins: Sequence[Any] = (),
           keys: Sequence[Any] | None = None, on_batch: Callable[[list[Generation]], None] | None = None,
           progress: Callable[[int], None] | None = None, show_progress: bool = True) -> list[Generation]:
    """Generate a completion for every prompt, `config.batch_size` prompts at a time.

    `keys` identify samples to plug-ins (default: position in `prompts`); per-row sampling seeds are
    `config.seed + position`, so sampled outputs do not depend on batch composition. `on_batch` is called
    with each finished batch (runs write results there); `progress(n_tokens)` after every step. Without a
    `progress` callback a rich progress bar on stderr counts samples and tokens (`show_progress=False`: none).
    """
    config = (config or DecodeConfig()).validate()
    keys = list(range(len(prompts))) if keys is None else list(keys)
    if len(keys) != len(prompts):
        raise ValueError("keys and prompts differ in length")
    results: list[Generation] = []
    with _default_progress(lm, len(prompts), progress, show_progress) as (step_progress, batch_done):
        for start in range(0, len(prompts), config.batch_size):
            batch = decode_batch(lm, prompts[start:start + config.batch_size], config, plugins,
                                 keys[start:start + config.batch_size],
                                 seeds=[config.seed + start + i
                                        for i in range(len(prompts[start:start + config.batch_size]))],
                                 progress=step_progress)
            if on_batch is not None:
                on_batch(batch)
            results.extend(batch)
            batch_done(len(batch))
    return results


@contextlib.contextmanager
def _default_progress(lm, total: int, progress: Callable[[int], None] | None, show: bool):
    """(per-step callback, per-batch callback): the caller's callback, or a rich bar of samples and tokens."""
    if progress is not None or not show:
        yield progress, lambda n: None
        return
    from reasonlens.runs.progress import progress_bar

    from rich.errors import LiveError

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


@torch.inference_mode()
def decode_batch(lm, prompts: Sequence[str | list[int]], config: DecodeConfig, plugins: Sequence[Any] = (),
                 keys: Sequence[Any] | None = None, seeds: Sequence[int] | None = None,
                 progress: Callable[[int], None] | None = None) -> list[Generation]:
    """Decode one batch of prompts together (see `decode`)."""
    started = time.perf_counter()
    processors, reruns, observers, policies = _split_plugins(plugins)
    model, tokenizer = lm.model, lm.tokenizer
    device = lm.device
    prompt_ids = encode_prompts(lm, prompts, config.add_special_tokens)
    batch = len(prompt_ids)
    keys = list(range(batch)) if keys is None else list(keys)
    rows = [RowState(row=i, key=keys[i], prompt_ids=prompt_ids[i], budget=config.max_new_tokens) for i in range(batch)]
    for policy in policies:
        for row in rows:
            policy.on_start(row)

    eos_ids = set(lm.eos_token_ids())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
    generators = None
    if config.do_sample:
        seeds = list(seeds) if seeds is not None else [config.seed + i for i in range(batch)]
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    stop_window = max((len(s) for s in config.stop_strings), default=0) + 8

    input_ids, attention = _left_pad(prompt_ids, pad_id, device)
    positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 1)
    cache = _new_cache(model, batch)
    extra = dict(config.forward_kwargs)
    if _accepts(model.forward, "logits_to_keep") and not hasattr(model, "make_cache"):
        extra["logits_to_keep"] = 1

    cache_kwarg = cache_argument(model)

    def forward(ids: torch.Tensor, pos: torch.Tensor):
        return model(input_ids=ids, attention_mask=attention, position_ids=pos, **{cache_kwarg: cache},
                     use_cache=True, **extra)

    observed_layers: list = []
    for observer in observers:
        observed_layers += [k for k in observer.layers if k not in observed_layers]
    if (observed_layers or reruns) and lm.layers is None:
        raise UserError(f"model '{lm.name}' does not support layer capture or layer re-run")
    hidden: dict = {}
    recorder = LayerInputRecorder(lm.layers.decoder_layers, {r.layer for r in reruns}) if reruns else None
    try:
        with record_layers(lm.layers, observed_layers, hidden) if observed_layers else _null():
            output = forward(input_ids, positions)
            last_ids, last_pos = input_ids[:, -1:], positions[:, -1:]
            active = torch.ones(batch, dtype=torch.bool)
            step = 0
            while True:
                state = StepState(step=step, rows=rows, active=active, lm=lm, model_output=output)
                tokens = _choose(output, processors, state, config, generators)
                pending = torch.tensor([bool(r.queue) for r in rows])
                for rerun in reruns:
                    selected = rerun.select(state, tokens).cpu() & active & ~pending
                    if selected.any():
                        output = rerun_last_position(lm, cache, lambda: forward(last_ids, last_pos), rerun.layer,
                                                     rerun.repeats, selected, recorder.inputs[rerun.layer])
                        state.model_output = output
                        second = _choose(output, processors, state, config, generators)
                        for i in selected.nonzero().flatten().tolist():
                            rows[i].events.append({"type": "rerun", "step": rows[i].n_generated, "layer": rerun.layer,
                                                   "first": int(tokens[i]), "second": int(second[i])})
                        tokens = torch.where(selected.to(tokens.device), second, tokens)
                forced = _apply_queues_and_eos(rows, tokens, eos_ids, pad_id, policies, state)
                state.forced = forced
                for observer in observers:
                    observer.on_step(state, hidden, tokens)
                _advance_rows(rows, tokens, forced, eos_ids, config, tokenizer, stop_window, policies, state,
                              observers)
                active = torch.tensor([not r.finished for r in rows])
                if progress is not None:
                    progress(int(active.sum()))
                if not active.any():
                    break
                last_ids = tokens.view(batch, 1).to(device)
                last_pos = last_pos + 1
                attention = torch.cat([attention, torch.ones((batch, 1), dtype=attention.dtype, device=device)], -1)
                output = forward(last_ids, last_pos)
                step += 1
    finally:
        if recorder is not None:
            recorder.close()

    seconds = (time.perf_counter() - started) / batch
    return [Generation(key=r.key, prompt_ids=r.prompt_ids, token_ids=r.token_ids, forced=r.forced,
                       text=tokenizer.decode(r.token_ids, skip_special_tokens=True), stop_reason=r.stop_reason or "",
                       events=r.events, seconds=seconds) for r in rows]


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _choose(output, processors: list[LogitsProcessor], state: StepState, config: DecodeConfig,
            generators) -> torch.Tensor:
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


def _apply_queues_and_eos(rows: list[RowState], tokens: torch.Tensor, eos_ids: set[int], pad_id: int,
                          policies: list[ContinuationPolicy], state: StepState) -> torch.Tensor:
    """Finished rows get padding, queued injections override the choice, and an EOS may become a continuation."""
    forced = torch.zeros(len(rows), dtype=torch.bool)
    for row in rows:
        i = row.row
        if row.finished:
            tokens[i] = pad_id
        elif row.queue:
            tokens[i] = row.queue.popleft()
            forced[i] = True
        elif int(tokens[i]) in eos_ids:
            continuation = _ask_policies(policies, row, "eos", state)
            if continuation is not None and continuation.tokens:
                # The EOS is dropped: the first injected token takes its place.
                tokens[i] = continuation.tokens[0]
                row.queue.extend(continuation.tokens[1:])
                forced[i] = True
    return forced


def _ask_policies(policies: list[ContinuationPolicy], row: RowState, reason: str, state: StepState):
    for policy in policies:
        continuation = policy.on_stop(row, reason, state)  # type: ignore[arg-type]
        if continuation is not None:
            row.n_continuations += 1
            row.budget += continuation.extra_budget
            row.events.append({"type": "continue", "reason": reason, "step": row.n_generated,
                               "tokens": list(continuation.tokens), "note": continuation.note})
            return continuation
    return None


def _advance_rows(rows: list[RowState], tokens: torch.Tensor, forced: torch.Tensor, eos_ids: set[int],
                  config: DecodeConfig, tokenizer, stop_window: int, policies: list[ContinuationPolicy],
                  state: StepState, observers: list[Observer]) -> None:
    for row in rows:
        if row.finished:
            continue
        i = row.row
        token, was_forced = int(tokens[i]), bool(forced[i])
        row.token_ids.append(token)
        row.forced.append(was_forced)
        reason = None
        if any(e.get("type") == "nonfinite_logits" for e in row.events):
            reason = "numerical"
        elif not was_forced and token in eos_ids:
            reason = "eos"  # no policy continued it in _apply_queues_and_eos
        elif not was_forced and config.stop_strings and _hits_stop(row, tokenizer, config.stop_strings, stop_window):
            reason = "stop"
        elif row.n_generated >= row.budget and not row.queue:
            reason = "budget"
        if reason is None:
            continue
        if reason != "eos":
            continuation = _ask_policies(policies, row, reason, state)
            if continuation is not None and continuation.tokens:
                row.queue.extend(continuation.tokens)
                continue
        row.finished = True
        row.stop_reason = reason
        for observer in observers:
            observer.on_finish(row)


def _hits_stop(row: RowState, tokenizer, stop_strings: tuple[str, ...], window: int) -> bool:
    tail = tokenizer.decode(row.token_ids[-window:], skip_special_tokens=True)
    return any(s in tail for s in stop_strings)
