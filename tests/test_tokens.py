"""Thinking-token readings, word grouping over real tokenizers, token-set files."""

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from reasonlens.analysis.tokens import (
    WordCounter,
    agreement_rate,
    lm_head_argmax,
    peak_tokens,
    read_token_set,
    word_variant_ids,
    write_token_set,
)
from reasonlens.errors import UserError
from reasonlens.models import record_layers
from reasonlens.models.tiny import tiny_llama

CORPUS = ["Wait, so the answer is 4. wait So Let me check. Let us see. so Wait WAIT"] * 20


def trained_tokenizer(style: str) -> PreTrainedTokenizerFast:
    """A real BPE tokenizer trained on a tiny corpus, GPT-2 byte-level ("Ġ") or SentencePiece-like ("▁")."""
    tok = Tokenizer(models.BPE(unk_token="<unk>" if style == "metaspace" else None))
    if style == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + 60, special_tokens=["<unk>", "</s>"], initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


def ids_of(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("style,marker", [("bytelevel", "\u0120"), ("metaspace", "\u2581")])
def test_word_variants_cover_case_and_leading_space(style, marker):
    tok = trained_tokenizer(style)
    vocab = tok.get_vocab()
    ids = word_variant_ids(tok, "wait", include_split_starts=True)
    for form in ("Wait", "wait", marker + "Wait", marker + "wait"):
        if form in vocab:
            assert vocab[form] in ids
    assert len(ids) >= 3
    whole = word_variant_ids(tok, "wait")
    assert set(whole) <= set(ids)
    # whole-word variants decode back to the word, any case
    assert whole and all(tok.decode([i]).strip().casefold() == "wait" for i in whole)


def test_split_word_contributes_its_first_token_only_when_asked():
    tok = trained_tokenizer("bytelevel")
    pieces = [i for i in ids_of(tok, " Hmm") if tok.decode([i]).strip()]  # a bare-space piece starts any word
    assert len(pieces) > 1  # not in the corpus: split
    assert pieces[0] in word_variant_ids(tok, "Hmm", include_split_starts=True)
    assert tok.get_vocab()["\u0120"] not in word_variant_ids(tok, "Hmm", include_split_starts=True)
    assert word_variant_ids(tok, "Hmm") == []
    with pytest.raises(UserError, match="empty word"):
        word_variant_ids(tok, " ")


def test_word_counter_groups_variants_and_filters_non_alphabetic():
    tok = trained_tokenizer("bytelevel")
    vocab = tok.get_vocab()
    counter = WordCounter(tok)
    counter.add([vocab["\u0120Wait"]] * 3 + [vocab["Wait"]] * 2 + [vocab["\u0120wait"]] + [vocab[","]] * 9)
    counter.add([vocab["\u0120So"]] * 4)
    words = counter.words()
    assert [w.word for w in words] == ["Wait", "So"]  # "," dropped by the alphabetic filter
    wait = words[0]
    assert wait.frequency == 6
    assert {vocab["\u0120Wait"], vocab["Wait"], vocab["\u0120wait"]} <= set(wait.token_ids)
    # an unseen lower-case form without a space is not added: it is mostly a piece inside other words
    assert vocab["wait"] not in wait.token_ids
    assert "," in [w.word for w in WordCounter(tok, alphabetic_only=False, _ids=counter._ids).words()]


def test_token_set_round_trip_and_malformed_lines(tmp_path):
    tok = trained_tokenizer("metaspace")
    counter = WordCounter(tok)
    counter.add(ids_of(tok, "Wait so Wait Let"))
    words = counter.words()
    path = write_token_set(tmp_path / "set.jsonl", words)
    back = read_token_set(path)
    assert [(w.word, w.frequency, w.token_ids) for w in back] == [(w.word, w.frequency, w.token_ids) for w in words]
    assert back[0].word == "Wait" and back[0].frequency == 2
    assert json.loads(path.read_text().splitlines()[0]).keys() == {"word", "frequency", "token_ids"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"word": "So", "frequency": 3, "token_ids": [5]}\n{"word": "x", "frequency": -1, "token_ids": [1]}\n'
    )
    with pytest.raises(UserError, match=r"bad.jsonl:2: field 'frequency'"):
        read_token_set(bad)
    bad.write_text('{"word": "So", "frequency": 3, "token_ids": [5]}\n\nnot json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:3: invalid JSON"):
        read_token_set(bad)
    bad.write_text('{"word": "So", "frequency": 3, "token_ids": []}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:1: field 'token_ids'"):
        read_token_set(bad)
    with pytest.raises(UserError, match="not found"):
        read_token_set(tmp_path / "missing.jsonl")


def test_lm_head_argmax_matches_model_logits_for_pre_norm_and_final_states():
    lm = tiny_llama(seed=1)
    ids = torch.tensor([[5, 70, 80, 90, 100, 33]])
    last = lm.layers.num_layers - 1
    store = {}
    with torch.no_grad(), record_layers(lm.layers, [last, "final"], store, last_only=False):
        logits = lm.model(input_ids=ids).logits[0]
    expected = logits.argmax(-1)
    assert torch.equal(lm_head_argmax(lm, store[last][0], last), expected)  # final norm applied
    assert torch.equal(lm_head_argmax(lm, store["final"][0], "final"), expected)  # already normed
    # skipping the norm on a pre-norm state changes the reading for some positions on a random model
    raw = lm.layers.lm_head(store[last][0]).argmax(-1)
    assert torch.equal(lm_head_argmax(lm, store[last][0], "final"), raw)


def test_peak_tokens_and_agreement():
    lm = tiny_llama(seed=2)
    states = torch.randn(6, lm.layers.hidden_size)
    argmax = lm_head_argmax(lm, states, 0)
    token_ids = argmax.clone()
    token_ids[3] = (token_ids[3] + 1) % 300  # the generated token differs at step 3
    got = peak_tokens(7, 0, [1, 3, 9], token_ids, states, lm)  # step 9 is past the trace: ignored
    assert [(p.sample, p.step, p.generated_id) for p in got] == [(7, 1, int(token_ids[1])), (7, 3, int(token_ids[3]))]
    assert [p.agree for p in got] == [True, False]
    assert agreement_rate(got) == 0.5
    assert agreement_rate(peak_tokens(0, 0, [1], token_ids)) is None  # no model: generated reading only
