"""vLLM engine: the row-state adapter, pure Python, no vLLM and no GPU needed.

The adapter drives the method's own plug-in objects (stopping rules, continuation policies, logits processors
as request constraints). Its decisions are checked against THE decode loop: a request backend that emulates
vLLM's request semantics (`max_tokens`, `min_tokens`, `allowed_token_ids`, EOS, stop strings) over the same
scores the HF loop sees must give, token for token, what the HF loop gives with the same plug-ins.
"""

import pytest
import torch

from reasonlens.analysis.tokens import words_ids
from reasonlens.decode import (
    Continuation,
    ContinuationPolicy,
    DecodeConfig,
    LogitsProcessor,
    Observer,
    RowState,
    StepState,
    StoppingRule,
)
from reasonlens.decode.loop import decode_batch
from reasonlens.engines import check_engine_support
from reasonlens.engines.vllm_engine import (
    Request,
    RowAdapter,
    allowed_token_ids,
    finish_reason_of,
    request_seed,
    run_rows,
)
from reasonlens.errors import UserError
from reasonlens.interventions.methods import build_plugins
from reasonlens.interventions.scaling import EosBlocker, encode_text

EOS = 2  # tiny models' EOS id
TTTS = {"name": "ttts", "words": ["So", "Let"], "prefix": " ", "answer_prompt": " Final:", "answer_tokens": 3}
FORCE = {
    "name": "budget-force",
    "min_fraction": 0.5,
    "block_eos": False,
    "wait": "Wait",
    "prefix": " ",
    "answer_prompt": " Final:",
    "answer_tokens": 3,
}
SUPPRESS = {"name": "suppress", "words": ["Wait", "So"], "split_starts": True}


def test_cli_combinations_refused_in_one_line():
    check_engine_support("vllm", "ttts")
    check_engine_support("hf", "rr", capture_layers=True)
    for kwargs, match in [
        ({"method": "rr"}, "--method rr .*HF engine"),
        ({"capture_layers": True}, "--layers"),
        ({"command": "mi"}, "mi reads hidden states"),
    ]:
        with pytest.raises(UserError, match=match) as info:
            check_engine_support("vllm", **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="--engine must be one of hf, vllm"):
        check_engine_support("tgi")


def test_plugins_that_need_the_loop_are_refused(tiny_llama):
    rr = {"name": "rr", "words": ["Wait"], "layer": 1, "p": 1.0, "repeats": 1, "seed": 0}
    with pytest.raises(UserError, match="RepresentationRecycling.*--engine hf"):
        RowAdapter(build_plugins(tiny_llama, rr), [EOS], 8)
    with pytest.raises(UserError, match="Observer.*--engine hf"):
        RowAdapter([Observer()], [EOS], 8)

    class PerStep(LogitsProcessor):  # no request_constraints: needs the loop
        def __call__(self, logits, state):
            return logits

    with pytest.raises(UserError, match="PerStep logits processor.*--engine hf"):
        RowAdapter([PerStep()], [EOS], 8)


def test_finish_reasons_and_masks():
    assert finish_reason_of("length", None) == "budget"
    assert finish_reason_of("stop", None) == "eos"
    assert finish_reason_of("stop", 128009) == "eos"  # a stop token id (an extra EOS)
    assert finish_reason_of("stop", "</answer>") == "stop"
    with pytest.raises(RuntimeError, match="abort"):
        finish_reason_of("abort", None)
    assert allowed_token_ids(6, [1, 4]) == [0, 2, 3, 5] and allowed_token_ids(6, []) is None
    assert request_seed(7, Request(0, [1], 4, round=0)) == 7
    assert request_seed(7, Request(0, [1], 4, round=2)) != request_seed(7, Request(0, [1], 4, round=1))


