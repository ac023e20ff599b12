"""Representation Recycling plug-in: identical greedy outputs to a naive no-cache implementation."""

import random
from collections import Counter

import pytest
from naive_rerun import naive_rerun_greedy

from reasonlens.decode import DecodeConfig, decode
from reasonlens.interventions import RepresentationRecycling, default_layer, layer_sweep, word_variant_ids
from reasonlens.models.tiny import tiny_llama, tiny_qwen2

PROMPTS = ["Hello world", "The answer is 42 because", "x", "Let me think step by step."]
WORDS = ["So", "Wait", "Then", "a", "e"]


def trigger_ids(lm):
    """Variant ids of a few words plus the three tokens a plain decode emits most (random tiny models rarely
    emit letters, so these make recycling fire often)."""
    plain = decode(lm, PROMPTS, DecodeConfig(max_new_tokens=16, batch_size=4))
    common = Counter(t for g in plain for t in g.token_ids).most_common(3)
    return sorted({i for w in WORDS for i in word_variant_ids(lm.tokenizer, w)} | {t for t, _ in common})


def naive_recycling_greedy(lm, prompt_ids, key, triggers, layer, repeats, p, seed, max_new_tokens):
    """The no-cache reference (tests/naive_rerun.py) with the plug-in's trigger rule: a proposed trigger token is
    recycled with probability p, one uniform per trigger from random.Random(f"{seed}:{key}") (the plug-in's
    documented seeding)."""
    rng = random.Random(f"{seed}:{key}")
    return naive_rerun_greedy(
        lm,
        prompt_ids,
        layer,
        repeats,
        max_new_tokens,
        lambda token: token in triggers and (p >= 1.0 or rng.random() < p),
    )


@pytest.mark.parametrize(
    "factory,layer,repeats,p,batch_size",
    [
        (tiny_llama, 2, 1, 1.0, 4),
        (tiny_llama, 0, 2, 1.0, 1),
        (tiny_qwen2, 1, 1, 0.5, 4),
    ],
)
def test_recycling_equals_naive_no_cache(factory, layer, repeats, p, batch_size):
    lm = factory()
    triggers = trigger_ids(lm)
    plugin = RepresentationRecycling(triggers, layer=layer, p=p, repeats=repeats, seed=7)
    gens = decode(lm, PROMPTS, DecodeConfig(max_new_tokens=16, batch_size=batch_size), plugins=[plugin])
    n_recycled = 0
    for key, g in enumerate(gens):
        expected = naive_recycling_greedy(lm, g.prompt_ids, key, set(triggers), layer, repeats, p, 7, 16)
        assert g.token_ids == expected
        events = [e for e in g.events if e["type"] == "rerun"]
        assert all(e["layer"] == layer and e["first"] in triggers for e in events)
        n_recycled += len(events)
    assert n_recycled >= 4  # the trigger fired often enough for the comparison to mean something


def test_probability_is_seeded_per_sample_and_thins_recycling(tiny_llama):
    triggers = trigger_ids(tiny_llama)
    config1, config4 = DecodeConfig(max_new_tokens=16, batch_size=1), DecodeConfig(max_new_tokens=16, batch_size=4)

    def recycled(gens):
        return sum(e["type"] == "rerun" for g in gens for e in g.events)

    half = [RepresentationRecycling(triggers, layer=2, p=0.5, seed=3)]
    one = decode(tiny_llama, PROMPTS, config1, plugins=half)
    four = decode(tiny_llama, PROMPTS, config4, plugins=[RepresentationRecycling(triggers, layer=2, p=0.5, seed=3)])
    assert [g.token_ids for g in one] == [g.token_ids for g in four]
    always = decode(tiny_llama, PROMPTS, config4, plugins=[RepresentationRecycling(triggers, layer=2, p=1.0)])
    never = decode(tiny_llama, PROMPTS, config4, plugins=[RepresentationRecycling(triggers, layer=2, p=0.0)])
    plain = decode(tiny_llama, PROMPTS, config4)
    assert recycled(never) == 0 and [g.token_ids for g in never] == [g.token_ids for g in plain]
    assert 0 < recycled(four) < recycled(always)
    # every trigger proposal is recycled at p = 1
    for g in always:
        assert all(e["first"] in triggers for e in g.events if e["type"] == "rerun")


def test_default_layer_and_sweep():
    assert default_layer(32) == 21 and default_layer(30) == 20 and default_layer(4) == 2 and default_layer(1) == 0
    assert layer_sweep(30) == [10, 17, 25]
    assert layer_sweep(30, 1) == [20]
    assert layer_sweep(4) == [1, 2, 3]
    assert all(0 <= layer < 2 for layer in layer_sweep(2, 5))


def test_invalid_options_are_user_errors():
    from reasonlens.errors import UserError

    with pytest.raises(UserError, match="--p"):
        RepresentationRecycling([1], layer=0, p=1.5)
    with pytest.raises(UserError, match="--repeats"):
        RepresentationRecycling([1], layer=0, repeats=0)
