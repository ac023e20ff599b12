"""vLLM engine request/continuation logic: pure functions, no vLLM and no GPU needed.

The continuation logic is checked against THE decode loop: a request backend made of plain HF decoding of
each request (what vLLM would return for it) must reproduce, token for token, what the HF loop does with
the TTTS / budget-forcing plug-ins on the same tiny real model.
"""

import pytest

from reasonlens.decode import DecodeConfig, LogitsProcessor
from reasonlens.decode.loop import decode_batch
from reasonlens.engines import check_engine_support
from reasonlens.engines.vllm_engine import (
    Request,
    VllmPlan,
    absorb,
    allowed_token_ids,
    finish_reason_of,
    next_request,
    plan_from_plugins,
    request_seed,
    run_traces,
    start_trace,
)
from reasonlens.errors import UserError
from reasonlens.interventions.methods import build_plugins
from reasonlens.interventions.scaling import EosBlocker, encode_text
from reasonlens.interventions.suppress import suppression_ids

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


def test_plan_from_the_methods_plugins(tiny_llama):
    tok = tiny_llama.tokenizer
    # byte-level tiny tokenizer: no token spells a word whole, so ban the split first pieces to have ids
    suppress = {"name": "suppress", "words": ["Wait", "So"], "split_starts": True}
    plan = plan_from_plugins(build_plugins(tiny_llama, suppress))
    banned = tuple(suppression_ids(tok, ["Wait", "So"], include_split_starts=True))
    assert plan.kind == "plain" and banned and plan.banned_ids == banned
    plan = plan_from_plugins(build_plugins(tiny_llama, TTTS, 20))
    assert plan.kind == "ttts" and plan.budget == 20 and plan.answer_tokens == 3
    assert plan.word_ids == (tuple(encode_text(tok, " So")), tuple(encode_text(tok, " Let")))
    assert plan.answer_ids == tuple(encode_text(tok, " Final:"))
    plan = plan_from_plugins(build_plugins(tiny_llama, {**FORCE, "block_eos": True}, 20))
    assert (plan.kind, plan.min_tokens, plan.block_eos) == ("budget-force", 10, True)
    assert plan.wait_ids == tuple(encode_text(tok, " Wait"))
    assert plan_from_plugins(build_plugins(tiny_llama, {"name": "baseline"})) == VllmPlan()
    rr = {"name": "rr", "words": ["Wait"], "layer": 1, "p": 1.0, "repeats": 1, "seed": 0}
    with pytest.raises(UserError, match="RepresentationRecycling.*--engine hf"):
        plan_from_plugins(build_plugins(tiny_llama, rr))


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


def test_ttts_continuation_requests_step_by_step():
    plan = VllmPlan(kind="ttts", budget=10, word_ids=((50, 51), (60,)), answer_ids=(70, 71), answer_tokens=2)
    trace = start_trace("a", [1, 5, 6], plan, max_new_tokens=999)
    assert trace.budget == 10  # the method's budget, not --max-new-tokens
    req = next_request(trace, plan)
    assert (req.prompt_ids, req.max_tokens, req.min_tokens) == ([1, 5, 6], 10, 0)
    absorb(trace, plan, [9, 9, 9, EOS], "eos", [EOS])  # early EOS: dropped, first thinking word injected
    assert trace.token_ids == [9, 9, 9, 50, 51] and trace.forced == [False] * 3 + [True] * 2
    assert not trace.finished and trace.events[-1] == {
        "type": "continue",
        "reason": "eos",
        "step": 3,
        "tokens": [50, 51],
        "note": "extend",
    }
    req = next_request(trace, plan)
    assert req.prompt_ids == [1, 5, 6, 9, 9, 9, 50, 51] and req.max_tokens == 5 and req.round == 1
    absorb(trace, plan, [8, EOS], "eos", [EOS])  # second stop: the next word, in turn
    assert trace.token_ids[-2:] == [8, 60]
    assert next_request(trace, plan).max_tokens == 3
    absorb(trace, plan, [7, 7, 7], "budget", [EOS])  # budget reached: the answer prompt, budget extended
    assert trace.token_ids[-5:] == [7, 7, 7, 70, 71] and trace.answering and trace.budget == 10 + 2 + 2
    assert trace.events[-1]["step"] == 10
    assert next_request(trace, plan).max_tokens == 2
    absorb(trace, plan, [3, EOS], "eos", [EOS])  # a stop while answering is final and keeps its EOS
    assert trace.finished and trace.stop_reason == "eos" and trace.token_ids[-2:] == [3, EOS]
    assert next_request(trace, plan) is None
    assert [e["note"] for e in trace.events] == ["extend", "extend", "force answer"]


