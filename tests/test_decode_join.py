"""Rows leave and join the batch (schedule "join"): per-row outputs equal batch-1 decoding, the schedule is the
expected one, the KV cache stays as wide as the longest live row, and every kind of plug-in works per row."""

import pytest
import torch
from hf_reference import full_forward_states
from naive_rerun import naive_rerun_greedy

from reasonlens.decode import ContinuationPolicy, DecodeConfig, LayerRerun, LogitsProcessor, Observer, decode
from reasonlens.decode.capture import HiddenStateCapture
from reasonlens.errors import UserError
from reasonlens.interventions.recycle import RepresentationRecycling
from reasonlens.interventions.scaling import BudgetForcing, EosBlocker, ThinkingTokenScaling
from reasonlens.interventions.suppress import TokenSuppressor
from reasonlens.models.tiny import tiny_gpt2, tiny_llama, tiny_qwen2

# Ragged prompts (one of a single token: nothing to prefill before it joins) and long-tailed budgets.
PROMPTS = [
    "Hello world",
    "The answer is 42 because",
    "x",
    "Let me think step by step about this.",
    "2+2=",
    "Why is the sky blue? Explain.",
    "ok",
]
BUDGETS = [3, 17, 1, 9, 25, 2, 12]
JOIN = DecodeConfig(max_new_tokens=32, batch_size=3, schedule="join")
ONE = DecodeConfig(max_new_tokens=32, batch_size=1, schedule="static")


class Budgets(ContinuationPolicy):
    """Per-sample budgets, so rows finish at very different steps."""

    def on_start(self, row):
        row.budget = BUDGETS[row.key]


class Trace(Observer):
    """Which samples were in the batch at every step."""

    layers: list = []

    def __init__(self):
        self.steps: list[list] = []

    def on_step(self, state, hidden, tokens):
        self.steps.append([r.key for r in state.rows if bool(state.active[r.row])])


def same_rows(a, b):
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.forced for g in a] == [g.forced for g in b]
    assert [g.stop_reason for g in a] == [g.stop_reason for g in b]
    assert [g.events for g in a] == [g.events for g in b]


def simulate(lengths, slots):
    """The expected join schedule: admission in order into free slots, every live row makes one token a step."""
    pending, live, steps = list(range(len(lengths))), {}, []
    while pending or live:
        while pending and len(live) < slots:
            live[pending.pop(0)] = 0
        steps.append(sorted(live))
        for key in list(live):
            live[key] += 1
            if live[key] == lengths[key]:
                del live[key]
    return steps


@pytest.mark.parametrize("factory", [tiny_llama, tiny_qwen2, tiny_gpt2])
def test_join_equals_batch_one_and_follows_the_schedule(factory):
    lm = factory()
    one = decode(lm, PROMPTS, ONE, plugins=[Budgets()])
    trace = Trace()
    joined = decode(lm, PROMPTS, JOIN, plugins=[Budgets(), trace])
    same_rows(joined, one)
    lengths = [g.n_tokens for g in one]
    assert [sorted(s) for s in trace.steps] == simulate(lengths, 3)
    static = Trace()
    decode(lm, PROMPTS, DecodeConfig(max_new_tokens=32, batch_size=3, schedule="static"), plugins=[Budgets(), static])
    assert len(trace.steps) < len(static.steps)  # 25 vs 17 + 25 + 12 steps here


def test_cache_is_as_wide_as_the_longest_live_row(tiny_llama):
    widths, expected, last = [], [], {}

    def spy(module, args, kwargs, output):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # the keyword depends on the transformers version
        last["width"] = {layer.keys.shape[-2] for layer in cache.layers}
        last["mask"] = kwargs["attention_mask"].shape[1]

    class Lengths(Observer):
        layers: list = []

        def on_step(self, state, hidden, tokens):  # right after the step's batched forward
            widths.append(last["width"])
            assert last["mask"] == next(iter(last["width"]))
            expected.append({max(len(r.prompt_ids) + r.n_generated for r in state.rows)})

    handle = tiny_llama.model.register_forward_hook(spy, with_kwargs=True)
    try:
        decode(tiny_llama, PROMPTS, JOIN, plugins=[Budgets(), Lengths()])
    finally:
        handle.remove()
    assert widths == expected


