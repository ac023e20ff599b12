"""The vLLM engine for generation-only methods: baseline, suppression, TTTS and budget forcing.

vLLM is imported lazily (only when a `VllmModel` is built), so everything above `VllmModel` — the
translation of a method's plug-ins into a `VllmPlan` and the request/continuation logic — is plain Python
that runs and is tested without vLLM or a GPU.

How the HF plug-ins map onto vLLM requests:
- suppression (`TokenSuppressor`): the request's `allowed_token_ids` is every id except the suppressed ones;
  vLLM applies it as a logits mask (-inf elsewhere), exactly what the HF processor does.
- TTTS / budget forcing (`ThinkingTokenScaling`, `BudgetForcing`): a request stops where the HF loop would
  ask its continuation policy (EOS, a stop string, the budget); `absorb` applies the same rule to the
  finished output (drop the EOS, inject a thinking word / "Wait" / the answer prompt, extend the budget)
  and `next_request` continues from prompt + everything generated so far (prefix caching makes the
  re-prefill cheap). `EosBlocker` becomes the request's `min_tokens`.
Token accounting follows the HF loop: injected tokens count towards the budget and are marked forced; an
EOS that a continuation replaces is dropped; a final EOS is kept in `token_ids`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from reasonlens.errors import UserError

FinishedOutput = tuple[list[int], str]  # (new token ids, "eos" | "stop" | "budget")


@dataclass(frozen=True)
class VllmPlan:
    """A method as vLLM requests: a suppression mask and a continuation rule (kind plain | ttts | budget-force)."""

    kind: str = "plain"
    banned_ids: tuple[int, ...] = ()
    budget: int | None = None  # ttts / budget-force: the token budget B
    word_ids: tuple[tuple[int, ...], ...] = ()  # ttts: thinking words, used in turn
    wait_ids: tuple[int, ...] = ()  # budget-force: "Wait"
    min_tokens: int = 0  # budget-force: stops before this many tokens become "Wait"
    block_eos: bool = False  # budget-force: EOS impossible below min_tokens (vLLM min_tokens)
    answer_ids: tuple[int, ...] = ()
    answer_tokens: int = 0


def plan_from_plugins(plugins: Sequence[Any]) -> VllmPlan:
    """Translate a method's HF plug-ins (built by `interventions.methods.build_plugins`) into a plan; refuse,
    in one line, any plug-in that needs the model's layers."""
    from reasonlens.interventions.scaling import BudgetForcing, EosBlocker, ThinkingTokenScaling
    from reasonlens.interventions.suppress import TokenSuppressor

    plan = VllmPlan()
    banned: set[int] = set()
    for plugin in plugins:
        if isinstance(plugin, TokenSuppressor):
            banned.update(plugin.token_ids)
        elif isinstance(plugin, ThinkingTokenScaling):
            plan = replace(
                plan,
                kind="ttts",
                budget=plugin.budget,
                word_ids=tuple(tuple(w) for w in plugin.word_ids),
                answer_ids=tuple(plugin.answer_ids),
                answer_tokens=plugin.answer_tokens,
            )
        elif isinstance(plugin, BudgetForcing):
            plan = replace(
                plan,
                kind="budget-force",
                budget=plugin.budget,
                wait_ids=tuple(plugin.wait_ids),
                min_tokens=plugin.min_tokens,
                answer_ids=tuple(plugin.answer_ids),
                answer_tokens=plugin.answer_tokens,
            )
        elif isinstance(plugin, EosBlocker):
            plan = replace(plan, block_eos=True)
        else:
            raise UserError(
                f"--engine vllm cannot run the {type(plugin).__name__} plug-in (it needs the model's "
                "layers); use --engine hf"
            )
    if plan.block_eos and plan.kind != "budget-force":
        raise UserError("--engine vllm: EOS blocking is only supported with --method budget-force")
    return replace(plan, banned_ids=tuple(sorted(banned)))


@dataclass
class Trace:
    """One sample across its requests: everything generated so far, as the HF loop's RowState keeps it."""

    key: Any
    prompt_ids: list[int]
    budget: int
    token_ids: list[int] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    answering: bool = False
    extensions: int = 0
    n_requests: int = 0
    stop_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None


@dataclass(frozen=True)
class Request:
    """The next vLLM request of a trace: continue from `prompt_ids` for at most `max_tokens` tokens."""

    key: Any
    prompt_ids: list[int]
    max_tokens: int
    min_tokens: int = 0
    round: int = 0


def start_trace(key: Any, prompt_ids: Sequence[int], plan: VllmPlan, max_new_tokens: int) -> Trace:
    """A fresh trace; budgeted methods set the budget (as their `on_start` does in the HF loop)."""
    budget = plan.budget if plan.kind != "plain" and plan.budget is not None else max_new_tokens
    return Trace(key=key, prompt_ids=list(prompt_ids), budget=int(budget))


def next_request(trace: Trace, plan: VllmPlan) -> Request | None:
    """The request that continues `trace`, or None when it is finished."""
    if trace.finished:
        return None
    n = len(trace.token_ids)
    remaining = trace.budget - n
    if remaining < 1:  # absorb never leaves an unfinished trace at its budget
        raise AssertionError(f"trace {trace.key}: unfinished with no budget left")
    min_tokens = max(0, plan.min_tokens - n) if plan.block_eos else 0
    return Request(
        trace.key, trace.prompt_ids + trace.token_ids, remaining, min(min_tokens, remaining), trace.n_requests
    )


