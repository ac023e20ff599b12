"""`reasonlens eval` and `reasonlens compare-eval`: evaluate a method into resumable run directories and
compare methods on the same problems with paired bootstrap confidence intervals.

Plain methods write one run directory (`reasonlens.runs` format). Budgeted methods (TTTS, budget forcing,
or baseline with --budgets) write one sub-run per budget, `RUN_DIR/budget-<B>/`, plus a top-level
`manifest.json` and a `summary.json` with the accuracy for every budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from reasonlens.errors import UserError
from reasonlens.interventions.methods import Method, ResolvedMethod, build_plugins, get_method
from reasonlens.interventions.methods.words import format_token_ids
from reasonlens.interventions.registry import cli_flag
from reasonlens.interventions.scaling import ANSWER_PROMPT, ANSWER_TOKENS
from reasonlens.runs import RunSpec

console = Console(stderr=True)


def _parse_answer_prompt(text: str) -> str:
    from reasonlens.decode.escapes import parse_escapes

    return parse_escapes(text, "--answer-prompt")


def _parse_words(text: str) -> list[str]:
    from reasonlens.interventions.tokens import parse_words

    return parse_words(text)


def _parse_budgets(text: str) -> list[int]:
    from reasonlens.interventions.scaling import parse_budgets

    return parse_budgets(text)


@dataclass
class MethodOptions:
    """The method options `reasonlens eval` has flags for (generated from these fields, `cli_flag` metadata);
    each registered method reads the fields its own options dataclass has (by name), and `settings`
    (`--set key=value`) reaches any option of any method."""

    words: list[str] | None = cli_flag(
        None,
        "--words",
        "Comma-separated words (suppress/rr triggers, ttts thinking tokens); default: --token-set or the paper's list.",
        parse=_parse_words,
    )
    token_set: Path | None = cli_flag(None, "--token-set", "Token-set file from the MI analysis.")
    token_set_dataset: str | None = cli_flag(
        None, "--token-set-dataset", "Dataset the token set was learnt on (if unrecorded)."
    )
    token_set_split: str | None = cli_flag(
        None, "--token-set-split", "Split the token set was learnt on (if unrecorded)."
    )
    k: int | None = cli_flag(None, "--top-words", "suppress/rr: use the N most frequent words of the set.")
    control: str = cli_flag("thinking", "--control", "suppress: thinking | random.")
    control_run: Path | None = cli_flag(None, "--control-run", "suppress random: a generate run of this model.")
    band: float = cli_flag(2.0, "--band", "suppress random: frequency band factor.")
    seed: int = 0  # random control draw / RR recycling draws (eval's --seed, shared with sampling)
    split_starts: bool = cli_flag(
        False,
        "--split-starts",
        "suppress/rr: also ban the first piece of words the tokenizer splits (it starts other words too; warns).",
    )
    layer: int | None = cli_flag(None, "--rr-layer", "rr: decoder layer re-run (default floor(2L/3)).")
    p: float = cli_flag(1.0, "--p", "rr: recycling probability.")
    repeats: int = cli_flag(1, "--repeats", "rr: extra applications of the layer.")
    budgets: list[int] | None = cli_flag(
        None, "--budgets", "ttts/budget-force/baseline: e.g. 64,128,256.", parse=_parse_budgets
    )
    min_fraction: float = cli_flag(0.5, "--min-fraction", "budget-force: minimum / cap.")
    block_eos: bool = cli_flag(False, "--block-eos", "budget-force: block EOS below the minimum.")
    max_waits: int | None = cli_flag(
        None, "--max-waits", "budget-force: at most N stops become Wait (default: every stop below the minimum)."
    )
    wait: str = cli_flag("Wait", "--wait", "budget-force: word appended on early stops.")
    prefix: str = " "  # text before an injected word (--set prefix=...)
    answer_prompt: str = cli_flag(
        ANSWER_PROMPT, "--answer-prompt", "Text that forces the answer.", parse=_parse_answer_prompt
    )
    answer_tokens: int = cli_flag(ANSWER_TOKENS, "--answer-tokens", "Tokens allowed after the answer prompt.")
    settings: dict[str, str] = field(default_factory=dict)  # --set key=value, typed by the method's options


@dataclass
class EvalSpec:
    """An evaluation: the run it writes (`RunSpec`: model, dataset, decoding, capture) and the method to resolve.

    `evaluate` resolves `method` with `options` and writes `run` with `command="eval"` and the method's identity
    as the run's `method`; budgeted methods write one sub-run per budget."""

    run: RunSpec
    method: str = "baseline"
    options: MethodOptions = field(default_factory=MethodOptions)


