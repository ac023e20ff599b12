"""The organisms' card accuracy comes from an ordinary eval run (runner, records, grader, summary)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import typer
from micro_organism import micro_organism
from typer.testing import CliRunner

from reasonlens.errors import UserError
from reasonlens.eval import wilson_ci
from reasonlens.organisms import ORGANISMS_DIR
from reasonlens.organisms import train as organism_train
from reasonlens.organisms.commands import register
from reasonlens.organisms.evaluation import (
    OrganismEval,
    card_evaluation,
    check_organism,
    eval_problems,
    evaluate_organism,
)
from reasonlens.runs import RunDir

PREFIX = 16  # problems re-graded: seconds on a CPU


def test_a_shipped_card_is_reproduced_verdict_by_verdict_by_an_eval_run(tmp_path):
    """organism-cot (65.5%, reasoning traces up to 400 tokens): its first verdicts, re-graded through the runner."""
    directory = ORGANISMS_DIR / "organism-cot"
    card = json.loads((directory / "card.json").read_text())
    recorded = card["test_accuracy"]["outcomes"][:PREFIX]
    assert "1" in recorded and "0" in recorded  # the prefix can tell a changed path from an unchanged one
    evaluation = card_evaluation(card, limit=PREFIX)
    assert evaluation == OrganismEval("synthetic-arith-small:1-3", PREFIX, 400, card["data_seed"])
    result = evaluate_organism(directory, evaluation, out=tmp_path / "run")
    assert result.outcomes == recorded
    run = RunDir(tmp_path / "run")
    manifest, records = run.manifest, run.results()
    assert (manifest["command"], manifest["template"], manifest["split"]) == ("eval", "raw", "test")
    assert manifest["method"] == {"name": "baseline"} and manifest["decode"]["do_sample"] is False
    problems = eval_problems(evaluation)
    assert [r["prompt"] for r in records] == [p.question for p in problems]  # the raw question is the prompt
    assert "".join("1" if r["correct"] else "0" for r in records) == recorded
    assert (result.n, result.n_correct) == (PREFIX, recorded.count("1"))
    interval = wilson_ci(result.n_correct, result.n)
    assert (result.accuracy, result.ci_low, result.ci_high) == (interval.estimate, interval.lo, interval.hi)
    levels = sorted({str(p.meta["level"]) for p in problems})
    assert list(result.by_level) == levels
    for level in levels:
        verdicts = [v for v, p in zip(recorded, problems) if str(p.meta["level"]) == level]
        assert result.by_level[level] == verdicts.count("1") / len(verdicts)


def test_the_trainer_grades_the_model_in_memory_as_the_written_directory_is_graded(tmp_path):
    """What `organisms train` writes in the card is what `organisms check --dir` re-measures on the weights."""
    config = micro_organism("organism-smoke", steps=8, warmup_steps=1, eval_n=12)
    model, tokenizer, losses = organism_train.train_model(config, show_progress=False)
    target = tmp_path / "smoke"
    evaluation = organism_train.evaluate_trained(model, tokenizer, config, target)
    card = organism_train.model_card(config, 1.0, organism_train.count_parameters(model), losses, evaluation, None)
    organism_train.write_organism(target, model, tokenizer, card)
    assert not any(path.is_dir() for path in target.iterdir())  # no run folder shipped inside the organism
    checks = check_organism("organism-smoke", target, out=tmp_path / "check")
    assert [c.field for c in checks] == list(evaluation.to_dict()) and all(c.ok for c in checks), checks
    memory = OrganismEval(config.dataset, config.eval_n, config.max_new_tokens, config.data_seed)
    from reasonlens.models import LoadedModel

    evaluate_organism(target, memory, tmp_path / "memory", lm=LoadedModel.wrap(model, tokenizer, "smoke", "smoke"))
    completions = [[r["completion"] for r in RunDir(tmp_path / name).results()] for name in ("memory", "check")]
    assert completions[0] == completions[1] and any(completions[0])


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # keeps "organisms" a sub-command group
        pass

    return app


def test_organisms_check_exits_1_when_a_card_disagrees_with_its_weights(tmp_path):
    runner = CliRunner()
    passed = runner.invoke(cli(), ["organisms", "check", "organism-reasoner-direct", "--limit", "8"])
    assert passed.exit_code == 0, passed.output
    assert "outcomes[:8]" in passed.output and "reproduced" in passed.output
    copy = tmp_path / "organism-reasoner-direct"
    shutil.copytree(ORGANISMS_DIR / "organism-reasoner-direct", copy)
    card = json.loads((copy / "card.json").read_text())
    outcomes = card["test_accuracy"]["outcomes"]
    card["test_accuracy"]["outcomes"] = ("1" if outcomes[2] == "0" else "0").join([outcomes[:2], outcomes[3:]])
    (copy / "card.json").write_text(json.dumps(card))
    failed = runner.invoke(
        cli(), ["organisms", "check", "organism-reasoner-direct", "--dir", str(copy), "--limit", "8"]
    )
    assert failed.exit_code == 1, failed.output
    assert "differ at [2]" in failed.output and "differs from the card" in failed.output


def test_organisms_check_refuses_a_prefix_it_cannot_compare(tmp_path):
    directory = tmp_path / "cot"
    shutil.copytree(ORGANISMS_DIR / "organism-cot", directory)
    card = json.loads((directory / "card.json").read_text())
    card["test_accuracy"].pop("outcomes", None)
    (directory / "card.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match="no per-problem outcomes"):
        check_organism("organism-cot", directory, limit=8)
    with pytest.raises(UserError, match="--limit must be in 1..200"):
        check_organism("organism-cot", limit=201)


def test_an_evaluation_run_is_an_ordinary_resumable_run(tmp_path):
    """Re-running into the same folder resumes (nothing decoded twice) and gives the same block."""
    evaluation = replace(
        card_evaluation(json.loads((ORGANISMS_DIR / "organism-direct" / "card.json").read_text())), n=4
    )
    first = evaluate_organism(ORGANISMS_DIR / "organism-direct", evaluation, out=tmp_path / "run")
    lines = (tmp_path / "run" / "results.jsonl").read_text()
    again = evaluate_organism(ORGANISMS_DIR / "organism-direct", evaluation, out=tmp_path / "run")
    assert again == first and (tmp_path / "run" / "results.jsonl").read_text() == lines
