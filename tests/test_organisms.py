"""Model organisms: tokenizer round trip, a few-step training run, shipped checkpoints and their cards, CLI."""

from __future__ import annotations

import json
import string

import pytest
import torch
import typer
from micro_organism import micro_organism
from typer.testing import CliRunner

from reasonlens.data import synthetic
from reasonlens.errors import UserError
from reasonlens.organisms import ORGANISMS_DIR, organism_dataset
from reasonlens.organisms import train as organism_train
from reasonlens.organisms.commands import register
from reasonlens.organisms.evaluation import card_evaluation, evaluate_organism
from reasonlens.organisms.tokenizer import EOS_TOKEN, PAD_TOKEN, THINKING_WORDS, build_tokenizer, save_tokenizer

# Measured accuracy on the first 30 test problems minus a margin (see docs/organisms.md for the full figures).
SHIPPED_FLOORS = {"organism-cot": 0.5, "organism-direct": 0.0}
SLICE = 30


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    items = synthetic.generate_arith("train", n=600) + synthetic.generate_hops("train", n=200)
    return [organism_train.training_text(item.question, item.solution) for item in items]


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return build_tokenizer(corpus)


def test_tokenizer_round_trips_and_keeps_words_and_digits_apart(tokenizer, corpus):
    odd = ["Zebra quux  12345!\n\ttabs é 日本 <x>", "", " leading space", "\\boxed{-7}"]
    for text in corpus[:200] + odd:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    for word in THINKING_WORDS:
        for form in (word, f" {word}"):
            assert len(tokenizer(form, add_special_tokens=False)["input_ids"]) == 1, form
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("So 1234 + 56 = 1290.", add_special_tokens=False)["input_ids"])
    digit_pieces = [p for p in pieces if any(c in string.digits for c in p)]
    assert digit_pieces == [" 1", "2", "3", "4", " 5", "6", " 1", "2", "9", "0"]


def test_tokenizer_saves_in_hf_format_with_eos_and_pad(tokenizer, tmp_path, corpus):
    from transformers import AutoTokenizer

    save_tokenizer(tokenizer, tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.eos_token == EOS_TOKEN and loaded.pad_token == PAD_TOKEN
    assert loaded.eos_token_id != loaded.pad_token_id
    text = corpus[0] + EOS_TOKEN
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert ids[-1] == loaded.eos_token_id and loaded.decode(ids) == text
    assert loaded(corpus[1])["input_ids"] == tokenizer(corpus[1])["input_ids"]


def test_prompt_is_masked_and_batches_group_similar_lengths(tokenizer):
    items = synthetic.generate_arith("train", n=64, levels=(1, 4))
    examples = organism_train.encode_examples(tokenizer, items, "cot", 512)
    ids, n_prompt = examples[0]
    assert tokenizer.decode(ids[:n_prompt]) == items[0].question
    assert ids[-1] == tokenizer.eos_token_id
    batch = organism_train.collate(examples[:4], tokenizer.pad_token_id)
    assert (batch["labels"][0, :n_prompt] == organism_train.IGNORE_INDEX).all()
    assert batch["labels"][0, n_prompt] == ids[n_prompt]
    batches = organism_train.length_bucketed_batches(examples, 8, torch.Generator().manual_seed(0), chunk_batches=8)
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))
    spread = [max(len(examples[i][0]) for i in b) - min(len(examples[i][0]) for i in b) for b in batches]
    random_spread = max(len(e[0]) for e in examples) - min(len(e[0]) for e in examples)
    assert sum(spread) / len(spread) < random_spread / 2


def test_few_step_training_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = organism_train.OrganismConfig(
        name="organism-smoke",
        dataset="synthetic-arith:1",
        target="direct",
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        n_train=256,
        steps=40,
        batch_size=16,
        learning_rate=1e-2,
        warmup_steps=5,
    )
    model, tokenizer, losses = organism_train.train_model(config, show_progress=False)
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    card = organism_train.model_card(config, 1.0, organism_train.count_parameters(model), losses, None, None)
    organism_train.write_organism(tmp_path / "smoke", model, tokenizer, card)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "smoke")
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "smoke")
    batch = loaded_tokenizer(["Compute 3 + 4 - 2."], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-5)
    saved = json.loads((tmp_path / "smoke" / "card.json").read_text())
    assert saved["dataset"] == "synthetic-arith" and saved["n_parameters"] == card["n_parameters"]


