"""The one decode loop: equality with HF generate, plug-ins, capture alignment, stopping."""

import pytest
import torch
from hf_reference import full_forward_states, hf_greedy

from reasonlens.decode import Continuation, ContinuationPolicy, DecodeConfig, LogitsProcessor, Observer, decode
from reasonlens.decode.capture import HiddenStateCapture
from reasonlens.models.tiny import tiny_gpt2, tiny_llama, tiny_qwen2

PROMPTS = ["Hello world", "The answer is 42 because", "x", "Let me think step by step about this."]


@pytest.mark.parametrize("factory", [tiny_llama, tiny_qwen2, tiny_gpt2])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_greedy_equals_hf_generate(factory, batch_size):
    lm = factory()
    ours = decode(lm, PROMPTS, DecodeConfig(max_new_tokens=20, batch_size=batch_size))
    assert [g.token_ids for g in ours] == hf_greedy(lm, PROMPTS, 20)


class BanToken(LogitsProcessor):
    def __init__(self, token):
        self.token = token

    def __call__(self, logits, state):
        logits[:, self.token] = float("-inf")
        return logits


def test_logits_processor_changes_choice(tiny_llama):
    base = decode(tiny_llama, PROMPTS[:2], DecodeConfig(max_new_tokens=8))
    first = base[0].token_ids[0]
    banned = decode(tiny_llama, PROMPTS[:2], DecodeConfig(max_new_tokens=8), plugins=[BanToken(first)])
    assert first not in banned[0].token_ids
    assert banned[0].token_ids != base[0].token_ids


class ForceEosAfter(LogitsProcessor):
    """Makes EOS the argmax once a row has n tokens: exercises stopping without relying on random weights."""

    def __init__(self, n, eos):
        self.n, self.eos = n, eos

    def __call__(self, logits, state):
        for row in state.rows:
            if row.n_generated >= self.n:
                logits[row.row, self.eos] = 1e9
        return logits


def test_eos_stops_each_row_and_is_kept(tiny_llama):
    eos = tiny_llama.eos_token_ids()[0]
    gens = decode(
        tiny_llama, PROMPTS[:3], DecodeConfig(max_new_tokens=30, batch_size=3), plugins=[ForceEosAfter(5, eos)]
    )
    for g in gens:
        assert g.stop_reason == "eos"
        assert len(g.token_ids) == 6 and g.token_ids[-1] == eos


class WaitOnEos(ContinuationPolicy):
    def __init__(self, tokens, times):
        self.tokens, self.times = tokens, times

    def on_stop(self, row, reason, state):
        if reason == "eos" and row.n_continuations < self.times:
            return Continuation(tokens=list(self.tokens), extra_budget=0, note="wait")
        return None


def test_continuation_injects_tokens_instead_of_eos(tiny_llama):
    eos = tiny_llama.eos_token_ids()[0]
    inject = [87, 97, 105]  # "Wai" in byte ids of the tiny tokenizer
    gens = decode(
        tiny_llama,
        PROMPTS[:2],
        DecodeConfig(max_new_tokens=40, batch_size=2),
        plugins=[ForceEosAfter(3, eos), WaitOnEos(inject, times=1)],
    )
    for g in gens:
        # 3 chosen tokens, the EOS replaced by the injection (all forced), then EOS is chosen again.
        assert g.token_ids[3:6] == inject
        assert g.forced[3:6] == [True, True, True]
        assert g.token_ids[-1] == eos and g.stop_reason == "eos"
        assert sum(g.forced) == 3
        assert any(e["type"] == "continue" for e in g.events)


def test_budget_stop_and_stop_strings(tiny_llama):
    gens = decode(tiny_llama, PROMPTS[:2], DecodeConfig(max_new_tokens=7, batch_size=2))
    assert all(g.stop_reason == "budget" and g.n_tokens == 7 for g in gens)
    full = decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=30))[0]
    stop = full.text[8:10]
    assert stop.strip(), "random tokens should give printable text"
    cut = decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=30, stop_strings=(stop,)))[0]
    assert cut.stop_reason == "stop"
    assert stop in cut.text and cut.n_tokens < full.n_tokens
    assert cut.token_ids == full.token_ids[: cut.n_tokens]


def test_sampling_is_seeded_and_batch_independent(tiny_llama):
    cfg = DecodeConfig(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=0.9, seed=3, batch_size=4)
    a = decode(tiny_llama, PROMPTS, cfg)
    b = decode(tiny_llama, PROMPTS, DecodeConfig(**{**cfg.__dict__, "batch_size": 1}))
    greedy = decode(tiny_llama, PROMPTS, DecodeConfig(max_new_tokens=12))
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in greedy]


def test_capture_is_the_state_that_predicts_each_token(tiny_llama):
    """Row t of the capture equals a no-cache full forward's state at the position before token t."""
    shards = {}
    layers = [0, 3, "final"]
    capture = HiddenStateCapture(layers, lambda row, tensors: shards.__setitem__(row.key, tensors))
    gens = decode(tiny_llama, PROMPTS[:3], DecodeConfig(max_new_tokens=10, batch_size=3), plugins=[capture])
    for g in gens:
        t = shards[g.key]
        assert t["token_ids"].tolist() == g.token_ids
        for key, expected in full_forward_states(tiny_llama, g, layers).items():
            assert t[f"layer.{key}"].shape == (g.n_tokens, 64)
            torch.testing.assert_close(t[f"layer.{key}"], expected, atol=1e-4, rtol=1e-4)
        # and the LM head on the final-normed state gives the greedy token
        with torch.no_grad():
            head = tiny_llama.layers.lm_head(t["layer.final"])
        assert head.argmax(-1).tolist() == g.token_ids