def finish_reason_of(finish_reason: str | None, stop_reason: Any) -> str:
    """vLLM's (finish_reason, stop_reason) as the HF loop's stop reason: "eos" | "stop" | "budget"."""
    if finish_reason == "length":
        return "budget"
    if finish_reason == "stop":
        return "stop" if isinstance(stop_reason, str) else "eos"  # None: EOS; an int: a stop token id
    raise RuntimeError(f"vLLM request ended with finish_reason {finish_reason!r}")


def _continuation(trace: Trace, plan: VllmPlan, reason: str, n_generated: int) -> list[int] | None:
    """What the HF continuation policy would inject at this stop (`_ForcedAnswer.on_stop`), or None."""
    if plan.kind == "plain" or trace.answering:
        return None
    if reason == "budget":
        trace.answering = True
        tokens, extra, note = list(plan.answer_ids), len(plan.answer_ids) + plan.answer_tokens, "force answer"
    else:
        if plan.kind == "ttts":
            if n_generated >= trace.budget:
                return None
            tokens = list(plan.word_ids[trace.extensions % len(plan.word_ids)])
        elif n_generated < plan.min_tokens:  # budget-force
            tokens = list(plan.wait_ids)
        else:
            return None
        trace.extensions += 1
        extra, note = 0, "extend"
    trace.budget += extra
    trace.events.append({"type": "continue", "reason": reason, "step": n_generated, "tokens": tokens, "note": note})
    return tokens


def absorb(trace: Trace, plan: VllmPlan, new_ids: Sequence[int], reason: str, eos_ids: Sequence[int]) -> None:
    """Append a finished request's tokens to `trace` and decide, as the HF loop would, whether it stops
    (sets `stop_reason`) or continues (injects forced tokens; the next request picks up from there)."""
    trace.n_requests += 1
    _stop(trace, plan, list(new_ids), reason, eos_ids)


def _stop(trace: Trace, plan: VllmPlan, new_ids: list[int], reason: str, eos_ids: Sequence[int]) -> None:
    if reason == "eos":
        eos = new_ids.pop() if new_ids and new_ids[-1] in set(eos_ids) else None
        _append(trace, new_ids, forced=False)
        tokens = _continuation(trace, plan, "eos", len(trace.token_ids))
        if tokens is None:
            if eos is not None:
                _append(trace, [eos], forced=False)
            trace.stop_reason = "eos"
            return
    else:
        _append(trace, new_ids, forced=False)
        tokens = _continuation(trace, plan, reason, len(trace.token_ids))
        if tokens is None:
            trace.stop_reason = reason
            return
    _append(trace, tokens, forced=True)
    if len(trace.token_ids) >= trace.budget:  # the injection itself used up the budget
        _stop(trace, plan, [], "budget", eos_ids)


def _append(trace: Trace, ids: Sequence[int], forced: bool) -> None:
    trace.token_ids.extend(int(i) for i in ids)
    trace.forced.extend([forced] * len(ids))


def run_traces(
    traces: list[Trace],
    plan: VllmPlan,
    eos_ids: Sequence[int],
    generate: Callable[[list[Request]], list[FinishedOutput]],
    on_round: Callable[[int], None] | None = None,
) -> list[Trace]:
    """Submit every unfinished trace's next request together (one vLLM batch per round) until all finish."""
    by_key = {t.key: t for t in traces}
    while True:
        requests = [r for t in traces if (r := next_request(t, plan)) is not None]
        if not requests:
            return traces
        outputs = generate(requests)
        if len(outputs) != len(requests):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(requests)} requests")
        for request, (ids, reason) in zip(requests, outputs):
            absorb(by_key[request.key], plan, ids, reason, eos_ids)
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

    def generate(
        self, requests: list[Request], decode, seeds: dict[Any, int], allowed: list[int] | None
    ) -> list[FinishedOutput]:
        """One vLLM batch: every request at once (continuous batching inside vLLM)."""
        from vllm import SamplingParams

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
            if allowed is not None:
                kwargs["allowed_token_ids"] = allowed
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
    """`execute`'s chunk decoder for the vLLM engine: the method's plug-ins become a plan, every sample of the
    chunk runs as one vLLM batch per continuation round; returns the HF loop's `Generation` records."""
    from reasonlens.decode import Generation

    plan = plan_from_plugins(plugins)
    allowed = allowed_token_ids(lm.vocab_size, plan.banned_ids)
    eos_ids = lm.eos_token_ids()

    def decode_chunk(prompts: list, keys: list, seeds: list, progress: Callable[[int], None]) -> list:
        started = time.perf_counter()
        traces = []
        for prompt, key in zip(prompts, keys):
            ids = (
                prompt
                if not isinstance(prompt, str)
                else lm.tokenizer(prompt, add_special_tokens=decode.add_special_tokens)["input_ids"]
            )
            traces.append(start_trace(key, ids, plan, decode.max_new_tokens))
        seed_of = dict(zip(keys, seeds))
        run_traces(
            traces, plan, eos_ids, lambda requests: lm.generate(requests, decode, seed_of, allowed), on_round=progress
        )
        seconds = (time.perf_counter() - started) / max(1, len(traces))
        return [
            Generation(
                key=t.key,
                prompt_ids=t.prompt_ids,
                token_ids=t.token_ids,
                forced=t.forced,
                text=lm.tokenizer.decode(t.token_ids, skip_special_tokens=True),
                stop_reason=t.stop_reason or "",
                events=t.events,
                seconds=seconds,
            )
            for t in traces
        ]

    return decode_chunk
