"""An organism's card accuracy, measured by an ordinary run: the runner, its records and its grader.

``evaluate_organism`` writes a run directory exactly as ``reasonlens eval --model DIR --dataset D --limit N
--template raw --max-new-tokens M --batch-size 64`` does (greedy, the raw question as prompt: what the
organisms were trained on) and builds the card's ``test_accuracy`` block from that run's summary (n, n_correct,
accuracy, Wilson CI) and records (accuracy by level, one verdict per problem). ``check_organism`` re-grades a
shipped organism's weights that way and compares the block with its card (``reasonlens organisms check``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.data import synthetic
from reasonlens.errors import UserError
from reasonlens.organisms.artifacts import EvalResult

TEMPLATE = "raw"  # the organisms are trained on "<question>\n<answer>": the prompt is the bare question
BATCH_SIZE = 64  # decode batch of every card evaluation (a near-tie may depend on the batch's padding)


@dataclass(frozen=True)
class OrganismEval:
    """What a card's accuracy is measured on: the first ``n`` test problems of ``dataset``, greedy decoding."""

    dataset: str
    n: int
    max_new_tokens: int
    data_seed: int = synthetic.DEFAULT_SEED


def eval_run_spec(out: Path, model: str, evaluation: OrganismEval) -> Any:
    """The RunSpec of a card evaluation: a baseline `reasonlens eval` run on the test split."""
    from reasonlens.data import adds_special_tokens
    from reasonlens.decode import DecodeConfig
    from reasonlens.runs import RunSpec

    decode = DecodeConfig(
        max_new_tokens=evaluation.max_new_tokens,
        batch_size=BATCH_SIZE,
        add_special_tokens=adds_special_tokens(TEMPLATE),
    )
    return RunSpec(
        out=out,
        model=model,
        dataset=evaluation.dataset,
        command="eval",
        split="test",
        n=evaluation.n,
        template=TEMPLATE,
        decode=decode,
        method={"name": "baseline"},
        label="baseline",
    )


def eval_problems(evaluation: OrganismEval) -> list[Any]:
    """The evaluated problems: the first n of the test split, generated with the recipe's data seed."""
    items = synthetic.generate(evaluation.dataset, split="test", n=evaluation.n, seed=evaluation.data_seed)
    return [synthetic.to_problem(item) for item in items]


def evaluate_organism(
    model: str | Path, evaluation: OrganismEval, out: Path | None = None, lm: Any = None, quiet: bool = True
) -> EvalResult:
    """Run the card evaluation of ``model`` (a model spec; ``lm``: the same model already in memory) into the
    run directory ``out`` (default: a temporary one) and return the card's ``test_accuracy`` block."""
    from reasonlens.runs import RunDir, execute

    if out is None:
        with tempfile.TemporaryDirectory(prefix="organism-eval.") as scratch:
            return evaluate_organism(model, evaluation, Path(scratch) / "run", lm, quiet)
    problems = eval_problems(evaluation)
    spec = eval_run_spec(Path(out), str(model), evaluation)
    summary = execute(spec, lm=lm, problems=problems, quiet=quiet)
    return accuracy_block(summary, RunDir(out).results(), problems)


def accuracy_block(summary: dict[str, Any], records: list[dict[str, Any]], problems: list[Any]) -> EvalResult:
    """The card's block from a finished run: the runner's counts and Wilson CI, the verdicts by level."""
    if len(records) != len(problems) or summary["n"] != len(problems):
        raise UserError(f"the evaluation run holds {len(records)} of {len(problems)} results")
    verdicts = [bool(record.get("correct")) for record in records]  # failed samples count as wrong (summarize)
    by_level: dict[str, list[bool]] = {}
    for record, ok in zip(records, verdicts):
        by_level.setdefault(str(problems[record["index"]].meta["level"]), []).append(ok)
    low, high = summary["accuracy_ci95"]
    return EvalResult(
        n=summary["n"],
        n_correct=summary["n_correct"],
        accuracy=summary["accuracy"],
        ci_low=low,
        ci_high=high,
        by_level={level: sum(v) / len(v) for level, v in sorted(by_level.items())},
        outcomes="".join("1" if ok else "0" for ok in verdicts),
    )


# ---------------------------------------------------------------------------------------------------------
# re-grading a shipped organism against its card


@dataclass(frozen=True)
class CardCheck:
    """One field of a card's ``test_accuracy`` block, as recorded and as re-graded."""

    field: str
    card: Any
    regraded: Any

    @property
    def ok(self) -> bool:
        return self.card == self.regraded


def card_evaluation(card: dict[str, Any], limit: int | None = None) -> OrganismEval:
    """The evaluation a (llama) organism card records: dataset, problem count, token budget, data seed."""
    return OrganismEval(
        dataset=card["eval_dataset"],
        n=limit or card["test_accuracy"]["n"],
        max_new_tokens=card["decoding"]["max_new_tokens"],
        data_seed=card.get("data_seed", synthetic.DEFAULT_SEED),
    )


def compare_block(recorded: dict[str, Any], regraded: dict[str, Any], limit: int | None) -> list[CardCheck]:
    """Field-by-field comparison; with ``limit`` only the verdicts of the first problems are comparable."""
    if limit is not None and limit < recorded["n"]:
        return [CardCheck(f"outcomes[:{limit}]", recorded["outcomes"][:limit], regraded["outcomes"])]
    return [CardCheck(key, value, regraded.get(key)) for key, value in recorded.items()]


def check_organism(
    name: str, directory: Path | None = None, out: Path | None = None, limit: int | None = None
) -> list[CardCheck]:
    """Re-grade the organism's weights in ``directory`` (default: the shipped one) through the runner and compare
    with its card's ``test_accuracy`` block. ``out`` keeps the run directory; ``limit`` re-grades a prefix."""
    from reasonlens.organisms import organism_dir, read_card

    directory = Path(directory) if directory is not None else organism_dir(name)
    card = read_card(directory)
    if card is None:
        raise UserError(f"organism '{name}': no card.json in {directory}")
    recorded = card.get("test_accuracy") or {}
    n = recorded.get("n")
    if not isinstance(n, int) or n < 1:
        raise UserError(f"organism '{name}': its card records no test accuracy to check")
    if limit is not None and not 1 <= limit <= n:
        raise UserError(f"--limit must be in 1..{n} (the card's test problems), got {limit}")
    if limit is not None and limit < n and not recorded.get("outcomes"):
        raise UserError(f"--limit: the card of '{name}' records no per-problem outcomes (re-grade all {n} problems)")
    if str(card.get("architecture", "")).startswith("RecurrentDepthLM"):  # what the recurrent trainer writes
        from reasonlens.recurrent.organism import regrade_accuracy_block  # the recurrent stack, only when asked

        regraded = regrade_accuracy_block(directory, card, out, limit)
    else:
        regraded = evaluate_organism(directory, card_evaluation(card, limit), out).to_dict()
    return compare_block(recorded, regraded, limit)