def resolve_method(lm, name: str, options: MethodOptions, dataset: str, split: str) -> ResolvedMethod:
    """Fix every choice a method makes (words, layer, ...) so the result is the run's identity: the registered
    method reads its typed options from `options` (and `options.settings`, the `--set key=value` pairs)."""
    method = get_method(name)
    if method.budgeted and not options.budgets:
        raise UserError(f"--method {name} needs --budgets (e.g. --budgets 64,128,256,512)")
    return method.resolve(lm, method.options(options, options.settings), dataset, split)


def progress_name(method: Method, identity: dict[str, Any]) -> str:
    """The method as a run's progress bar names it: `suppress(thinking k=8)`, `rr(layer 20)`, `baseline`."""
    details = method.label_details(identity)
    return f"{method.name}({' '.join(details)})" if details else method.name


def evaluate(spec: EvalSpec, lm=None, quiet: bool = False, executor=None) -> dict[str, Any]:
    """Run (or resume) the evaluation; returns the summary also written to `OUT/summary.json`.

    `executor` (`reasonlens.runs.executors`) decodes the runs, e.g. sharded over Ray workers; default: here."""
    from reasonlens.models import load
    from reasonlens.runs import execute

    info = get_method(spec.method)
    run_spec = spec.run
    if lm is None and executor is not None:
        lm = executor.driver_model(
            run_spec.model, run_spec.model_dtype, run_spec.device, run_spec.trust_remote_code, run_spec.revision
        )
    elif lm is None:
        lm = load(
            run_spec.model,
            dtype=run_spec.model_dtype,
            device=run_spec.device,
            trust_remote_code=run_spec.trust_remote_code,
            revision=run_spec.revision,
        )
    run = executor.run if executor is not None else execute
    resolved = resolve_method(lm, spec.method, spec.options, run_spec.dataset, run_spec.split)
    for warning in resolved.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    for note in resolved.notes if not quiet else []:
        console.print(note, highlight=False, markup=False)
    if resolved.token_ids and not quiet:
        console.print(
            f"{info.token_action} {len(resolved.token_ids)} token ids: {format_token_ids(resolved.token_ids)}",
            highlight=False,
            markup=False,
        )
    base = replace(
        run_spec,
        command="eval",
        method=resolved.identity,
        extra_manifest={**run_spec.extra_manifest, **resolved.provenance},
        label=progress_name(info, resolved.identity),
    )
    budgets = spec.options.budgets if (info.budgeted or spec.options.budgets) else None
    if not budgets:
        return run(base, lm=lm, plugins=lambda m: build_plugins(m, resolved.identity), quiet=quiet)
    return _evaluate_budgets(base, resolved, budgets, lm, quiet, run)


def _evaluate_budgets(
    base, resolved: ResolvedMethod, budgets: list[int], lm, quiet: bool, execute=None
) -> dict[str, Any]:
    import reasonlens
    from reasonlens.data import load_problems
    from reasonlens.runs import RunDir
    from reasonlens.runs import execute as execute_here
    from reasonlens.runs.provenance import run_provenance
    from reasonlens.runs.rundir import budget_run_name

    execute = execute or execute_here
    # The sub-runs check their settings and load the problems only after the top-level manifest is written.
    base.validate()
    problems = load_problems(base.dataset, split=base.split, n=base.n, offset=base.offset)
    top = RunDir(base.out)
    top.start(
        {
            "command": "eval",
            "model": base.model,
            "dataset": base.dataset,
            "split": base.split,
            "offset": base.offset,
            "n": base.n,
            "template": base.template,
            "system": base.system,
            "decode": base.decode.to_dict(),
            "layers": None,
            "dtype": None,
            "model_dtype": base.model_dtype,
            "method": {**resolved.identity, "budgets": budgets},
            "budgets": budgets,
            "runs": {str(b): budget_run_name(b) for b in budgets},
            "reasonlens_version": reasonlens.__version__,
            "model_revision": base.revision,
            "provenance": run_provenance(lm),
            **resolved.provenance,
        }
    )
    per_budget: dict[str, dict[str, Any]] = {}
    for budget in budgets:
        spec = replace(
            base,
            out=top.budget_run(budget).path,
            decode=replace(base.decode, max_new_tokens=budget),
            method={**resolved.identity, "budget": budget},
        )
        summary = execute(
            spec,
            lm=lm,
            plugins=lambda m, b=budget: build_plugins(m, resolved.identity, b),
            problems=problems,
            quiet=quiet,
        )
        per_budget[str(budget)] = summary
    summary = {
        "command": "eval",
        "model": base.model,
        "dataset": base.dataset,
        "method": resolved.identity,
        "budgets": budgets,
        "n": min(s["n"] for s in per_budget.values()),
        "accuracy_by_budget": {b: s["accuracy"] for b, s in per_budget.items()},
        "accuracy_ci95_by_budget": {b: s["accuracy_ci95"] for b, s in per_budget.items()},
        "mean_tokens_by_budget": {b: s["mean_tokens"] for b, s in per_budget.items()},
        "runs": {b: budget_run_name(b) for b in per_budget},
    }
    top.write_summary(summary)
    return summary


