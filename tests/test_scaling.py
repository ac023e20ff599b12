"""TTTS and s1 budget forcing as continuation policies of the decode loop, on a tiny real model."""

import pytest
import torch

from reasonlens.decode import DecodeConfig, LogitsProcessor, decode
from reasonlens.errors import UserError
from reasonlens.interventions import BudgetForcing, EosBlocker, ThinkingTokenScaling, parse_budgets
from reasonlens.interventions.scaling import ANSWER_PROMPT, encode_text, min_tokens_for

PROMPTS = ["Hello world", "The answer is 42 because"]
EOS = 2  # tiny models' EOS id


class EosAt(LogitsProcessor):
    """Makes EOS the greedy choice when a row has generated exactly one of `steps` tokens (a model that stops)."""

    def __init__(self, steps):
        self.steps = set(steps)

    def __call__(self, logits, state):
        logits = logits.clone()
        for row in state.rows:
            if row.n_generated in self.steps:
                logits[row.row, EOS] = 1e4
        return logits


class PreferEos(LogitsProcessor):
    def __call__(self, logits, state):
        logits = logits.clone()
        logits[:, EOS] = 1e4
        return logits


def test_ttts_appends_thinking_tokens_on_stops_and_forces_the_answer(tiny_llama):
    tok = tiny_llama.tokenizer
    so, let = encode_text(tok, " So"), encode_text(tok, " Let")
    answer = encode_text(tok, ANSWER_PROMPT)
    budget = 20
    policy = ThinkingTokenScaling(tok, budget, words=["So", "Let"], answer_tokens=4)
    gens = decode(tiny_llama, PROMPTS, DecodeConfig(max_new_tokens=5, batch_size=2), plugins=[EosAt({5, 12}), policy])
    for g in gens:
        ids = g.token_ids
        assert EOS not in ids  # each stop was replaced by a thinking token
        assert ids[5 : 5 + len(so)] == so and ids[12 : 12 + len(let)] == let
        assert ids[budget : budget + len(answer)] == answer  # forced answer at the budget
        assert len(ids) == budget + len(answer) + 4 and g.stop_reason == "budget"
        assert g.n_forced == len(so) + len(let) + len(answer)
        notes = [e["note"] for e in g.events if e["type"] == "continue"]
        assert notes == ["extend", "extend", "force answer"]


def test_ttts_stops_for_good_when_the_answer_phase_ends_in_eos(tiny_llama):
    tok = tiny_llama.tokenizer
    answer = encode_text(tok, ANSWER_PROMPT)
    policy = ThinkingTokenScaling(tok, 6, words=["So"], answer_tokens=16)
    # EOS wanted right after the answer prompt: the stop in the answer phase is final.
    after_answer = 6 + len(answer)
    gens = decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=6), plugins=[EosAt({after_answer}), policy])
    assert gens[0].token_ids[-1] == EOS and gens[0].stop_reason == "eos"
    assert len(gens[0].token_ids) == after_answer + 1


def test_ttts_batched_equals_batch_one(tiny_llama):
    tok = tiny_llama.tokenizer
    plugins = [EosAt({3, 9}), ThinkingTokenScaling(tok, 14, answer_tokens=3)]
    prompts = PROMPTS + ["x", "Let me see"]
    one = decode(tiny_llama, prompts, DecodeConfig(max_new_tokens=14, batch_size=1), plugins=plugins)
    four = decode(tiny_llama, prompts, DecodeConfig(max_new_tokens=14, batch_size=4), plugins=plugins)
    assert [g.token_ids for g in one] == [g.token_ids for g in four]


def test_budget_forcing_waits_before_the_minimum_and_stops_after_it(tiny_llama):
    tok = tiny_llama.tokenizer
    wait = encode_text(tok, " Wait")
    policy = BudgetForcing(tok, budget=30, min_tokens=10)
    gens = decode(tiny_llama, PROMPTS, DecodeConfig(max_new_tokens=30, batch_size=2), plugins=[EosAt({4, 15}), policy])
    for g in gens:
        assert g.token_ids[4 : 4 + len(wait)] == wait  # early stop (4 < 10) became "Wait"
        assert g.token_ids[15] == EOS and len(g.token_ids) == 16 and g.stop_reason == "eos"  # 15 >= 10: final


def test_budget_forcing_max_waits_limits_the_extensions(tiny_llama):
    tok = tiny_llama.tokenizer
    wait = encode_text(tok, " Wait")
    policy = BudgetForcing(tok, budget=30, min_tokens=30, max_waits=1)
    gens = decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=30), plugins=[EosAt({4, 9}), policy])
    g = gens[0]
    assert g.token_ids[4 : 4 + len(wait)] == wait  # the first stop became "Wait"
    assert g.token_ids[9] == EOS and len(g.token_ids) == 10  # the second is final although 9 < min_tokens
    with pytest.raises(UserError, match="--max-waits"):
        BudgetForcing(tok, budget=30, min_tokens=10, max_waits=0)


def test_budget_forcing_forces_the_answer_at_the_cap(tiny_llama):
    tok = tiny_llama.tokenizer
    answer = encode_text(tok, ANSWER_PROMPT)
    gens = decode(
        tiny_llama,
        PROMPTS[:1],
        DecodeConfig(max_new_tokens=12),
        plugins=[BudgetForcing(tok, budget=12, min_tokens=6, answer_tokens=2)],
    )
    ids = gens[0].token_ids
    assert ids[12 : 12 + len(answer)] == answer and len(ids) == 12 + len(answer) + 2


def test_eos_blocker_holds_eos_back_until_the_minimum(tiny_llama):
    blocker = EosBlocker([EOS], min_tokens=7)
    gens = decode(tiny_llama, PROMPTS, DecodeConfig(max_new_tokens=30, batch_size=2), plugins=[PreferEos(), blocker])
    for g in gens:
        assert g.token_ids[-1] == EOS and len(g.token_ids) == 8 and g.stop_reason == "eos"
    logits = torch.zeros(1, 5)
    assert torch.equal(EosBlocker([], 3)(logits, None), logits)


def test_budget_helpers_validate_input(tiny_llama):
    assert parse_budgets("256, 64,128,64") == [64, 128, 256]
    for bad in ("", "a,b", "0,4"):
        with pytest.raises(UserError, match="--budgets"):
            parse_budgets(bad)
    assert min_tokens_for(100, 0.5) == 50 and min_tokens_for(7, 1.0) == 7
    with pytest.raises(UserError, match="--min-fraction"):
        min_tokens_for(10, 1.5)
    with pytest.raises(UserError, match="minimum budget"):
        BudgetForcing(tiny_llama.tokenizer, budget=10, min_tokens=11)
    with pytest.raises(UserError, match="--words"):
        ThinkingTokenScaling(tiny_llama.tokenizer, 10, words=[])