def test_budget_forcing_waits_below_the_minimum_and_an_injection_can_hit_the_budget():
    plan = VllmPlan(
        kind="budget-force",
        budget=6,
        wait_ids=(40, 41),
        min_tokens=3,
        block_eos=True,
        answer_ids=(70,),
        answer_tokens=1,
    )
    trace = start_trace(0, [1], plan, 64)
    assert next_request(trace, plan).min_tokens == 3  # EOS blocked by vLLM below the minimum
    absorb(trace, plan, [5, EOS], "eos", [EOS])  # n=1 < 3: "Wait"
    assert trace.token_ids == [5, 40, 41] and next_request(trace, plan).min_tokens == 0
    absorb(trace, plan, [6, EOS], "eos", [EOS])  # n=4 >= 3: the stop is final
    assert trace.stop_reason == "eos" and trace.token_ids == [5, 40, 41, 6, EOS]

    trace = start_trace(0, [1], plan, 64)
    absorb(trace, plan, [5, 5, 5, 5, 5], "stop", [EOS])  # n=5 >= min: a stop string ends it
    assert trace.stop_reason == "stop"
    tight = VllmPlan(kind="ttts", budget=4, word_ids=((50, 51, 52),), answer_ids=(70,), answer_tokens=1)
    trace = start_trace(0, [1], tight, 64)
    absorb(trace, tight, [5, 5, EOS], "eos", [EOS])  # the word takes n from 2 to 5 > budget 4
    assert trace.token_ids == [5, 5, 50, 51, 52, 70] and trace.answering  # answer forced at once
    # ... and the overshoot (n=6 = 4 + 1 + 1) used the answer allowance up: finished, as in the HF loop
    assert trace.stop_reason == "budget" and next_request(trace, tight) is None


class EosAtLength(LogitsProcessor):
    """Makes EOS the greedy choice at given total sequence lengths (prompt + generated): a model that stops.

    Keyed on the total length so it acts the same in the HF loop and in a continuation request whose prompt
    holds the tokens generated so far."""

    def __init__(self, lengths):
        self.lengths = set(lengths)

    def __call__(self, logits, state):
        logits = logits.clone()
        for row in state.rows:
            if len(row.prompt_ids) + row.n_generated in self.lengths:
                logits[row.row, EOS] = 1e4
        return logits


def hf_request_backend(lm, extra_processors):
    """What a vLLM request returns, computed by plain HF decoding of the request (greedy)."""

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
def test_continuation_requests_reproduce_the_hf_loop(tiny_llama, method):
    budget = 16
    prompt = tiny_llama.tokenizer("Q: 2+3=", add_special_tokens=True)["input_ids"]
    length = len(prompt)
    stops = EosAtLength({length + 3, length + 11, length + budget + 5})  # two early stops, one while answering
    plugins = build_plugins(tiny_llama, method, budget)
    reference = decode_batch(
        tiny_llama, [prompt], DecodeConfig(max_new_tokens=budget, batch_size=1), [stops, *plugins]
    )[0]
    plan = plan_from_plugins(plugins)
    [trace] = run_traces([start_trace(0, prompt, plan, budget)], plan, [EOS], hf_request_backend(tiny_llama, [stops]))
    assert trace.token_ids == reference.token_ids
    assert trace.forced == reference.forced
    assert trace.stop_reason == reference.stop_reason
    assert [(e["step"], e["note"], e["tokens"]) for e in trace.events] == [
        (e["step"], e["note"], e["tokens"]) for e in reference.events if e["type"] == "continue"
    ]
    if method.get("block_eos"):  # the EOS at 3 < min 8 was blocked (vLLM min_tokens), the one at 11 is final
        assert len(reference.token_ids) == 12 and reference.stop_reason == "eos"
    else:  # the case really exercised continuations
        assert reference.n_forced > 0 and trace.n_requests >= 2


def test_plain_run_is_one_request_per_sample(tiny_llama):
    prompt = tiny_llama.tokenizer("Hello", add_special_tokens=True)["input_ids"]
    plan = plan_from_plugins([])
    reference = decode_batch(tiny_llama, [prompt], DecodeConfig(max_new_tokens=7, batch_size=1))[0]
    [trace] = run_traces([start_trace(0, prompt, plan, 7)], plan, [EOS], hf_request_backend(tiny_llama, []))
    assert trace.token_ids == reference.token_ids and trace.n_requests == 1
    assert trace.stop_reason == reference.stop_reason == "budget" and not any(trace.forced)
