"""``organism-recurrent``: the recurrent-depth model organism, trained by ``reasonlens organisms train``.

The recipe is ``reasonlens/recipes/organism-recurrent.json`` (its ``model`` and ``train`` sections are also
the ``train-recurrent --config organism-recurrent`` preset) on its own task,
``synthetic-flips:1-8`` (chains of ``x + d``, ``x - d`` and ``d - x`` steps answered directly). A ``d - x`` step
flips the sign of everything before it, so the answer needs every step in order: there is no shallow sum of
the operands to fall back on (``synthetic-hops`` has one). The core block is a single layer, so at r = 1 the
model is three layers deep and each further iteration adds one. Training goes through
:func:`train_recurrent` (randomized depth, truncated backprop); the card's accuracy-vs-r table and the
adaptive-exit correlation come from :func:`reasonlens.recurrent.depth.run_depth`, i.e. from the toolkit's
one decode loop.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from reasonlens.errors import UserError
from reasonlens.train.provenance import training_machine

NAME = "organism-recurrent"
DEPTH_STEPS = (1, 2, 4, 8, 16, 32)
# Adaptive-exit rules scored for the card. The first is the organism's own: measured on its 300 test problems,
# latent-diff < 0.005 keeps r=32's accuracy (0.940 vs 0.943) and rises with the level (rho +0.84), while the
# paper's KL < 5e-4 (second) exits on a plateau of the answer distribution before a long chain is done (0.50).
EXIT_RULES = (("latent-diff", 0.005), ("kl", 5e-4))
OVERRIDABLE = ("steps", "seed", "eval_n")


@dataclass(frozen=True)
class OrganismRecipe:
    """The organism-level fields of the recipe (its ``model`` and ``train`` sections go to train_recurrent)."""

    dataset: str  # the task it is trained and evaluated on
    threads: int  # torch threads while training (recorded in the card: byte-identity needs the same count)
    eval_n: int  # test problems scored for the card
    tokenizer_vocab: int  # upper bound for the BPE merges over the task's corpus; the model's vocab_size leaves room


def organism_recipe() -> OrganismRecipe:
    from reasonlens.train.recipes import load_recipe

    recipe = load_recipe(NAME)
    known = [f.name for f in fields(OrganismRecipe)]
    given = {k: v for k, v in recipe.fields.items() if k not in ("model", "train")}
    unknown, missing = sorted(set(given) - set(known)), sorted(set(known) - set(given))
    if unknown or missing:
        raise UserError(f"{recipe.path}: unknown field(s) {unknown or 'none'}, missing field(s) {missing or 'none'}")
    return OrganismRecipe(**given)


def _recipe(overrides: dict[str, Any]):
    from reasonlens.recurrent.train import load_train_file

    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise UserError(f"{NAME}: cannot override {', '.join(unknown)} (overridable: {', '.join(OVERRIDABLE)})")
    model_config, train_config, _ = load_train_file(NAME)
    if "steps" in overrides:
        train_config.steps = int(overrides["steps"])
    if "seed" in overrides:
        train_config.seed = int(overrides["seed"])
    return model_config, train_config.validate()


def build_task_tokenizer(train_config, recipe: OrganismRecipe | None = None) -> Any:
    """The organisms' word-level BPE tokenizer, learnt on the training split of the task (deterministic)."""
    from reasonlens.data import synthetic
    from reasonlens.organisms.tokenizer import build_tokenizer

    recipe = recipe or organism_recipe()
    items = synthetic.generate(recipe.dataset, split=train_config.data_split, n=train_config.data_n)
    texts = [f"{item.question} {item.direct_solution}" for item in items]
    return build_tokenizer(texts, vocab_size=recipe.tokenizer_vocab)


def depth_spec(model_dir: Path, dataset: str, out: Path, n: int, steps: tuple[int, ...], rule: int | None) -> Any:
    """The `reasonlens depth` run of a card: greedy, 16 new tokens, batches of 50, exit rule ``EXIT_RULES[rule]``."""
    from reasonlens.recurrent.depth import DepthSpec

    criterion, threshold = EXIT_RULES[rule] if rule is not None else (None, None)
    return DepthSpec(
        model=str(model_dir),
        dataset=dataset,
        out=out,
        steps=steps,
        exit_criterion=criterion,
        threshold=threshold,
        n=n,
        max_new_tokens=16,
        batch_size=50,
    )


def evaluate_depth(model_dir: Path, n: int, quiet: bool = False, dataset: str | None = None) -> dict[str, Any]:
    """Accuracy at r in DEPTH_STEPS and under each rule of EXIT_RULES on the first ``n`` test problems.

    Returns run_depth's summary for the first rule plus ``other_exit_rules``: the adaptive block of each
    further rule (those runs repeat only the largest r).
    """
    from reasonlens.recurrent.depth import run_depth

    dataset = dataset or organism_recipe().dataset
    with tempfile.TemporaryDirectory(prefix="organism-recurrent-eval.") as scratch:

        def run(number: int, steps: tuple[int, ...]) -> dict[str, Any]:
            return run_depth(
                depth_spec(model_dir, dataset, Path(scratch) / f"rule{number}", n, steps, number), quiet=quiet
            )

        summary = run(0, DEPTH_STEPS)
        others = [run(number, (max(DEPTH_STEPS),)).get("adaptive") for number in range(1, len(EXIT_RULES))]
    return summary | {"other_exit_rules": others}


