"""The vLLM engine for generation-only methods: baseline, suppression, NoWait, TTTS and budget forcing.

vLLM is imported lazily (only when a `VllmModel` is built), so everything above `VllmModel` - the row-state
adapter that drives a method's plug-ins over vLLM requests - is plain Python that runs and is tested without
vLLM or a GPU.

The engine runs the same plug-in objects as the HF decode loop, through the same per-row code
(`decode.rows.RowStopper`), on `RowState`s:
- logits processors describe their effect on a whole request (`LogitsProcessor.request_constraints`): banned
  ids become the request's `allowed_token_ids` (vLLM masks the rest with -inf, what `TokenSuppressor` does),
  an EOS blocked below a length becomes its `min_tokens` (`EosBlocker`). A processor without that description
  needs the loop and is refused, as are plug-ins that need the model's layers.
- a request ends where the HF loop may stop (EOS, a stop string, the row's budget as `max_tokens`); its tokens
  are then replayed one by one through the loop's stopping rules (the built-in ones and the caller's) and
  continuation policies (TTTS, budget forcing): a stop may become injected tokens and a larger budget, and the
  next request continues from prompt + everything so far (prefix caching makes the re-prefill cheap). Tokens
  past the point where the loop would have stopped or injected are dropped.
Token accounting is the HF loop's: injected tokens count towards the budget and are marked forced; an EOS
that a continuation replaces is dropped; a final EOS is kept in `token_ids`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from reasonlens.decode.plugins import (
    ContinuationPolicy,
    LogitsProcessor,
    RowState,
    StepState,
    StoppingRule,
    split_plugins,
)
from reasonlens.decode.rows import RowStopper, default_stopping_rules
from reasonlens.errors import UserError

FinishedOutput = tuple[list[int], str]  # (new token ids, "eos" | "stop" | "budget")


@dataclass(frozen=True)
class Request:
    """The next vLLM request of a row: continue from `prompt_ids` for at most `max_tokens` tokens."""

    key: Any
    prompt_ids: list[int]
    max_tokens: int
    min_tokens: int = 0  # EOS impossible before this many new tokens
    banned_ids: tuple[int, ...] = ()  # ids never chosen in this request
    round: int = 0


class RowAdapter:
    """A method's plug-ins, driven over requests of an engine that generates a whole request at a time.

    `start` makes a sample's `RowState` (policies set its budget, as `on_start` does in the loop),
    `next_request` turns the row into a request, `absorb` replays a finished request's tokens through the
    loop's stopping rules and continuation policies.
    """

    def __init__(
        self,
        plugins: Sequence[Any],
        eos_ids: Sequence[int],
        max_new_tokens: int,
        stop_strings: Sequence[str] = (),
        tokenizer=None,
        lm: Any = None,
    ):
        kinds = split_plugins(plugins)
        for kind, found in kinds.items():
            if found and kind not in (LogitsProcessor, StoppingRule, ContinuationPolicy):
                raise UserError(
                    f"--engine vllm cannot run the {type(found[0]).__name__} plug-in (it needs the model's "
                    "layers); use --engine hf"
                )
        self.processors: list[LogitsProcessor] = kinds[LogitsProcessor]
        probe = RowState(row=0, key=None, prompt_ids=[], budget=max_new_tokens)
        for processor in self.processors:
            if processor.request_constraints(probe) is None:
                raise UserError(
                    f"--engine vllm cannot apply the {type(processor).__name__} logits processor (it needs a "
                    "per-step decode loop); use --engine hf"
                )
        rules = default_stopping_rules(eos_ids, stop_strings, tokenizer) + kinds[StoppingRule]
        self.stopper = RowStopper(rules, kinds[ContinuationPolicy])
        self.max_new_tokens = int(max_new_tokens)
        self.lm = lm
        self.rounds: dict[int, int] = {}

    def start(self, key: Any, prompt_ids: Sequence[int]) -> RowState:
        row = RowState(row=0, key=key, prompt_ids=list(prompt_ids), budget=self.max_new_tokens)
        self.stopper.start(row)
        self.rounds[id(row)] = 0
        return row

    def next_request(self, row: RowState) -> Request | None:
        """The request that continues `row`, or None when it is finished."""
        if row.finished:
            return None
        n = row.n_generated
        remaining = row.budget - n
        if remaining < 1:  # the budget rule never leaves an unfinished row at its budget with nothing queued
            raise AssertionError(f"row {row.key}: unfinished with no budget left")
        banned: set[int] = set()
        min_tokens = 0
        for processor in self.processors:
            constraints = processor.request_constraints(row)
            if constraints is None:
                raise AssertionError(f"{type(processor).__name__} has no request constraints for row {row.key}")
            banned |= constraints.banned_ids
            min_tokens = max(min_tokens, constraints.min_tokens - n)
        return Request(
            row.key,
            row.prompt_ids + row.token_ids,
            remaining,
            min(max(0, min_tokens), remaining),
            tuple(sorted(banned)),
            self.rounds.get(id(row), 0),
        )

    def absorb(self, row: RowState, new_ids: Sequence[int], reason: str) -> None:
        """Take a finished request's tokens into `row`, deciding at every token what the HF loop would decide
        (stop, or inject a continuation and go on); `reason` is the engine's account of why the request ended,
        used only when no rule explains the end (e.g. a stop string the tokenizer splits differently)."""
        self.rounds[id(row)] = self.rounds.get(id(row), 0) + 1
        state = StepState(step=row.n_generated, rows=[row], active=torch.ones(1, dtype=torch.bool), lm=self.lm)
        explained = False
        for token in new_ids:
            self._step(row, int(token), state)
            if row.finished or row.queue:
                explained = True
                break
        if not explained and not row.finished:
            continuation = self.stopper.ask(row, reason, state)
            if continuation is not None and continuation.tokens:
                row.queue.extend(continuation.tokens)
            else:
                row.finished, row.stop_reason = True, reason
        while row.queue and not row.finished:  # injected tokens are taken at once, one "step" each
            self._step(row, -1, state)

    def _step(self, row: RowState, token: int, state: StepState) -> None:
        token, forced = self.stopper.settle(row, token, state)
        reason = self.stopper.advance(row, token, forced, state)
        if reason is not None:
            row.finished, row.stop_reason = True, reason

    def n_requests(self, row: RowState) -> int:
        return self.rounds.get(id(row), 0)


def finish_reason_of(finish_reason: str | None, stop_reason: Any) -> str:
    """vLLM's (finish_reason, stop_reason) as the HF loop's stop reason: "eos" | "stop" | "budget"."""
    if finish_reason == "length":
        return "budget"
    if finish_reason == "stop":
        return "stop" if isinstance(stop_reason, str) else "eos"  # None: EOS; an int: a stop token id
    raise RuntimeError(f"vLLM request ended with finish_reason {finish_reason!r}")


def run_rows(
    adapter: RowAdapter,
    rows: list[RowState],
    generate: Callable[[list[Request]], list[FinishedOutput]],
    on_round: Callable[[int], None] | None = None,
) -> list[RowState]:
    """Submit every unfinished row's next request together (one vLLM batch per round) until all finish."""
    by_key = {row.key: row for row in rows}
    while True:
        requests = [r for row in rows if (r := adapter.next_request(row)) is not None]
        if not requests:
            return rows
        outputs = generate(requests)
        if len(outputs) != len(requests):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(requests)} requests")
        for request, (ids, reason) in zip(requests, outputs):
            adapter.absorb(by_key[request.key], ids, reason)
        if on_round is not None:
            on_round(sum(len(ids) for ids, _ in outputs))


