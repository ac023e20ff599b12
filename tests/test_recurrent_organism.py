"""organism-recurrent: difficulty statistics of `depth` and the `organisms train organism-recurrent` path."""

from __future__ import annotations

import json

import pytest

from reasonlens.organisms import ORGANISMS_DIR
from reasonlens.recurrent.depth import difficulty_correlation, level_breakdown


def _record(item_id: str, correct: bool, iterations: list[int]) -> dict:
    return {"id": item_id, "correct": correct, "iterations": iterations}


def test_level_breakdown_groups_accuracy_and_iterations_by_level():
    levels = {"a": 1.0, "b": 1.0, "c": 3.0}
    results = [
        _record("a", True, [1, 3]),
        _record("b", False, [2, 2]),
        _record("c", True, [4, 8, 6]),
        _record("unknown", True, [9]),
    ]
    breakdown = level_breakdown(results, levels)
    assert list(breakdown) == ["1", "3"]
    assert breakdown["1"] == {"n": 2, "accuracy": 0.5, "mean_iterations_per_token": 2.0, "mean_max_iterations": 2.5}
    assert breakdown["3"] == {"n": 1, "accuracy": 1.0, "mean_iterations_per_token": 6.0, "mean_max_iterations": 8.0}


def test_difficulty_correlation_is_spearman_of_level_against_item_compute():
    levels = {str(i): float(level) for i, level in enumerate([1, 2, 3, 4])}
    rising = [_record(str(i), True, [1, i + 1]) for i in range(4)]  # max iterations 1,2,3,4: perfectly monotone
    correlation = difficulty_correlation(rising, levels)
    assert correlation["n"] == 4
    assert correlation["max_iterations"]["rho"] == pytest.approx(1.0)
    falling = [_record(str(i), True, [10 - i]) for i in range(4)]
    assert difficulty_correlation(falling, levels)["mean_iterations"]["rho"] == pytest.approx(-1.0)
    constant = [_record(str(i), True, [3, 3]) for i in range(4)]  # same compute everywhere: undefined, no warning
    assert difficulty_correlation(constant, levels)["max_iterations"] == {"rho": None, "p_value": None}
    one_level = {str(i): 2.0 for i in range(4)}
    assert difficulty_correlation(rising, one_level) is None  # no spread in difficulty: nothing to correlate


def test_organisms_train_organism_recurrent_writes_a_loadable_organism_with_card(tmp_path):
    from reasonlens.cli import main
    from reasonlens.models import load

    out = tmp_path / "organism-recurrent"
    main(["organisms", "train", "organism-recurrent", "--max-steps", "3", "--eval-n", "6", "--out", str(out)])
    card = json.loads((out / "card.json").read_text())
    assert card["eval_dataset"] == "synthetic-flips:1-8" and card["steps"] == 3
    assert card["cpu_model"] and card["torch_version"] and card["torch_threads"] == 2  # what byte-identity needs
    assert card["training_command"].startswith("reasonlens organisms train organism-recurrent")
    assert set(card["test_accuracy_by_r"]) == {"1", "2", "4", "8", "16", "32"}
    assert card["test_accuracy_n"] == 6 and card["test_accuracy"]["n"] == 6 and card["test_accuracy"]["r"] == 32
    assert (card["adaptive_exit"]["criterion"], card["adaptive_exit"]["threshold"]) == ("latent-diff", 0.005)
    assert [(rule["criterion"], rule["max_steps"]) for rule in card["adaptive_exit_other_rules"]] == [("kl", 32)]
    assert set(card["adaptive_exit"]["by_level"]) <= {str(level) for level in range(1, 9)}
    assert not (out / "checkpoint").exists() and not out.with_name(out.name + ".work").exists()
    assert "| r |" in (out / "README.md").read_text()
    lm = load(str(out))
    assert getattr(lm.model, "is_recurrent_depth", False)
    for text in ("a = 3. b = 7 - a. c = b + 1. What is c?", "unseen: Wait, 12 apples!"):
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert lm.tokenizer.decode(ids) == text


def test_shipped_organism_recurrent_gains_accuracy_with_depth_and_spends_more_on_longer_chains(tmp_path):
    from reasonlens.recurrent.depth import DepthSpec, run_depth

    card = json.loads((ORGANISMS_DIR / "organism-recurrent" / "card.json").read_text())
    assert card["eval_dataset"] == "synthetic-flips:1-8" and card["training_command"].startswith("reasonlens organisms")
    rule = card["adaptive_exit"]
    summary = run_depth(
        DepthSpec(
            model="organism-recurrent",
            dataset=card["eval_dataset"],
            out=tmp_path / "d",
            steps=(1, 8),
            n=64,
            max_new_tokens=16,
            batch_size=64,
            exit_criterion=rule["criterion"],
            threshold=rule["threshold"],
        ),
        quiet=True,
    )
    at_1, at_8 = summary["steps"]["1"]["accuracy"], summary["steps"]["8"]["accuracy"]
    # measured on these 64 problems (8 per level): 0.297 at r=1, 0.938 at r=8, 0.922 under the card's exit rule
    # with Spearman rho(level, mean iterations) = +0.85 (the card has the 300-problem figures)
    assert at_1 <= 0.5 and at_8 >= 0.85
    # the card's headline (accuracy by r and level on 300 problems) predicts these 64: within 3 standard errors
    from reasonlens.data import synthetic

    levels = [item.level for item in synthetic.generate(card["eval_dataset"], split="test", n=64)]
    for r, measured in (("1", at_1), ("8", at_8)):
        rates = [card["test_accuracy_by_r_and_level"][r][str(level)] for level in levels]
        expected, error = sum(rates) / 64, sum(p * (1 - p) for p in rates) ** 0.5 / 64
        assert abs(measured - expected) <= 3 * error + 1 / 64, (r, measured, expected, error)
    adaptive = summary["adaptive"]
    assert adaptive["accuracy"] >= at_8 - 0.05
    assert adaptive["level_iteration_correlation"]["mean_iterations"]["rho"] >= 0.6
    iterations = [adaptive["by_level"][str(level)]["mean_iterations_per_token"] for level in (1, 8)]
    assert iterations[1] > iterations[0]