def regrade_accuracy_block(
    model_dir: Path, card: dict[str, Any], out: Path | None = None, limit: int | None = None
) -> dict[str, Any]:
    """The card's ``test_accuracy`` block re-measured: the same depth run at the card's r only (each r is its
    own run of the runner, so it does not depend on the others). ``out`` keeps the depth folder."""
    from reasonlens.recurrent.depth import run_depth

    recorded = card["test_accuracy"]
    r, n = int(recorded["r"]), limit or int(recorded["n"])
    if out is None:
        with tempfile.TemporaryDirectory(prefix="organism-recurrent-check.") as scratch:
            return regrade_accuracy_block(model_dir, card, Path(scratch) / "depth", limit)
    summary = run_depth(depth_spec(model_dir, card["eval_dataset"], Path(out), n, (r,), None), quiet=True)
    return _accuracy_block(summary["steps"][str(r)], r)


def _adaptive_block(adaptive: dict[str, Any] | None) -> dict[str, Any] | None:
    if not adaptive:
        return None
    keys = (
        "criterion",
        "threshold",
        "max_steps",
        "accuracy",
        "mean_iterations_per_token",
        "iterations_saved_vs_fixed_rmax",
        "level_iteration_correlation",
    )
    return {key: adaptive.get(key) for key in keys} | {
        "by_level": {
            k: {
                "accuracy": v["accuracy"],
                "mean_iterations_per_token": v["mean_iterations_per_token"],
                "mean_max_iterations": v["mean_max_iterations"],
            }
            for k, v in adaptive.get("by_level", {}).items()
        }
    }


def _accuracy_block(entry: dict[str, Any] | None, r: int = max(DEPTH_STEPS)) -> dict[str, Any] | None:
    """The organisms' common ``test_accuracy`` block (what `organisms list` shows), at ``r`` (the largest)."""
    if not entry:
        return None
    return {
        "n": entry["n"],
        "n_correct": entry["n_correct"],
        "accuracy": entry["accuracy"],
        "ci_low": entry["accuracy_ci95"][0],
        "ci_high": entry["accuracy_ci95"][1],
        "r": r,
    }


def card_from(
    train_result,
    train_config,
    model_config,
    n_parameters: int,
    depth: dict[str, Any] | None,
    command: str,
    cpu_seconds: float,
    recipe: OrganismRecipe | None = None,
) -> dict[str, Any]:
    recipe = recipe or organism_recipe()
    steps = (depth or {}).get("steps", {})
    adaptive = (depth or {}).get("adaptive") or {}
    return {
        "name": NAME,
        "architecture": (
            f"RecurrentDepthLM (huginn-0125 layout: {model_config.n_layers_in_prelude} prelude, "
            f"{model_config.n_layers_in_recurrent_block} core, {model_config.n_layers_in_coda} coda "
            f"block, n_embd {model_config.n_embd})"
        ),
        "dataset": recipe.dataset.split(":", 1)[0],
        "dataset_spec": recipe.dataset,
        "eval_dataset": recipe.dataset,
        "split": "test",
        "train_split": train_config.data_split,
        "target": "direct",
        "training_command": command,
        "wall_time_seconds": round(train_result.seconds, 1),
        "cpu_time_seconds": round(cpu_seconds, 1),
        "torch_threads": recipe.threads,
        "n_parameters": n_parameters,
        "seed": train_config.seed,
        "steps": train_result.steps,
        "mean_recurrence": model_config.mean_recurrence,
        "mean_backprop_depth": model_config.mean_backprop_depth,
        "final_train_loss": round(train_result.final_loss, 4),
        "test_accuracy": _accuracy_block(steps.get(str(max(DEPTH_STEPS)))),
        "test_accuracy_n": (depth or {}).get("steps", {}).get("1", {}).get("n"),
        "test_accuracy_by_r": {r: entry["accuracy"] for r, entry in steps.items()},
        "test_accuracy_ci95_by_r": {r: entry["accuracy_ci95"] for r, entry in steps.items()},
        "test_accuracy_by_r_and_level": {
            r: {k: v["accuracy"] for k, v in entry.get("by_level", {}).items()} for r, entry in steps.items()
        },
        "adaptive_exit": _adaptive_block(adaptive),
        "adaptive_exit_other_rules": [
            _adaptive_block(block) for block in (depth or {}).get("other_exit_rules", []) if block
        ],
        "depth_command": (
            f"reasonlens depth --model {NAME} --limit {(depth or {}).get('steps', {}).get('1', {}).get('n')} "
            f"--recurrence {','.join(map(str, DEPTH_STEPS))} --exit {EXIT_RULES[0][0]} --threshold {EXIT_RULES[0][1]:g} "
            "--out RUN"
        ),
        **{k: v for k, v in training_machine(recipe.threads).items() if k != "torch_threads"},
    }