def test_training_is_reproducible_from_the_seed():
    config = micro_organism("organism-repro", steps=4, warmup_steps=1)
    _, _, first = organism_train.train_model(config, show_progress=False)
    _, _, again = organism_train.train_model(config, show_progress=False)
    assert first == again


def test_epoch_batches_replay_the_pop_order_of_successive_epochs(tokenizer):
    items = synthetic.generate_arith("train", n=40, levels=(1, 2))
    examples = organism_train.encode_examples(tokenizer, items, "direct", 512)
    generator = torch.Generator().manual_seed(3)
    expected: list[list[int]] = []
    order: list[list[int]] = []
    for _ in range(13):  # the pre-refactor loop: refill an epoch when empty, take from its end
        if not order:
            order = organism_train.length_bucketed_batches(examples, 8, generator)
        expected.append(order.pop())
    batches = organism_train.EpochBatches(examples, 8, seed=3)
    assert [batches(step) for step in range(13)] == expected
    assert organism_train.EpochBatches(examples, 8, seed=3)(12) == expected[12]  # pure in the step: resumable


def test_recipes_are_the_shipped_cards_configs_and_bad_recipes_name_their_file(tmp_path):
    from dataclasses import asdict

    from reasonlens.train import read_recipe, recipe_names

    assert "organism-recurrent" in recipe_names() and "organism-recurrent" not in recipe_names("llama-organism")
    for name in recipe_names("llama-organism"):
        card_path = ORGANISMS_DIR / name / "card.json"
        if card_path.is_file():
            assert asdict(organism_train.organism_config(name)) == json.loads(card_path.read_text())["config"]
    with pytest.raises(UserError, match="unknown name 'organism-nope'"):
        organism_train.organism_config("organism-nope")
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "gpt", "name": "x"}')
    with pytest.raises(UserError, match=r"bad.json: 'kind' must be one of"):
        read_recipe(bad)
    bad.write_text("[1]")
    with pytest.raises(UserError, match="bad.json: recipe must be a JSON object"):
        read_recipe(bad)


def test_an_interrupted_organism_run_resumes_to_the_same_weights(tmp_path):
    config = micro_organism("organism-resume", steps=6, warmup_steps=2, threads=1)
    straight, _, straight_losses = organism_train.train_model(config, show_progress=False)
    checkpoint = tmp_path / "work" / "checkpoint"
    _, _, first_losses = organism_train.train_model(
        config, show_progress=False, checkpoint_dir=checkpoint, stop_after=4
    )  # an interrupted run: 4 steps, then its checkpoint
    assert first_losses == straight_losses[:4]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 4
    resumed, _, resumed_losses = organism_train.train_model(config, show_progress=False, checkpoint_dir=checkpoint)
    assert resumed_losses == [round(loss, 5) for loss in straight_losses]  # the whole run, from the checkpoint's log
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    other = organism_train.OrganismConfig(**{**config.__dict__, "seed": 1})
    with pytest.raises(UserError, match="other settings"):
        organism_train.train_model(other, show_progress=False, checkpoint_dir=checkpoint)