def test_capture_with_join_is_the_state_that_predicts_each_token(tiny_llama):
    layers = [0, 2, "final"]
    shards, halves = {}, {}
    capture = HiddenStateCapture(layers, lambda row, tensors: shards.__setitem__(row.key, tensors))
    half = HiddenStateCapture(layers, lambda row, tensors: halves.__setitem__(row.key, tensors), torch.float16)
    gens = decode(tiny_llama, PROMPTS, JOIN, plugins=[Budgets(), capture, half])
    assert sorted(shards) == list(range(len(PROMPTS)))
    for g in gens:
        t = shards[g.key]
        assert t["token_ids"].tolist() == g.token_ids
        for key, expected in full_forward_states(tiny_llama, g, layers).items():
            assert t[f"layer.{key}"].shape == (g.n_tokens, 64)
            torch.testing.assert_close(t[f"layer.{key}"], expected, atol=1e-4, rtol=1e-4)
            assert halves[g.key][f"layer.{key}"].dtype == torch.float16
            torch.testing.assert_close(halves[g.key][f"layer.{key}"].float(), expected, atol=1e-2, rtol=1e-2)


class RerunWhenDivisible(LayerRerun):
    def __init__(self, layer, mod=3, repeats=1):
        self.layer, self.mod, self.repeats = layer, mod, repeats

    def select(self, state, proposed):
        return (proposed % self.mod == 0) & state.active


@pytest.mark.parametrize("factory,layer,repeats", [(tiny_llama, 1, 1), (tiny_qwen2, 2, 2)])
def test_rerun_with_join_equals_naive_full_forward(factory, layer, repeats):
    lm = factory()
    gens = decode(lm, PROMPTS, JOIN, plugins=[Budgets(), RerunWhenDivisible(layer, repeats=repeats)])
    n_reruns = 0
    for g in gens:
        budget = BUDGETS[g.key]
        assert g.token_ids == naive_rerun_greedy(lm, g.prompt_ids, layer, repeats, budget, lambda t: t % 3 == 0)
        n_reruns += sum(e["type"] == "rerun" for e in g.events)
    assert n_reruns >= 5


def test_representation_recycling_with_join_equals_batch_one(tiny_llama):
    def plugins():
        return [Budgets(), RepresentationRecycling(range(0, 300, 2), layer=2, p=0.5, seed=7)]

    joined = decode(tiny_llama, PROMPTS, JOIN, plugins=plugins())
    same_rows(joined, decode(tiny_llama, PROMPTS, ONE, plugins=plugins()))
    assert sum(e["type"] == "rerun" for g in joined for e in g.events) >= 5


class EosAt(LogitsProcessor):
    """EOS becomes the argmax at sample-specific lengths (random weights rarely choose it)."""

    def __init__(self, eos, at):
        self.eos, self.at = eos, at

    def __call__(self, logits, state):
        for row in state.rows:
            if row.n_generated in self.at[row.key % len(self.at)]:
                logits[row.row, self.eos] = 1e9
        return logits


def test_continuation_policies_and_logits_processors_with_join(tiny_llama):
    tok = tiny_llama.tokenizer
    eos = tiny_llama.eos_token_ids()[0]
    at = [{2, 9}, {5}, {1, 3, 20}, {14}]

    def budget_forcing():
        return [EosAt(eos, at), EosBlocker([eos], 4), BudgetForcing(tok, 18, min_tokens=6, answer_tokens=3)]

    def ttts():
        return [
            EosAt(eos, at),
            ThinkingTokenScaling(tok, 16, words=["Wait", "Hmm"], answer_tokens=2),
            TokenSuppressor(range(100, 140)),
        ]

    for plugins in (budget_forcing, ttts):
        joined = decode(tiny_llama, PROMPTS, JOIN, plugins=plugins())
        one = decode(tiny_llama, PROMPTS, ONE, plugins=plugins())
        same_rows(joined, one)
        assert any(e["type"] == "continue" for g in joined for e in g.events)
        assert len({g.n_tokens for g in joined}) > 1
    assert not any(100 <= t < 140 for g in joined for t, f in zip(g.token_ids, g.forced) if not f)