def test_request_constraints_are_what_the_processors_do(tiny_llama):
    """The per-request form of each processor masks exactly what the processor masks in the loop."""
    plugins = build_plugins(tiny_llama, SUPPRESS) + [EosBlocker([EOS], 5)]
    adapter = RowAdapter(plugins, [EOS], 20)
    row = adapter.start(0, [1, 40, 41])
    request = adapter.next_request(row)
    assert request.banned_ids == tuple(words_ids(tiny_llama.tokenizer, ["Wait", "So"], True)) != ()
    assert (request.min_tokens, request.max_tokens, request.prompt_ids) == (5, 20, [1, 40, 41])
    state = StepState(step=0, rows=[row], active=torch.ones(1, dtype=torch.bool), lm=tiny_llama)
    logits = torch.zeros(1, 300)
    for processor in plugins:
        logits = processor(logits, state)
    assert set(torch.isinf(logits[0]).nonzero().flatten().tolist()) == set(request.banned_ids) | {EOS}
    row.token_ids, row.forced = [7] * 4, [False] * 4
    assert adapter.next_request(row).min_tokens == 1  # EOS blocked for one more token
    row.token_ids, row.forced = [7] * 6, [False] * 6
    assert adapter.next_request(row).min_tokens == 0


def test_ttts_continuation_requests_step_by_step(tiny_llama):
    tok = tiny_llama.tokenizer
    so, let = encode_text(tok, " So"), encode_text(tok, " Let")
    final = encode_text(tok, " Final:")
    adapter = RowAdapter(build_plugins(tiny_llama, TTTS, 20), [EOS], max_new_tokens=999)
    row = adapter.start("a", [1, 5, 6])
    assert row.budget == 20  # the method's budget, not --max-new-tokens
    req = adapter.next_request(row)
    assert (req.prompt_ids, req.max_tokens, req.min_tokens, req.banned_ids) == ([1, 5, 6], 20, 0, ())
    adapter.absorb(row, [9, 9, 9, EOS], "eos")  # early EOS: dropped, first thinking word injected
    assert row.token_ids == [9, 9, 9, *so] and row.forced == [False] * 3 + [True] * len(so)
    assert not row.finished and row.events[-1] == {
        "type": "continue",
        "reason": "eos",
        "step": 3,
        "tokens": so,
        "note": "extend",
    }
    n = row.n_generated
    req = adapter.next_request(row)
    assert req.prompt_ids == [1, 5, 6, *row.token_ids] and req.max_tokens == 20 - n and req.round == 1
    adapter.absorb(row, [8, EOS], "eos")  # second stop: the next word, in turn
    assert row.token_ids[n:] == [8, *let]
    rest = 20 - row.n_generated
    adapter.absorb(row, [7] * rest, "budget")  # budget reached: the answer prompt, budget extended
    assert row.token_ids[-len(final) - rest :] == [7] * rest + final
    assert row.budget == 20 + len(final) + 3 and row.events[-1]["step"] == 20
    assert adapter.next_request(row).max_tokens == 3
    adapter.absorb(row, [3, EOS], "eos")  # a stop while answering is final and keeps its EOS
    assert row.finished and row.stop_reason == "eos" and row.token_ids[-2:] == [3, EOS]
    assert adapter.next_request(row) is None and adapter.n_requests(row) == 4
    assert [e["note"] for e in row.events] == ["extend", "extend", "force answer"]


def test_tokens_past_a_stop_the_loop_would_make_are_dropped(tiny_llama):
    """A rule the engine does not know (a caller's) fires mid-request: the rest of the request is dropped."""

    class StopAfterSeven(StoppingRule):
        reason = "seven"

        def __call__(self, row, state):
            return row.token_ids[-1] == 7

    adapter = RowAdapter([StopAfterSeven()], [EOS], 20)
    row = adapter.start(0, [1])
    adapter.absorb(row, [5, 7, 9, 9], "budget")
    assert row.token_ids == [5, 7] and row.stop_reason == "seven"


def test_an_injection_that_uses_up_the_budget_forces_the_answer_at_once(tiny_llama):
    tok = tiny_llama.tokenizer
    long_word = encode_text(tok, " Alternatively")
    method = {**TTTS, "words": ["Alternatively"], "answer_tokens": 1}
    budget = 2 + len(long_word) - 1
    adapter = RowAdapter(build_plugins(tiny_llama, method, budget), [EOS], 64)
    row = adapter.start(0, [1])
    adapter.absorb(row, [5, 5, EOS], "eos")  # the word takes n from 2 past the budget
    final = encode_text(tok, " Final:")
    assert row.token_ids == [5, 5, *long_word, *final]
    # ... and the overshoot used the answer allowance up: finished, as in the HF loop
    assert row.stop_reason == "budget" and adapter.next_request(row) is None