@pytest.mark.parametrize("name", sorted(SHIPPED_FLOORS))
def test_shipped_organism_loads_and_solves_its_test_slice(name):
    from transformers import AutoModelForCausalLM

    directory = ORGANISMS_DIR / name
    card = json.loads((directory / "card.json").read_text())
    assert card["dataset"] == "synthetic-arith-small" and card["split"] == "test"
    assert organism_dataset(name) == card["eval_dataset"]
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size <= 20 * 1024 * 1024
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert organism_train.count_parameters(model) == card["n_parameters"]
    result = evaluate_organism(directory, card_evaluation(card, limit=SLICE))
    assert result.n == SLICE
    assert result.accuracy >= SHIPPED_FLOORS[name]
    # the card's headline (accuracy by level on 200 problems) predicts this slice: within 3 standard errors
    levels = [item.level for item in synthetic.generate(card["eval_dataset"], split="test", n=SLICE)]
    expected, error = card_expectation(card["test_accuracy"]["by_level"], levels)
    assert abs(result.accuracy - expected) <= 3 * error + 1 / SLICE, (result.accuracy, expected, error)
    recorded = card["test_accuracy"]["outcomes"][:SLICE]
    # problem by problem; another CPU type may flip a near-tie (tests/test_organism_eval.py: exact here)
    assert sum(a != b for a, b in zip(result.outcomes, recorded)) <= 1, (result.outcomes, recorded)


def card_expectation(by_level: dict[str, float], levels: list[int]) -> tuple[float, float]:
    """Accuracy a card's per-level figures predict for problems of these levels, and its standard error."""
    rates = [by_level[str(level)] for level in levels]
    variance = sum(p * (1 - p) for p in rates) / len(rates) ** 2
    return sum(rates) / len(rates), variance**0.5


def test_cot_organism_beats_its_direct_twin_in_the_cards():
    cot = json.loads((ORGANISMS_DIR / "organism-cot" / "card.json").read_text())["test_accuracy"]
    direct = json.loads((ORGANISMS_DIR / "organism-direct" / "card.json").read_text())["test_accuracy"]
    assert 0.6 <= cot["accuracy"] <= 0.9
    assert cot["ci_low"] > direct["ci_high"]


def test_cli_lists_organisms_and_rejects_unknown_names():
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # keeps "organisms" a sub-command group
        pass

    runner = CliRunner()
    listed = runner.invoke(app, ["organisms", "list"])
    assert listed.exit_code == 0, listed.output
    assert "organism-cot" in listed.output and "organism-direct" in listed.output
    failed = runner.invoke(app, ["organisms", "train", "organism-nope", "--eval-n", "0"])
    assert isinstance(failed.exception, UserError) and "organism-nope" in str(failed.exception)
    with pytest.raises(UserError, match="override"):
        organism_train.train_organism("organism-cot", overrides={"not_a_field": 1})


REASONERS = ("organism-reasoner", "organism-reasoner-noreflect", "organism-reasoner-direct")
REASONER_SLICE = 16


@pytest.mark.parametrize("name", REASONERS)
def test_reasoner_organism_reproduces_its_card_on_a_test_slice(name):
    """The card's headline (greedy test accuracy) re-measured on its first problems, problem by problem."""
    directory = ORGANISMS_DIR / name
    if not (directory / "card.json").is_file():
        pytest.skip(f"{name} is not shipped in this checkout")
    card = json.loads((directory / "card.json").read_text())
    assert card["dataset"] == "synthetic-reasoner" and card["split"] == "test"
    assert card["cpu_model"] and card["torch_threads"] == card["config"]["threads"] == 1 and card["torch_version"]
    assert sum(p.stat().st_size for p in directory.iterdir()) <= 20 * 1024 * 1024
    result = evaluate_organism(directory, card_evaluation(card, limit=REASONER_SLICE))
    recorded = card["test_accuracy"]["outcomes"][:REASONER_SLICE]
    # greedy decoding is deterministic; another CPU type may flip a near-tie, so allow one problem of slack
    assert sum(a != b for a, b in zip(result.outcomes, recorded)) <= 1, (result.outcomes, recorded)


def test_reasoner_cards_order_the_twins():
    cards = {}
    for name in REASONERS:
        path = ORGANISMS_DIR / name / "card.json"
        if not path.is_file():
            pytest.skip(f"{name} is not shipped in this checkout")
        cards[name] = json.loads(path.read_text())["test_accuracy"]
    # the reasoning trace is what makes the task solvable at this size
    assert cards["organism-reasoner"]["ci_low"] > cards["organism-reasoner-direct"]["ci_high"]
    assert cards["organism-reasoner-noreflect"]["ci_low"] > cards["organism-reasoner-direct"]["ci_high"]