# -- comparison ------------------------------------------------------------------------------------------------


@dataclass
class EvalRun:
    """A finished evaluation: one result list per budget (key None for a plain run)."""

    path: Path
    manifest: dict[str, Any]
    results: dict[int | None, list[dict[str, Any]]]

    @property
    def label(self) -> str:
        method = self.manifest.get("method") or {}
        return f"{self.path.name} ({method.get('name', self.manifest.get('command', '?'))})"


def load_eval_run(path: str | Path) -> EvalRun:
    from reasonlens.runs import RunDir

    run = RunDir(path)
    manifest = run.open_run()
    budgets = manifest.get("budgets")
    if budgets:
        results = {}
        for budget in budgets:
            sub = run.budget_run(budget)
            if sub.exists():
                results[int(budget)] = sub.results()
        if not results:
            raise UserError(f"{path}: budget run has no finished budget sub-runs")
        return EvalRun(Path(path), manifest, results)
    return EvalRun(Path(path), manifest, {None: run.results()})


@dataclass
class Paired:
    """Correctness (1/0) and completion length (tokens) of two runs on the problems both graded."""

    reference_correct: list[float] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)
    reference_tokens: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)


def _paired(a: list[dict], b: list[dict], where: str) -> Paired:
    by_index = {r["index"]: r for r in b}
    paired = Paired()
    for record in a:
        other = by_index.get(record["index"])
        if other is None or record.get("status") != "ok" or other.get("status") != "ok":
            continue
        if record.get("id") != other.get("id"):
            raise UserError(
                f"{where}: problem {record['index']} has id {record.get('id')!r} in one run and "
                f"{other.get('id')!r} in the other (runs are not on the same problems)"
            )
        paired.reference_correct.append(1.0 if record.get("correct") else 0.0)
        paired.correct.append(1.0 if other.get("correct") else 0.0)
        paired.reference_tokens.append(float(record.get("n_tokens", 0)))
        paired.tokens.append(float(other.get("n_tokens", 0)))
    return paired


def _budget_pairs(reference: EvalRun, run: EvalRun) -> list[tuple[int | None, int | None]]:
    """Which result lists to pair: shared budgets when both runs have budgets, else every budget of one run
    against the plain other."""
    if None in reference.results:
        return [(None, budget) for budget in run.results]
    if None in run.results:
        return [(budget, None) for budget in reference.results]
    return [(budget, budget) for budget in reference.results if budget in run.results]