# -- the adapter against the HF loop -------------------------------------------------------------------------------

SPELL = {30: 39, 31: 48, 32: 38}  # total lengths at which the toy model spells "END" (byte ids of E, N, D)


def toy_scores(prefix: list[int], vocab: int, eos_at: set[int]) -> torch.Tensor:
    """A deterministic 'model': scores from the prefix; EOS at given total lengths; "END" spelt at 30..32."""
    generator = torch.Generator().manual_seed(hash(tuple(prefix)) % (2**31))
    scores = torch.randn(vocab, generator=generator)
    scores[EOS] = -10.0
    if len(prefix) in eos_at:
        scores[EOS] = 100.0
    if len(prefix) in SPELL:
        scores[SPELL[len(prefix)]] = 50.0
    return scores


class Toy(LogitsProcessor):
    """The toy model inside the HF loop: replaces the logits (runs before the method's processors)."""

    def __init__(self, eos_at):
        self.eos_at = eos_at

    def __call__(self, logits, state):
        return torch.stack(
            [toy_scores(r.prompt_ids + r.token_ids, logits.shape[-1], self.eos_at) for r in state.rows]
        ).to(logits)


def toy_vllm(vocab, eos_at, stop_strings, tokenizer):
    """vLLM's request semantics over the toy model: greedy, banned ids, EOS blocked below min_tokens, stop at EOS
    (kept), a stop string, or max_tokens."""

    def generate(requests):
        outputs = []
        for request in requests:
            prefix, new = list(request.prompt_ids), []
            while True:
                scores = toy_scores(prefix, vocab, eos_at)
                scores[list(request.banned_ids)] = float("-inf")
                if len(new) < request.min_tokens:
                    scores[EOS] = float("-inf")
                token = int(scores.argmax())
                new.append(token)
                prefix.append(token)
                if token == EOS:
                    outputs.append((new, "eos"))
                    break
                text = tokenizer.decode(new, skip_special_tokens=True)
                if any(s in text for s in stop_strings):
                    outputs.append((new, "stop"))
                    break
                if len(new) == request.max_tokens:
                    outputs.append((new, "budget"))
                    break
        return outputs

    return generate


class CountedStop(StoppingRule):
    """A caller's rule: stop once a row has generated 5 tokens of its own choice."""

    reason = "five"

    def __call__(self, row, state):
        return sum(not f for f in row.forced) >= 5


class OnceMore(ContinuationPolicy):
    """A caller's policy: the first stop of each row becomes two injected tokens."""

    def on_stop(self, row, reason, state):
        if row.n_continuations == 0:
            return Continuation([70, 71], extra_budget=2, note="once more")
        return None