def allowed_token_ids(vocab_size: int, banned_ids: Sequence[int]) -> list[int] | None:
    """Suppression as vLLM's allowed-token mask (None when nothing is suppressed)."""
    if not banned_ids:
        return None
    banned = set(banned_ids)
    return [i for i in range(vocab_size) if i not in banned]


def request_seed(base_seed: int, request: Request) -> int:
    """Per-request sampling seed: the sample's seed (config seed + index), varied by continuation round."""
    return int(base_seed) + 1_000_003 * int(request.round)


# -- the vLLM side (needs vllm) ------------------------------------------------------------------------------------


def vllm_dtype(dtype: str) -> str:
    """vLLM's name of one of the toolkit's dtypes (`bf16` -> `bfloat16`)."""
    from reasonlens.models.dtypes import torch_dtype

    return str(torch_dtype(dtype, "--dtype")).removeprefix("torch.")


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise UserError("--engine vllm needs vLLM and a CUDA GPU: pip install 'reasonlens[vllm]'") from None
    return vllm


def _model_path(spec: str) -> str:
    """A directory or hub id vLLM can open (built-in names resolve to their converted directory)."""
    from reasonlens.models import resolve_builtin

    if spec.startswith("tiny-"):
        raise UserError(
            f"--engine vllm: '{spec}' is built in memory for the HF engine; give a model directory or hub id"
        )
    if spec.endswith(".gguf"):
        raise UserError(f"--engine vllm: GGUF files are not supported here ({spec}); use --engine hf")
    path = resolve_builtin(spec)
    return str(path) if path is not None else str(Path(spec).expanduser()) if Path(spec).expanduser().is_dir() else spec