def test_sampling_with_join_equals_batch_one(tiny_llama):
    sample = dict(do_sample=True, temperature=1.0, top_p=0.9, seed=5)
    joined = decode(tiny_llama, PROMPTS, DecodeConfig(**{**JOIN.__dict__, **sample}), plugins=[Budgets()])
    one = decode(tiny_llama, PROMPTS, DecodeConfig(**{**ONE.__dict__, **sample}), plugins=[Budgets()])
    same_rows(joined, one)


def test_windows_are_the_unit_and_settings_are_checked(tiny_llama):
    assert DecodeConfig(batch_size=4, window=3).unit == 12
    assert DecodeConfig(batch_size=4, schedule="static", window=3).unit == 4
    assert DecodeConfig(schedule="static").to_dict()["schedule"] == "static"
    assert DecodeConfig(window=5).to_dict()["window"] == 5
    units = []
    windowed = decode(
        tiny_llama,
        PROMPTS,
        DecodeConfig(**{**JOIN.__dict__, "window": 1}),
        plugins=[Budgets()],
        on_batch=lambda gens: units.append([g.key for g in gens]),
    )
    assert units == [[0, 1, 2], [3, 4, 5], [6]]
    same_rows(windowed, decode(tiny_llama, PROMPTS, ONE, plugins=[Budgets()]))
    with pytest.raises(UserError, match="--schedule"):
        DecodeConfig(schedule="continuous").validate()
    with pytest.raises(UserError, match="--window"):
        DecodeConfig(window=0).validate()


def test_a_run_with_rows_joining_equals_a_static_run_record_for_record(tmp_path, tiny_llama):
    """Same records and states as the static schedule, records on disk in index order, schedule in the manifest."""
    from reasonlens.runs import RunDir, RunSpec, execute
    from reasonlens.runs.io import read_checked_jsonl

    eos = tiny_llama.eos_token_ids()[0]

    def run(schedule):
        out = tmp_path / schedule
        execute(
            RunSpec(
                out=out,
                model="tiny-llama",
                dataset="gsm8k",
                n=7,
                layers="1,final",
                decode=DecodeConfig(max_new_tokens=12, batch_size=3, schedule=schedule, window=2),
            ),
            lm=tiny_llama,
            plugins=lambda lm: [EosAt(eos, [{1}, {9}, {4}, {0}, {11}])],
            quiet=True,
        )
        return RunDir(out)

    joined, static = run("join"), run("static")
    assert joined.manifest["decode"]["schedule"] == "join" and static.manifest["decode"]["schedule"] == "static"
    raw, _ = read_checked_jsonl(joined.results_path)
    assert [r["index"] for r in raw] == list(range(7))
    strip = lambda records: [{k: v for k, v in r.items() if k not in ("seconds", "crc")} for r in records]  # noqa: E731
    assert strip(joined.results()) == strip(static.results())
    assert len({r["n_tokens"] for r in joined.results()}) > 2
    for index in range(7):
        mine, theirs = joined.load_states(index), static.load_states(index)
        assert mine.keys() == theirs.keys() and torch.equal(mine["token_ids"], theirs["token_ids"])
        torch.testing.assert_close(mine["layer.1"], theirs["layer.1"], atol=1e-4, rtol=1e-4)


def test_one_token_prompts_join_with_nothing_to_prefill(tiny_llama):
    """A one-token prompt has no prefix: it joins with an empty cache row, alone or beside longer prompts."""
    prompts = [[5], [1, 72, 105, 33], [7], [9], [1, 50, 60, 70, 80, 90, 100]]
    budgets = [4, 2, 6, 1, 3]

    class Lengths(ContinuationPolicy):
        def on_start(self, row):
            row.budget = budgets[row.key]

    for batch_size in (2, 3):
        config = DecodeConfig(max_new_tokens=8, batch_size=batch_size, schedule="join")
        same_rows(
            decode(tiny_llama, prompts, config, plugins=[Lengths()]),
            decode(tiny_llama, prompts, ONE, plugins=[Lengths()]),
        )