CASES = {
    "baseline": (lambda lm: [], ()),
    "suppress": (lambda lm: build_plugins(lm, SUPPRESS), ()),
    "ttts": (lambda lm: build_plugins(lm, TTTS, 16), ()),
    "force": (lambda lm: build_plugins(lm, FORCE, 16), ()),
    "force-block": (lambda lm: build_plugins(lm, {**FORCE, "block_eos": True}, 16), ()),
    "ttts+stop-string": (lambda lm: build_plugins(lm, TTTS, 40), ("END",)),
    "custom-rule+policy": (lambda lm: [CountedStop(), OnceMore()], ()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_makes_the_hf_loops_decisions(tiny_llama, case):
    build, stop_strings = CASES[case]
    prompts = [tiny_llama.tokenizer(p)["input_ids"] for p in ["Q: 2+3=", "Hello there, friend", "x"]]
    eos_at = {len(prompts[0]) + 3, len(prompts[1]) + 9, 12, 17, 26, 40}  # early stops, stops while answering
    vocab = tiny_llama.model.config.vocab_size
    config = DecodeConfig(max_new_tokens=24, batch_size=2, stop_strings=stop_strings)
    reference = decode_batch(tiny_llama, prompts, config, [Toy(eos_at), *build(tiny_llama)])
    adapter = RowAdapter(build(tiny_llama), [EOS], config.max_new_tokens, stop_strings, tiny_llama.tokenizer)
    rows = run_rows(
        adapter,
        [adapter.start(i, p) for i, p in enumerate(prompts)],
        toy_vllm(vocab, eos_at, stop_strings, tiny_llama.tokenizer),
    )
    for row, gen in zip(rows, reference):
        assert row.token_ids == gen.token_ids
        assert row.forced == gen.forced
        assert row.stop_reason == gen.stop_reason
        assert row.events == [e for e in gen.events if e["type"] == "continue"]
    reasons = {g.stop_reason for g in reference}
    if case in ("ttts", "force", "custom-rule+policy"):  # the case really exercised continuations
        assert any(g.n_forced for g in reference) and max(adapter.n_requests(r) for r in rows) >= 2
    if case == "ttts+stop-string":  # a stop string was met (and became a thinking word)
        assert any(e["reason"] == "stop" for g in reference for e in g.events)
    if case == "custom-rule+policy":
        assert "five" in reasons
    if case == "suppress":
        banned = set(adapter.next_request(RowState(0, 0, [1], 4)).banned_ids)
        assert banned and not banned & {t for g in reference for t in g.token_ids}


class EosAtLength(LogitsProcessor):
    """Makes EOS the greedy choice at given total sequence lengths (prompt + generated): a model that stops."""

    def __init__(self, lengths):
        self.lengths = set(lengths)

    def __call__(self, logits, state):
        logits = logits.clone()
        for row in state.rows:
            if len(row.prompt_ids) + row.n_generated in self.lengths:
                logits[row.row, EOS] = 1e4
        return logits


def hf_request_backend(lm, extra_processors):
    """What a vLLM request returns, computed by plain HF decoding of the request (greedy) on the real model."""

    def generate(requests):
        outputs = []
        for request in requests:
            plugins = list(extra_processors)
            if request.min_tokens:
                plugins.append(EosBlocker([EOS], request.min_tokens))
            gen = decode_batch(
                lm, [request.prompt_ids], DecodeConfig(max_new_tokens=request.max_tokens, batch_size=1), plugins
            )[0]
            outputs.append((gen.token_ids, gen.stop_reason))
        return outputs

    return generate


@pytest.mark.parametrize("method", [TTTS, FORCE, {**FORCE, "block_eos": True}], ids=["ttts", "force", "force-block"])
def test_continuation_requests_on_the_real_model_reproduce_the_hf_loop(tiny_llama, method):
    budget = 16
    prompt = tiny_llama.tokenizer("Q: 2+3=", add_special_tokens=True)["input_ids"]
    length = len(prompt)
    stops = EosAtLength({length + 3, length + 11, length + budget + 5})  # two early stops, one while answering
    plugins = build_plugins(tiny_llama, method, budget)
    reference = decode_batch(
        tiny_llama, [prompt], DecodeConfig(max_new_tokens=budget, batch_size=1), [stops, *plugins]
    )[0]
    adapter = RowAdapter(plugins, [EOS], budget)
    [row] = run_rows(adapter, [adapter.start(0, prompt)], hf_request_backend(tiny_llama, [stops]))
    assert row.token_ids == reference.token_ids
    assert row.forced == reference.forced
    assert row.stop_reason == reference.stop_reason
    assert row.events == [e for e in reference.events if e["type"] == "continue"]
    if method.get("block_eos"):  # the EOS at 3 < min 8 was blocked (vLLM min_tokens), the one at 11 is final
        assert len(reference.token_ids) == 12 and reference.stop_reason == "eos"
    else:
        assert reference.n_forced > 0 and adapter.n_requests(row) >= 2


def test_plain_run_is_one_request_per_sample(tiny_llama):
    prompt = tiny_llama.tokenizer("Hello", add_special_tokens=True)["input_ids"]
    adapter = RowAdapter([], [EOS], 7)
    reference = decode_batch(tiny_llama, [prompt], DecodeConfig(max_new_tokens=7, batch_size=1))[0]
    [row] = run_rows(adapter, [adapter.start(0, prompt)], hf_request_backend(tiny_llama, []))
    assert row.token_ids == reference.token_ids and adapter.n_requests(row) == 1
    assert row.stop_reason == reference.stop_reason == "budget" and not any(row.forced)