def compare_runs(paths: Sequence[str | Path], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Accuracy and mean completion length of every run (per budget for budget runs) and, for each run after
    the first, paired bootstrap 95% CIs of its accuracy minus the first run's and of the tokens it saves per
    problem (first run's length minus its own) on the problems both graded."""
    from reasonlens.eval import paired_bootstrap_diff, proportion_ci

    if len(paths) < 2:
        raise UserError("compare-eval needs at least two run directories")
    runs = [load_eval_run(p) for p in paths]
    reference = runs[0]
    for run in runs[1:]:
        for key in ("dataset", "split"):
            if run.manifest.get(key) != reference.manifest.get(key):
                raise UserError(
                    f"{run.path}: {key} {run.manifest.get(key)!r} differs from {reference.path}'s "
                    f"{reference.manifest.get(key)!r}; compare runs on the same problems"
                )
    rows = []
    for run in runs:
        for budget, results in run.results.items():
            graded = [1.0 if r.get("correct") else 0.0 for r in results if r.get("status") == "ok"]
            acc = proportion_ci(graded) if graded else None  # Wilson: a proportion's bootstrap collapses at 0 and 1
            tokens = [float(r.get("n_tokens", 0)) for r in results]
            rows.append(
                {
                    "run": str(run.path),
                    "method": run.manifest.get("method"),
                    "budget": budget,
                    "n": len(results),
                    "n_graded": len(graded),
                    "accuracy": acc.estimate if acc else None,
                    "ci95": [acc.lo, acc.hi] if acc else None,
                    "mean_tokens": sum(tokens) / len(tokens) if tokens else None,
                }
            )
    comparisons = []
    for run in runs[1:]:
        for ref_budget, budget in _budget_pairs(reference, run):
            pairs = _paired(reference.results[ref_budget], run.results[budget], str(run.path))
            xs, ys = pairs.reference_correct, pairs.correct
            if not xs:
                continue
            diff = paired_bootstrap_diff(ys, xs, n_boot=n_boot, seed=seed)
            # NoWait's metric (SPEC A10): tokens the run saves per problem, reference - run, paired by problem.
            saved = paired_bootstrap_diff(pairs.reference_tokens, pairs.tokens, n_boot=n_boot, seed=seed)
            comparisons.append(
                {
                    "reference": str(reference.path),
                    "reference_budget": ref_budget,
                    "run": str(run.path),
                    "budget": budget,
                    "n_paired": len(xs),
                    "reference_accuracy": sum(xs) / len(xs),
                    "accuracy": sum(ys) / len(ys),
                    "difference": diff.estimate,
                    "difference_ci95": [diff.lo, diff.hi],
                    "significant": not (diff.lo <= 0.0 <= diff.hi),
                    "reference_mean_tokens": sum(pairs.reference_tokens) / len(xs),
                    "mean_tokens": sum(pairs.tokens) / len(xs),
                    "tokens_saved": saved.estimate,
                    "tokens_saved_ci95": [saved.lo, saved.hi],
                }
            )
    return {"runs": rows, "comparisons": comparisons, "n_boot": n_boot, "seed": seed}


def print_comparison(report: dict[str, Any], out: Console | None = None) -> None:
    from rich.table import Table

    from reasonlens.runs.progress import table_console

    out = out or table_console()
    table = Table(title="accuracy (95% Wilson CI) and mean completion length")
    for column in ("run", "method", "budget", "n graded", "accuracy", "95% CI", "mean tokens"):
        table.add_column(column)
    for row in report["runs"]:
        method = row["method"] or {}
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        ci = "-" if row["ci95"] is None else f"[{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]"
        tokens = "-" if row.get("mean_tokens") is None else f"{row['mean_tokens']:.1f}"
        table.add_row(
            row["run"], str(method.get("name", "?")), str(row["budget"] or "-"), str(row["n_graded"]), acc, ci, tokens
        )
    out.print(table)
    table = Table(title="paired difference vs the first run (run - reference)")
    for column in (
        "run",
        "budget",
        "vs budget",
        "n paired",
        "difference",
        "95% CI",
        "significant",
        "tokens saved",
        "95% CI (tokens)",
    ):
        table.add_column(column)
    for c in report["comparisons"]:
        table.add_row(
            c["run"],
            str(c["budget"] or "-"),
            str(c["reference_budget"] or "-"),
            str(c["n_paired"]),
            f"{c['difference']:+.3f}",
            f"[{c['difference_ci95'][0]:+.3f}, {c['difference_ci95'][1]:+.3f}]",
            "yes" if c["significant"] else "no",
            f"{c['tokens_saved']:+.1f}",
            f"[{c['tokens_saved_ci95'][0]:+.1f}, {c['tokens_saved_ci95'][1]:+.1f}]",
        )
    out.print(table)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    from reasonlens.runs.io import atomic_write_json

    atomic_write_json(Path(path), json.loads(json.dumps(data)))


# -- sweeps ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One point of a sweep: a sub-directory name, a method and the options that differ from the base."""

    name: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


def suppression_variants(ks: Sequence[int], seeds: Sequence[int]) -> list[Variant]:
    """Thinking-word suppression at each k and the random control at each (k, seed); k = 0 is the baseline."""
    variants = [Variant("baseline", "baseline")] if 0 in ks else []
    for k in ks:
        if k == 0:
            continue
        variants.append(Variant(f"thinking-k{k}", "suppress", {"k": k, "control": "thinking"}))
        variants += [Variant(f"random-k{k}-s{s}", "suppress", {"k": k, "control": "random", "seed": s}) for s in seeds]
    return variants


def rr_layer_variants(layers: Sequence[int]) -> list[Variant]:
    return [Variant(f"rr-layer{layer}", "rr", {"layer": layer}) for layer in layers]


def run_sweep(base: EvalSpec, variants: Sequence[Variant], lm=None) -> list[dict[str, Any]]:
    """Evaluate every variant into `base.out/<variant.name>` (each resumable) and write `base.out/sweep.parquet`
    (one row per variant: name, method, accuracy with its 95% CI, n)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reasonlens.models import load

    run = base.run
    if lm is None:
        lm = load(run.model, dtype=run.model_dtype, device=run.device, trust_remote_code=run.trust_remote_code)
    rows = []
    for variant in variants:
        spec = replace(
            base,
            run=replace(run, out=Path(run.out) / variant.name),
            method=variant.method,
            options=replace(base.options, **variant.options),
        )
        summary = evaluate(spec, lm=lm)
        rows.append(
            {
                "name": variant.name,
                "method": variant.method,
                "options": json.dumps(variant.options),
                "accuracy": summary.get("accuracy"),
                "ci_lo": (summary.get("accuracy_ci95") or [None])[0],
                "ci_hi": (summary.get("accuracy_ci95") or [None, None])[1],
                "n": summary.get("n"),
            }
        )
    Path(run.out).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), Path(run.out) / "sweep.parquet")
    return rows