class CountingObserver(Observer):
    layers = [-1 + 4]

    def __init__(self):
        self.steps = 0
        self.finished = []

    def on_step(self, state, hidden, tokens):
        self.steps += 1
        assert hidden[3].shape[0] == len(state.rows)

    def on_finish(self, row):
        self.finished.append(row.key)


def test_observer_sees_every_step_and_finish(tiny_llama):
    obs = CountingObserver()
    decode(tiny_llama, PROMPTS[:2], DecodeConfig(max_new_tokens=5, batch_size=2), plugins=[obs], keys=["a", "b"])
    assert obs.steps == 5 and sorted(obs.finished) == ["a", "b"]


@pytest.mark.parametrize("schedule", ["join", "static"])
def test_nonfinite_logits_fail_only_that_row(tiny_llama, schedule):
    """A NaN in one row's logits stops that row with reason 'numerical'; the other row is unaffected."""
    head = tiny_llama.layers.lm_head

    def poison(module, args, output):
        if output.shape[0] == 2:  # batch row 0 while both rows are in the batch (a leaving row takes its slot)
            output[0] = float("nan")
        return output

    config = DecodeConfig(max_new_tokens=6, batch_size=2, schedule=schedule)
    handle = head.register_forward_hook(poison)
    try:
        gens = decode(tiny_llama, PROMPTS[:2], config)
    finally:
        handle.remove()
    clean = decode(tiny_llama, PROMPTS[:2], config)
    assert gens[0].stop_reason == "numerical"
    assert any(e["type"] == "nonfinite_logits" for e in gens[0].events)
    assert gens[1].token_ids == clean[1].token_ids


def test_no_double_bos_when_a_chat_template_already_has_one(tmp_path):
    """The Python API defaults to add_special_tokens=True; a rendered chat template that starts with BOS must
    not get a second one from a tokenizer that prepends BOS (the CLI turns special tokens off for chat)."""
    from tokenizers.processors import TemplateProcessing

    from reasonlens.data import load_problems, render_prompt
    from reasonlens.decode import DecodeConfig, decode
    from reasonlens.models.tiny import tiny_llama
    from reasonlens.runs import RunDir, RunSpec, execute

    lm = tiny_llama()
    tok = lm.tokenizer
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    bos = tok.bos_token_id
    assert tok("hi")["input_ids"][0] == bos and tok("<s>hi")["input_ids"][:2] == [bos, bos]  # the hazard is real
    prompt = render_prompt(load_problems("gsm8k", n=1)[0], "chat", tok)
    assert prompt.startswith("<s>")
    (api,) = decode(lm, [prompt], DecodeConfig(max_new_tokens=2), show_progress=False)
    (cli,) = decode(lm, [prompt], DecodeConfig(max_new_tokens=2, add_special_tokens=False), show_progress=False)
    assert api.prompt_ids[:2] != [bos, bos] and api.prompt_ids == cli.prompt_ids
    (plain,) = decode(lm, ["hi"], DecodeConfig(max_new_tokens=2), show_progress=False)
    assert plain.prompt_ids[0] == bos  # raw prompts still get their BOS
    execute(
        RunSpec(
            out=tmp_path / "r",
            model="tiny-llama",
            dataset="gsm8k",
            n=1,
            template="chat",
            decode=DecodeConfig(max_new_tokens=2),
        ),
        lm=lm,
        quiet=True,
    )
    assert RunDir(tmp_path / "r").results()[0]["prompt"].startswith("<s>")


def test_a_callers_stopping_rule_stops_rows_and_policies_see_its_reason(tiny_llama):
    from reasonlens.decode import StoppingRule

    class StopAfter(StoppingRule):
        reason = "enough"

        def __init__(self, n):
            self.n = n

        def __call__(self, row, state):
            return row.n_generated >= self.n

    class ContinueOnce(ContinuationPolicy):
        def __init__(self):
            self.reasons = []

        def on_stop(self, row, reason, state):
            self.reasons.append(reason)
            return Continuation([87, 97], note="more") if row.n_continuations == 0 else None

    gens = decode(tiny_llama, PROMPTS[:2], DecodeConfig(max_new_tokens=30, batch_size=2), plugins=[StopAfter(4)])
    assert [(g.n_tokens, g.stop_reason) for g in gens] == [(4, "enough"), (4, "enough")]
    policy = ContinueOnce()
    gens = decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=30), plugins=[StopAfter(4), policy])
    # the stop at 4 became two injected tokens, the rule fired again after the first of them... and the row ended
    assert gens[0].token_ids[4:] == [87] and gens[0].stop_reason == "enough" and policy.reasons == ["enough"] * 2
    # built-in rules come first: the budget wins a tie with a caller's rule
    gens = decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=4), plugins=[StopAfter(4)])
    assert gens[0].stop_reason == "budget"
    with pytest.raises(TypeError, match="StoppingRule"):
        decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=2), plugins=[object()])