def card_markdown(card: dict[str, Any]) -> str:
    by_r = card["test_accuracy_by_r"]
    table = [
        "| r | " + " | ".join(by_r) + " |",
        "|---|" + "---|" * len(by_r),
        "| accuracy | " + " | ".join(f"{100 * a:.1f}%" for a in by_r.values()) + " |",
    ]
    lines = [
        f"# {NAME}",
        "",
        f"A {card['n_parameters']:,}-parameter {card['architecture']} trained from scratch by reasonlens with "
        f"randomized depth (mean r {card['mean_recurrence']}, backprop through the last "
        f"{card['mean_backprop_depth']}) on `{card['dataset_spec']}`: chains of x + d, x - d and d - x steps, "
        "answered directly (level = number of steps).",
        "",
        f"- Training command: `{card['training_command']}`",
        f"- Wall time: {card['wall_time_seconds']:.0f} s ({card['steps']} steps, torch threads = "
        f"{card['torch_threads']}), process CPU time {card['cpu_time_seconds']:.0f} s",
        f"- Trained with torch {card.get('torch_version', '?')} on CPU `{card.get('cpu_model') or 'not recorded'}` "
        f"with {card['torch_threads']} threads: re-training reproduces these weights byte for byte only on the same "
        "CPU type and thread count" + (f"; CPU: {card['cpu_model_note']}" if card.get("cpu_model_note") else ""),
        f"- Parameters: {card['n_parameters']:,}; seed {card['seed']}; final training loss {card['final_train_loss']}",
        f"- Test accuracy (greedy, first {card['test_accuracy_n']} test problems, zero initial state), by core "
        "iterations r:",
        "",
        *table,
        "",
    ]
    if "1" in by_r and "16" in by_r:
        lines += [f"- Depth gain from r=1 to r=16: {100 * (by_r['16'] - by_r['1']):+.1f} points", ""]
    for adaptive in [card.get("adaptive_exit")] + list(card.get("adaptive_exit_other_rules") or []):
        if not adaptive:
            continue
        correlation = adaptive.get("level_iteration_correlation") or {}
        rho = (correlation.get("mean_iterations") or {}).get("rho")
        lines += [
            f"- Adaptive exit ({adaptive['criterion']} < {adaptive['threshold']:g}, at most r={adaptive['max_steps']}): "
            f"accuracy {100 * adaptive['accuracy']:.1f}%, {adaptive['mean_iterations_per_token']:.2f} iterations per "
            f"token; Spearman rho(level, mean iterations per token of the item) = "
            f"{'n/a' if rho is None else f'{rho:+.3f}'}",
            "",
        ]
    lines += [
        f"Depth table command: `{card['depth_command']}`.",
        f'Load by name: `reasonlens.models.load("{NAME}")` (no remote code).',
        "",
    ]
    return "\n".join(lines)


def train_recurrent_organism(output_dir: Path | None, overrides: dict[str, Any], command: str):
    """The trainer of the ``recurrent-organism`` recipe (``reasonlens organisms train organism-recurrent``).

    Training resumes from ``<target>.work/checkpoint`` when interrupted; the shipped directory is replaced only
    once the model is trained and evaluated.
    """
    from reasonlens.organisms import ORGANISMS_DIR
    from reasonlens.organisms.artifacts import EvalResult, TrainResult, write_recurrent_organism
    from reasonlens.recurrent.model import RecurrentDepthLM
    from reasonlens.recurrent.train import train_recurrent

    model_config, train_config = _recipe(overrides)
    recipe = organism_recipe()
    eval_n = int(overrides.get("eval_n", recipe.eval_n))
    target = Path(output_dir) if output_dir is not None else ORGANISMS_DIR / NAME
    work = target.with_name(target.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    tokenizer = build_task_tokenizer(train_config, recipe)
    cpu_started = time.process_time()
    result = train_recurrent(model_config, train_config, recipe.dataset, work, tokenizer=tokenizer)
    cpu_seconds = time.process_time() - cpu_started
    n_parameters = sum(p.numel() for p in RecurrentDepthLM.from_pretrained(work).parameters())
    depth = evaluate_depth(work, eval_n, dataset=recipe.dataset) if eval_n > 0 else None
    card = card_from(result, train_config, model_config, n_parameters, depth, command, cpu_seconds, recipe)
    (work / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (work / "README.md").write_text(card_markdown(card))
    write_recurrent_organism(work, target)
    evaluation = None
    if depth is not None:
        best = depth["steps"][str(max(DEPTH_STEPS))]
        evaluation = EvalResult(
            n=best["n"],
            n_correct=best["n_correct"],
            accuracy=best["accuracy"],
            ci_low=best["accuracy_ci95"][0],
            ci_high=best["accuracy_ci95"][1],
            by_level={k: v["accuracy"] for k, v in best.get("by_level", {}).items()},
        )
    shutil.rmtree(work, ignore_errors=True)
    return TrainResult(target, result.seconds, n_parameters, [h["loss"] for h in result.history], evaluation)