class TokenizerOnlyModel:
    """What a driver that does not decode needs to resolve method options: name and tokenizer, no layers."""

    layers = None
    model = None  # no torch module here: code that inspects `lm.model` (e.g. position limits) skips it

    def __init__(self, spec: str, tokenizer, eos_ids: list[int]):
        self.spec = spec
        self.name = Path(spec).name or spec
        self.tokenizer = tokenizer
        self._eos = eos_ids

    def eos_token_ids(self) -> list[int]:
        return list(self._eos)


def tokenizer_only_model(spec: str, trust_remote_code: bool = False) -> TokenizerOnlyModel:
    from transformers import AutoTokenizer, GenerationConfig

    path = _model_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    eos: list[int] = []
    try:
        gen = GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:
        gen = None
    for i in (gen if isinstance(gen, (list, tuple)) else [gen]) + [tokenizer.eos_token_id]:
        if i is not None and int(i) not in eos:
            eos.append(int(i))
    return TokenizerOnlyModel(spec, tokenizer, eos)


class VllmModel(TokenizerOnlyModel):
    """A vLLM `LLM` (one replica; `tensor_parallel_size` GPUs) with the fields the runner reads."""

    def __init__(
        self,
        spec: str,
        dtype: str = "bf16",
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
    ):
        vllm = _import_vllm()
        dtype = vllm_dtype(dtype)
        base = tokenizer_only_model(spec, trust_remote_code)
        super().__init__(spec, base.tokenizer, base.eos_token_ids())
        kwargs: dict[str, Any] = {}
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.llm = vllm.LLM(
            model=_model_path(spec),
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            seed=seed,
            **kwargs,
        )
        config = self.llm.llm_engine.model_config
        self.hidden_size = int(config.get_hidden_size())
        self.vocab_size = int(config.get_vocab_size())
        self.device = "cuda"

    def generate(self, requests: list[Request], decode, seeds: dict[Any, int]) -> list[FinishedOutput]:
        """One vLLM batch: every request at once (continuous batching inside vLLM)."""
        from vllm import SamplingParams

        allowed_of: dict[tuple[int, ...], list[int] | None] = {}
        params = []
        for request in requests:
            kwargs: dict[str, Any] = {
                "max_tokens": request.max_tokens,
                "min_tokens": request.min_tokens,
                "stop": list(decode.stop_strings) or None,
                "skip_special_tokens": True,
            }
            if decode.do_sample:
                kwargs.update(
                    temperature=decode.temperature, top_p=decode.top_p, seed=request_seed(seeds[request.key], request)
                )
            else:
                kwargs.update(temperature=0.0)
            if request.banned_ids not in allowed_of:
                allowed_of[request.banned_ids] = allowed_token_ids(self.vocab_size, request.banned_ids)
            if allowed_of[request.banned_ids] is not None:
                kwargs["allowed_token_ids"] = allowed_of[request.banned_ids]
            params.append(SamplingParams(**kwargs))
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        finished = []
        for output in outputs:
            completion = output.outputs[0]
            finished.append(
                (list(completion.token_ids), finish_reason_of(completion.finish_reason, completion.stop_reason))
            )
        return finished


def vllm_decoder(lm: VllmModel, plugins: Sequence[Any], decode):
    """`execute`'s chunk decoder for the vLLM engine: the method's plug-ins drive the rows through a
    `RowAdapter`, every sample of the chunk runs as one vLLM batch per continuation round; returns the HF
    loop's `Generation` records."""
    from reasonlens.decode import Generation

    # built once, so a plug-in vLLM cannot run is refused before any request
    adapter = RowAdapter(plugins, lm.eos_token_ids(), decode.max_new_tokens, decode.stop_strings, lm.tokenizer, lm)

    def decode_chunk(prompts: list, keys: list, seeds: list, progress: Callable[[int], None]) -> list:
        started = time.perf_counter()
        rows = []
        for prompt, key in zip(prompts, keys):
            ids = (
                prompt
                if not isinstance(prompt, str)
                else lm.tokenizer(prompt, add_special_tokens=decode.add_special_tokens)["input_ids"]
            )
            rows.append(adapter.start(key, ids))
        seed_of = dict(zip(keys, seeds))
        run_rows(adapter, rows, lambda requests: lm.generate(requests, decode, seed_of), on_round=progress)
        seconds = (time.perf_counter() - started) / max(1, len(rows))
        return [
            Generation(
                key=row.key,
                prompt_ids=row.prompt_ids,
                token_ids=row.token_ids,
                forced=row.forced,
                text=lm.tokenizer.decode(row.token_ids, skip_special_tokens=True),
                stop_reason=row.stop_reason or "",
                events=row.events,
                seconds=seconds,
            )
            for row in rows
        ]

    return decode_chunk
