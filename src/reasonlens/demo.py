"""``reasonlens demo``: the main job end to end, ending with ``report.html``.

The plan (model, dataset, sizes, budgets, controls; and the smaller ``--quick`` one) is data: the shipped recipe
``reasonlens/recipes/demo.json``, or the user's own with ``--recipe FILE.json``.

Stages (each through the other modules' Python APIs; every run directory resumes, so re-running continues):

1. traces    SmolLM2-135M-Instruct on the *train* split of ``word-arith:1,2`` (one-step addition/subtraction
             word problems, a few-shot chat prompt: the set on which it scores between 20% and 80%, so an
             intervention has accuracy to lose; docs/results.md) with hidden-state capture, plus the model
             organisms (organism-cot, organism-direct) on their own test sets when they are shipped;
2. mi        MI trajectories, peaks, statistics and the thinking-token set of every trace run;
3. suppress  SmolLM2 on the held-out *test* split: baseline vs suppression of the thinking words learnt on
             train vs frequency-matched random words (drawn from the train traces), paired CIs;
4. rr        Representation Recycling triggered by the thinking tokens;
5. ttts      thinking-token test-time scaling vs the plain model at several token budgets;
6. controls  the reasoner organisms, controls of the instrument by construction (docs/organisms.md): thinking
             words learnt on their *train* split, suppression of the learnt words vs frequency-matched random
             words, "Wait" forcing on the reasoner vs its no-reflection twin, peak enrichment on thinking words;
7. depth     organism-recurrent: accuracy vs core iterations r, adaptive exit, latent trajectories;
8. report    one self-contained HTML report of everything above, findings first; its path is printed last.

Every stage with an effect to show states one *finding* with its paired bootstrap 95% CI; the findings table
is printed at the end and is the report's first section.

A stage whose module (or organism) is not available is skipped with a visible notice and listed in the final
summary; a stage that fails is reported with its error and the demo continues, so the report always exists.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, get_type_hints

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reasonlens.errors import UserError, did_you_mean
from reasonlens.runs import RunDir
from reasonlens.runs.io import check_fields, field_error, read_json_object

console = Console(stderr=True)


DEMO_RECIPE = "demo"  # the shipped plan: reasonlens/recipes/demo.json
DEMO_KIND = "demo"  # the recipe kind of a demo plan


@dataclass(frozen=True)
class DemoConfig:
    """The demo's plan. Its values live in one place, the recipe (``recipes/demo.json`` or the user's file),
    read by ``DemoConfig.preset``; the recipe's comments say why each value was chosen."""

    out: Path
    quick: bool  # the recipe's ``quick`` overrides were applied
    model: str
    dataset: str
    template: str
    layers: str  # captured for MI
    token_layer: str | None  # the layer whose MI peaks give SmolLM2's thinking words
    n_traces: int  # train-split problems whose traces give the thinking tokens and the random control's words
    n_eval: int  # held-out test-split problems the interventions are evaluated on
    n_side_eval: int  # test problems of the TTTS curves
    max_new_tokens: int
    batch_size: int  # organism traces and depth
    smollm2_batch_size: int
    suppress_k: int
    budgets: tuple[int, ...]
    n_organism: int
    organism_tokens: int
    depth_steps: tuple[int, ...]
    n_depth: int
    depth_tokens: int
    n_latent: int
    n_boot: int
    n_permutations: int
    reasoner: str
    reasoner_twin: str  # the negative control of "Wait" forcing
    n_control_train: int  # train-split problems the reasoner's thinking words are learnt from
    n_control_eval: int  # held-out test problems every control intervention is scored on
    control_k: int
    control_seeds: tuple[int, ...]
    control_tokens: int
    control_budget: int  # budget of the one forced " Wait" (s1 budget forcing with --max-waits 1)
    control_batch_size: int

    @classmethod
    def preset(cls, quick: bool, out: Path | None = None, recipe: Path | None = None) -> "DemoConfig":
        """The plan of the shipped recipe (or of the ``recipe`` file), with its ``quick`` overrides when ``quick``;
        ``out`` replaces the recipe's output directory. A bad recipe is a UserError naming the file and key."""
        from reasonlens.train.recipes import load_recipe, read_recipe

        loaded = load_recipe(DEMO_RECIPE) if recipe is None else read_recipe(recipe)
        if loaded.kind != DEMO_KIND:
            raise UserError(f"{loaded.path}: 'kind' must be {DEMO_KIND!r} in a demo recipe, got {loaded.kind!r}")
        where = str(loaded.path)
        plan = _plan_fields({k: v for k, v in loaded.fields.items() if k != "quick"}, where)
        if quick:
            if "quick" not in loaded.fields:
                raise UserError(f"{where}: no 'quick' section of overrides, which --quick needs")
            overrides = {k: v for k, v in loaded.section("quick").items() if not k.startswith("_")}
            plan.update(_plan_fields(overrides, f"{where}: quick", partial=True))
        plan["quick"] = quick
        if out is not None:
            plan["out"] = out
        return cls(**plan)


_VALUE_KINDS: dict[Any, str] = {str: "str", Path: "str", str | None: "str?", int: "int", tuple[int, ...]: "ints"}


def _plan_kinds() -> dict[str, str]:
    """Each recipe key (every DemoConfig field but ``quick``) and the check_fields kind of its value."""
    hints = get_type_hints(DemoConfig)
    return {f.name: _VALUE_KINDS[hints[f.name]] for f in fields(DemoConfig) if f.name != "quick"}


def _plan_fields(values: dict[str, Any], where: str, partial: bool = False) -> dict[str, Any]:
    """The typed plan fields of one recipe section; UserError on an unknown, missing (unless ``partial``) or
    ill-typed field."""
    kinds = _plan_kinds()
    for key in values:
        if key not in kinds:
            raise UserError(f"{where}: unknown field '{key}'{did_you_mean(key, list(kinds))}")
    missing = [key for key in kinds if key not in values]
    if missing and not partial:
        raise UserError(f"{where}: missing field(s) {', '.join(repr(key) for key in missing)}")
    return {name: _plan_value(values, name, kinds[name], where) for name in values}


def _plan_value(values: dict[str, Any], name: str, kind: str, where: str) -> Any:
    """The typed value of one plan field: a Path for ``out``, a tuple for a list of integers."""
    value = values.get(name)
    if value is None and not kind.endswith("?"):  # check_fields would call it missing
        raise UserError(f"{where}: field '{name}' must not be null")
    if kind == "ints":
        check_fields(values, where, {name: "list"})
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise field_error(where, name, "a non-empty list of integers >= 0", value)
        return tuple(value)
    check_fields(values, where, {(f"{name}?" if kind.endswith("?") else name): kind.rstrip("?")})
    return Path(value) if name == "out" else value


class StageSkipped(Exception):
    """A stage cannot run here (module or organism missing); the message says why."""


@dataclass
class StageResult:
    name: str
    status: str  # done | skipped | failed
    seconds: float  # wall time
    note: str = ""
    cpu_seconds: float = 0.0  # CPU time of this process (all threads): comparable across loaded machines
    runs: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # one line per effect, each with its paired 95% CI


@dataclass
class DemoState:
    """What the stages produced so far (later stages read earlier ones' outputs)."""

    config: DemoConfig
    trace_runs: list[Path] = field(default_factory=list)
    smollm2_run: Path | None = None
    token_set: Path | None = None
    report_inputs: list[Path] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # parts of stages that were skipped, with the reason
    lm_cache: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # the running stage's findings (moved into its result)
    all_findings: list[tuple[str, list[str]]] = field(default_factory=list)  # (stage, findings) of finished stages

    def lm(self, spec: str):
        if spec not in self.lm_cache:
            from reasonlens.models import load

            self.lm_cache[spec] = load(spec)
        return self.lm_cache[spec]

    def add(self, path: Path) -> Path:
        if path not in self.report_inputs:
            self.report_inputs.append(path)
        return path


def organism_available(name: str) -> bool:
    from reasonlens.organisms import organism_dir

    return (organism_dir(name) / "config.json").is_file()


def _decode(config: DemoConfig, max_new_tokens: int, batch_size: int | None = None):
    from reasonlens.data import adds_special_tokens
    from reasonlens.decode import DecodeConfig

    return DecodeConfig(
        max_new_tokens=max_new_tokens,
        batch_size=batch_size or config.batch_size,
        add_special_tokens=adds_special_tokens(config.template),
    )


def signed(value: float) -> str:
    return f"{value:+.2f}"


def diff_text(comparison: dict[str, Any]) -> str:
    """``+0.12 [+0.05,+0.20]``: a paired difference and its 95% CI."""
    low, high = comparison["difference_ci95"]
    return f"{signed(comparison['difference'])} [{signed(low)},{signed(high)}]"


def paired_diffs(reference: Path, *runs: Path, n_boot: int = 1000) -> list[dict[str, Any]]:
    """Paired bootstrap differences of each run's accuracy minus the reference's (same problems, same budgets)."""
    from reasonlens.interventions.evaluate import compare_runs

    return compare_runs([reference, *runs], n_boot=n_boot)["comparisons"]


# -- stages --------------------------------------------------------------------------------------------------------


def stage_traces(state: DemoState) -> str:
    from reasonlens.runs import RunSpec, execute

    c = state.config
    out = c.out / "traces-smollm2"
    summary = execute(
        RunSpec(
            out=out,
            model=c.model,
            dataset=c.dataset,
            split="train",
            n=c.n_traces,
            template=c.template,
            decode=_decode(c, c.max_new_tokens, c.smollm2_batch_size),
            layers=c.layers,
        ),
        lm=state.lm(c.model),
    )
    state.smollm2_run = out
    state.trace_runs.append(state.add(out))
    notes = [f"SmolLM2 accuracy {summary['accuracy']:.2f} on {summary['n']} {c.dataset} train problems"]
    missing = []
    for name in ("organism-cot", "organism-direct"):
        if not organism_available(name):
            missing.append(name)
            continue
        from reasonlens.organisms import organism_dataset

        dataset = organism_dataset(name) or "synthetic-arith"
        run = c.out / f"traces-{name}"
        s = execute(
            RunSpec(
                out=run, model=name, dataset=dataset, n=c.n_organism, layers="-1", decode=_decode(c, c.organism_tokens)
            ),
            lm=state.lm(name),
        )
        state.trace_runs.append(state.add(run))
        notes.append(f"{name} accuracy {s['accuracy']:.2f}")
    if missing:
        warn(
            f"organisms not shipped in this installation, their traces are skipped: {', '.join(missing)} "
            "(train them with `reasonlens organisms train NAME`)"
        )
        notes.append(f"not shipped: {', '.join(missing)}")
    return "; ".join(notes)


def _mi_config(c: DemoConfig) -> Any:
    """The MI settings of every demo analysis (5 position bins: the demo's traces are short)."""
    from reasonlens.analysis.pipeline import MIConfig, OutputConfig
    from reasonlens.analysis.stages import PopulationConfig

    return MIConfig(
        n_boot=c.n_boot,
        population=PopulationConfig(n_permutations=c.n_permutations, n_bins=5),
        output=OutputConfig(plot_traces=6),
    )


def stage_mi(state: DemoState) -> str:
    if not state.trace_runs:
        raise StageSkipped("no trace runs (the traces stage did not produce any)")
    from reasonlens.analysis.pipeline import ensure_analysis
    from reasonlens.runs.tables import read_mi_summary

    c = state.config
    config = _mi_config(c)
    notes = []
    for run in state.trace_runs:
        smollm2 = run == state.smollm2_run
        ensure_analysis(run, replace(config, token_layer=c.token_layer) if smollm2 else config)
        summary = read_mi_summary(RunDir(run).mi_summary_path)
        words = [w["word"] for w in summary.get("thinking_tokens") or []]
        notes.append(f"{run.name}: {', '.join(words[:6]) or 'no alphabetic peak tokens'}")
    if state.smollm2_run is not None:
        tokens = RunDir(state.smollm2_run).token_set_path
        if tokens.is_file() and tokens.read_text().strip():
            state.token_set = tokens
        else:
            warn("the SmolLM2 traces gave no alphabetic thinking tokens; interventions use the paper's list")
    return "; ".join(notes)


def _eval(state: DemoState, name: str, method: str, n: int | None = None, **options: Any) -> dict[str, Any]:
    """SmolLM2 under ``method`` on the first ``n`` (default ``n_eval``) problems of the test split."""
    from reasonlens.interventions import EvalSpec, MethodOptions, evaluate
    from reasonlens.runs import RunSpec

    c = state.config
    if state.token_set is not None and method in ("suppress", "rr"):
        options.setdefault("token_set", state.token_set)
        options.setdefault("token_set_dataset", c.dataset)
        options.setdefault("token_set_split", "train")  # the traces stage ran on train; evaluation is on test
        learnt = sum(1 for line in state.token_set.read_text().splitlines() if line.strip())
        if options.get("k") and options["k"] > learnt:
            if name == "suppress-thinking":  # once per demo, not once per method
                warn(f"the SmolLM2 train traces gave {learnt} thinking word(s), fewer than k = {options['k']}")
            options["k"] = learnt
    out = c.out / "eval" / name
    max_tokens = max(options.get("budgets") or [c.max_new_tokens])
    summary = evaluate(
        EvalSpec(
            RunSpec(
                out=out,
                model=c.model,
                dataset=c.dataset,
                split="test",
                n=n or c.n_eval,
                template=c.template,
                decode=_decode(c, max_tokens, c.smollm2_batch_size),
            ),
            method=method,
            options=MethodOptions(**options),
        ),
        lm=state.lm(c.model),
    )
    state.add(out)
    return summary


def stage_suppress(state: DemoState) -> str:
    c = state.config
    base = _eval(state, "baseline", "baseline")
    thinking = _eval(state, "suppress-thinking", "suppress", k=c.suppress_k, control="thinking")
    notes = [f"baseline {base['accuracy']:.2f}", f"thinking suppressed {thinking['accuracy']:.2f}"]
    if not 0.2 <= base["accuracy"] <= 0.8:
        warn(
            f"SmolLM2's baseline accuracy {base['accuracy']:.2f} is outside 20-80% on these {base['n']} problems: "
            "suppression has little to lose (or gain) here"
        )
    reason = None
    if state.smollm2_run is None:
        reason = "no SmolLM2 trace run for word frequencies"
    else:
        try:
            random = _eval(
                state, "suppress-random", "suppress", k=c.suppress_k, control="random", control_run=state.smollm2_run
            )
            notes.append(f"random control {random['accuracy']:.2f}")
            eval_dir = c.out / "eval"
            thinking_diff, random_diff = paired_diffs(
                eval_dir / "baseline", eval_dir / "suppress-thinking", eval_dir / "suppress-random", n_boot=c.n_boot
            )
            words = (thinking.get("method") or {}).get("words") or []
            state.findings.append(
                f"{c.model} on {c.dataset}: thinking suppression {diff_text(thinking_diff)} vs random "
                f"{diff_text(random_diff)} (top-{len(words)} words learnt on train: {'/'.join(words)}; "
                f"test baseline {base['accuracy']:.2f}, n={thinking_diff['n_paired']})"
            )
        except UserError as exc:  # too few distinct words in the traces to match frequencies
            reason = str(exc)
    if reason is not None:
        warn(f"the random-suppression control is skipped: {reason}")
        state.partial.append(f"suppress-random ({reason})")
        notes.append("random control skipped")
    return ", ".join(notes)


def stage_rr(state: DemoState) -> str:
    c = state.config
    summary = _eval(state, "rr", "rr", k=c.suppress_k)
    base = c.out / "eval" / "baseline"
    if not RunDir(base).summary_path.is_file():
        return f"RR accuracy {summary['accuracy']:.2f}"
    (diff,) = paired_diffs(base, c.out / "eval" / "rr", n_boot=c.n_boot)
    return f"RR accuracy {summary['accuracy']:.2f}, vs baseline {diff_text(diff)}"


def stage_ttts(state: DemoState) -> str:
    budgets = list(state.config.budgets)
    n = state.config.n_side_eval
    plain = _eval(state, "budget-baseline", "baseline", n=n, budgets=budgets)
    ttts = _eval(state, "ttts", "ttts", n=n, budgets=budgets)

    def curve(summary: dict[str, Any]) -> str:
        return " ".join(f"{b}:{a:.2f}" for b, a in summary["accuracy_by_budget"].items())

    return f"plain {curve(plain)} | TTTS {curve(ttts)}"


def _control_eval(state: DemoState, model: str, name: str, method: str, **options: Any) -> Path:
    from reasonlens.decode import DecodeConfig
    from reasonlens.interventions import EvalSpec, MethodOptions, evaluate
    from reasonlens.organisms import organism_dataset
    from reasonlens.runs import RunSpec

    c = state.config
    out = c.out / "controls" / name
    max_tokens = max(options.get("budgets") or [c.control_tokens])
    evaluate(
        EvalSpec(
            RunSpec(
                out=out,
                model=model,
                dataset=organism_dataset(model) or "synthetic-reasoner:1-6",
                n=c.n_control_eval,
                decode=DecodeConfig(max_new_tokens=max_tokens, batch_size=c.control_batch_size),
            ),
            method=method,
            options=MethodOptions(**options),
        ),
        lm=state.lm(model),
    )
    return state.add(out)


def stage_controls(state: DemoState) -> str:
    """The reasoner organisms: does the instrument find the effects built into them, and only those?"""
    c = state.config
    missing = [m for m in (c.reasoner, c.reasoner_twin) if not organism_available(m)]
    if missing:
        raise StageSkipped(
            f"{', '.join(missing)} not shipped in this installation (train with `reasonlens organisms train NAME`)"
        )
    from reasonlens.analysis.pipeline import ensure_analysis
    from reasonlens.decode import DecodeConfig
    from reasonlens.organisms import organism_dataset
    from reasonlens.runs import RunSpec, execute

    dataset = organism_dataset(c.reasoner) or "synthetic-reasoner:1-6"
    train_run = c.out / "controls" / "reasoner-train"
    execute(
        RunSpec(
            out=train_run,
            model=c.reasoner,
            dataset=dataset,
            split="train",
            n=c.n_control_train,
            layers="-1",
            decode=DecodeConfig(max_new_tokens=c.control_tokens, batch_size=c.control_batch_size),
        ),
        lm=state.lm(c.reasoner),
    )
    state.add(train_run)
    ensure_analysis(train_run, _mi_config(c))
    summary = read_json_object(RunDir(train_run).mi_summary_path, "MI summary")
    words = [w["word"] for w in summary.get("thinking_tokens") or []]
    if len(words) < c.control_k:
        raise StageSkipped(f"the reasoner's train traces gave {len(words)} peak words, fewer than k = {c.control_k}")
    notes = [f"learnt on train: {', '.join(words[: c.control_k])}"]
    enrichment = summary.get("thinking_word_enrichment") or {}
    if enrichment.get("ratio") is not None and None not in enrichment["ci95"]:
        low, high = enrichment["ci95"]
        state.findings.append(
            f"{c.reasoner}: MI peaks on thinking words {enrichment['peak_share']:.2f} vs base rate "
            f"{enrichment['base_rate']:.2f}: enrichment x{enrichment['ratio']:.2f} "
            f"[{low:.2f},{high:.2f}]"
        )
    token_set = {
        "token_set": RunDir(train_run).token_set_path,
        "token_set_dataset": dataset,
        "token_set_split": "train",
        "k": c.control_k,
    }
    base = _control_eval(state, c.reasoner, "baseline", "baseline")
    thinking = _control_eval(state, c.reasoner, f"suppress-thinking-k{c.control_k}", "suppress", **token_set)
    randoms = [
        _control_eval(
            state,
            c.reasoner,
            f"suppress-random-k{c.control_k}-seed{seed}",
            "suppress",
            control="random",
            control_run=train_run,
            seed=seed,
            **token_set,
        )
        for seed in c.control_seeds
    ]
    thinking_diff, *random_diffs = paired_diffs(base, thinking, *randoms, n_boot=c.n_boot)
    # the random seeds pooled: per problem, the mean over seeds (one paired observation per problem)
    pooled = _pooled_random_diff(base, randoms, c.n_boot)
    gap = _pooled_random_diff(thinking, randoms, c.n_boot)  # random - thinking; printed as thinking - random
    excluded = RunDir(thinking).manifest["method"].get("excluded_answer_format")
    seeds = f"{len(randoms)} seed{'s' if len(randoms) > 1 else ''}"
    state.findings.append(
        f"{c.reasoner}: thinking suppression {diff_text(thinking_diff)} vs random {_interval_text(pooled)} "
        f"({seeds}; top-{c.control_k} learnt words; thinking - random {_interval_text(gap, negate=True)}; "
        f"answer-format words {', '.join(excluded or ['none'])} excluded from both)"
    )
    notes.append(
        f"baseline {thinking_diff['reference_accuracy']:.2f}, thinking suppressed "
        f"{thinking_diff['accuracy']:.2f}, random " + "/".join(f"{d['accuracy']:.2f}" for d in random_diffs)
    )
    forced = {}
    for model, tag in ((c.reasoner, "reasoner"), (c.reasoner_twin, "noreflect")):
        plain = _control_eval(state, model, f"{tag}-budget-baseline", "baseline", budgets=[c.control_budget])
        wait = _control_eval(
            state, model, f"{tag}-one-wait", "budget-force", budgets=[c.control_budget], min_fraction=1.0, max_waits=1
        )
        forced[tag] = paired_diffs(plain, wait, n_boot=c.n_boot)[0]
    state.findings.append(
        f'one forced "Wait" (budget {c.control_budget}): reasoner {diff_text(forced["reasoner"])} '
        f"vs no-reflection twin {diff_text(forced['noreflect'])}"
    )
    return "; ".join(notes)


def _pooled_random_diff(reference: Path, randoms: list[Path], n_boot: int):
    """Per problem, the mean over seeds of the random-control runs' correctness minus `reference`'s; the mean
    with a bootstrap CI over problems (an `Interval`)."""
    import numpy as np

    from reasonlens.eval import bootstrap_ci
    from reasonlens.interventions.evaluate import load_eval_run

    def scored(run: Path) -> dict[int, bool]:
        return {r["index"]: bool(r.get("correct")) for r in load_eval_run(run).results[None] if r.get("status") == "ok"}

    first = scored(reference)
    per_seed = [scored(run) for run in randoms]
    shared = sorted(set(first).intersection(*per_seed))
    diffs = np.array([np.mean([seed[i] for seed in per_seed]) - first[i] for i in shared], dtype=float)
    return bootstrap_ci(diffs, n_boot=n_boot)


def _interval_text(interval, negate: bool = False) -> str:
    estimate, low, high = (-interval.estimate, -interval.hi, -interval.lo) if negate else interval
    return f"{signed(estimate)} [{signed(low)},{signed(high)}]"


def stage_depth(state: DemoState) -> str:
    if not organism_available("organism-recurrent"):
        raise StageSkipped(
            "organism-recurrent is not shipped in this installation "
            "(train it with `reasonlens organisms train organism-recurrent`)"
        )
    from reasonlens.organisms import organism_card, organism_dataset
    from reasonlens.recurrent.depth import DepthSpec, run_depth

    c = state.config
    dataset = organism_dataset("organism-recurrent") or "synthetic-flips:1-8"
    # the exit rule the organism's card was scored with (its own, tuned on its test split), else the paper's
    rule = (organism_card("organism-recurrent") or {}).get("adaptive_exit") or {}
    criterion, threshold = rule.get("criterion", "kl"), rule.get("threshold")
    lm = state.lm("organism-recurrent")
    out = c.out / "depth-organism-recurrent"
    summary = run_depth(
        DepthSpec(
            model="organism-recurrent",
            dataset=dataset,
            out=out,
            steps=c.depth_steps,
            exit_criterion=criterion,
            threshold=threshold,
            n=c.n_depth,
            max_new_tokens=c.depth_tokens,
            batch_size=c.batch_size,
        ),
        lm=lm,
    )
    state.add(out)
    notes = [" ".join(f"r{r}:{e['accuracy']:.2f}" for r, e in summary["steps"].items())]
    low_r, high_r = min(c.depth_steps), max(c.depth_steps)
    depth_diff = paired_diffs(out / f"r{low_r}", out / f"r{high_r}", n_boot=c.n_boot)[0]
    state.findings.append(
        f"organism-recurrent: depth r={low_r} -> r={high_r} {diff_text(depth_diff)} "
        f"(accuracy {depth_diff['reference_accuracy']:.2f} -> {depth_diff['accuracy']:.2f}, "
        f"n={depth_diff['n_paired']})"
    )
    adaptive = summary.get("adaptive") or {}
    if adaptive.get("mean_iterations_per_token") is not None:
        notes.append(f"adaptive {adaptive['accuracy']:.2f} at {adaptive['mean_iterations_per_token']:.1f} it/token")
    latent_dir = c.out / "latent-organism-recurrent"
    if RunDir(latent_dir).summary_path.is_file():
        state.add(latent_dir)
    else:
        from reasonlens.recurrent.latent import LatentConfig, analyze_latents, items_from_source

        _, items = items_from_source("organism-recurrent", dataset=dataset, n=c.n_latent)
        analyze_latents(
            lm,
            items,
            latent_dir,
            LatentConfig(max_steps=16 if c.quick else 32, star_steps=32 if c.quick else 64, max_tokens=32),
        )
        state.add(latent_dir)
    return "; ".join(notes)


def stage_report(state: DemoState) -> str:
    from reasonlens.report import ReportConfig, build_report
    from reasonlens.runs.progress import progress_bar

    if not state.report_inputs:
        raise StageSkipped("no run produced anything to report")
    with progress_bar() as bar:
        task = bar.add_task("report", total=1, info=f"{len(state.report_inputs)} runs")
        findings = tuple((name, line) for name, lines in state.all_findings for line in lines)
        path = build_report(
            state.report_inputs,
            state.config.out / "report.html",
            ReportConfig(title="reasonlens demo", n_boot=state.config.n_boot, findings=findings),
        )
        bar.advance(task)
    return f"{path} ({path.stat().st_size / 1e6:.1f} MB)"


STAGES: tuple[tuple[str, str, Callable[[DemoState], str]], ...] = (
    ("traces", "SmolLM2 and organism traces with hidden states", stage_traces),
    ("mi", "MI peaks and thinking tokens", stage_mi),
    ("suppress", "suppression: thinking tokens vs random control", stage_suppress),
    ("rr", "Representation Recycling", stage_rr),
    ("ttts", "thinking-token test-time scaling vs budget", stage_ttts),
    ("controls", "reasoner organisms: positive and negative controls of the instrument", stage_controls),
    ("depth", "recurrent organism: depth scaling, adaptive exit, latents", stage_depth),
    ("report", "HTML report", stage_report),
)


def warn(message: str) -> None:
    console.print(f"[bold yellow]notice:[/] {escape(message)}", highlight=False)


def run_demo(config: DemoConfig, only: list[str] | None = None) -> list[StageResult]:
    """Run every stage (or the ``only`` ones plus what they need); returns one result per stage."""
    names = [name for name, _, _ in STAGES]
    for name in only or []:
        if name not in names:
            raise UserError(f"--stage {name!r} is unknown (stages: {', '.join(names)})")
    config.out.mkdir(parents=True, exist_ok=True)
    state = DemoState(config)
    if only:
        _discover(state)
    results: list[StageResult] = []
    started = time.perf_counter()
    for number, (name, title, function) in enumerate(STAGES, start=1):
        if only and name not in only and name != "report":
            continue
        console.rule(f"[bold]{number}/{len(STAGES)} {name}[/]: {title}")
        t0, c0 = time.perf_counter(), time.process_time()
        state.findings = []
        try:
            note = function(state)
            results.append(
                StageResult(
                    name,
                    "done",
                    time.perf_counter() - t0,
                    note,
                    time.process_time() - c0,
                    findings=list(state.findings),
                )
            )
            if state.findings:
                state.all_findings.append((name, list(state.findings)))
            console.print(
                f"[green]done[/] {name} in {time.perf_counter() - t0:.1f} s "
                f"(CPU {time.process_time() - c0:.1f} s): {escape(note)}",
                highlight=False,
            )
        except StageSkipped as exc:
            results.append(StageResult(name, "skipped", time.perf_counter() - t0, str(exc), time.process_time() - c0))
            warn(f"stage {name} skipped: {exc}")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken stage must not stop the others or the report
            results.append(
                StageResult(
                    name, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}", time.process_time() - c0
                )
            )
            console.print(
                f"[bold red]stage {name} failed:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False
            )
            if not isinstance(exc, UserError):  # a user error is its one line; anything else shows where it broke
                console.print(traceback.format_exc(limit=4), highlight=False, markup=False)
    total = time.perf_counter() - started
    _write_log(config, results, total, state.partial)
    _print_summary(results, total, state.partial)
    return results


def _discover(state: DemoState) -> None:
    """Outputs of earlier demo runs in the same directory (so ``--stage`` can run one stage on its own)."""
    out = state.config.out
    smollm2 = out / "traces-smollm2"
    if RunDir(smollm2).manifest_path.is_file():
        state.smollm2_run = smollm2
        state.trace_runs.append(state.add(smollm2))
        token_set = RunDir(smollm2).token_set_path
        if token_set.is_file() and token_set.read_text().strip():
            state.token_set = token_set
    for name in ("organism-cot", "organism-direct"):
        if RunDir(out / f"traces-{name}").manifest_path.is_file():
            state.trace_runs.append(state.add(out / f"traces-{name}"))
    for path in sorted((out / "eval").glob("*/manifest.json")) + sorted((out / "controls").glob("*/manifest.json")):
        state.add(path.parent)
    for name in ("depth-organism-recurrent", "latent-organism-recurrent"):
        if RunDir(out / name).summary_path.is_file():
            state.add(out / name)


def _write_log(config: DemoConfig, results: list[StageResult], total: float, partial: list[str]) -> None:
    from reasonlens.runs.io import atomic_write_json

    atomic_write_json(
        config.out / "demo.json",
        {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "stages": [asdict(r) for r in results],
            "skipped_parts": partial,
            "seconds": total,
        },
    )


def _print_summary(results: list[StageResult], total: float, partial: list[str]) -> None:
    table = Table(title=f"demo summary ({total:.0f} s)")
    for column in ("stage", "status", "seconds", "CPU s", "result"):
        table.add_column(column)
    colours = {"done": "green", "skipped": "yellow", "failed": "red"}
    for r in results:
        table.add_row(
            r.name, f"[{colours[r.status]}]{r.status}[/]", f"{r.seconds:.1f}", f"{r.cpu_seconds:.1f}", Text(r.note)
        )
    console.print(table)
    findings = Table(title="findings (paired bootstrap 95% CIs; an effect only where the CI excludes 0)")
    findings.add_column("stage")
    findings.add_column("finding")
    for r in results:
        for line in r.findings:
            findings.add_row(r.name, Text(line))
    if findings.row_count:
        console.print(findings)
    skipped = [r.name for r in results if r.status == "skipped"]
    if skipped:
        warn(f"skipped stages: {', '.join(skipped)}")
    for part in partial:
        warn(f"skipped part: {part}")


def register(app) -> None:
    """Add ``reasonlens demo`` to ``app``."""
    import typer

    @app.command("demo")
    def demo_command(
        quick: bool = typer.Option(
            False, "--quick", help="Smaller everything (about 3 minutes on 2 cores): the recipe's 'quick' overrides."
        ),
        recipe: Path = typer.Option(
            None,
            "--recipe",
            help="The plan as a JSON recipe file: a copy of the shipped reasonlens/recipes/demo.json, edited "
            "(every field given; 'quick' holds the --quick overrides).",
        ),
        out: Path = typer.Option(
            None,
            "--out",
            "-o",
            help="Output directory (default: the recipe's, runs/demo or runs/demo-quick with --quick); "
            "re-running resumes.",
        ),
        stage: list[str] = typer.Option(
            None, "--stage", help="Run only these stages (repeatable); the report is always rebuilt."
        ),
    ) -> None:
        """The main job end to end: traces -> MI peaks and thinking tokens -> suppression -> RR and TTTS ->
        recurrent depth -> report.html (its path is printed last)."""
        config = DemoConfig.preset(quick, out, recipe)
        results = run_demo(config, only=list(stage) if stage else None)
        report = config.out / "report.html"
        failed = [r.name for r in results if r.status == "failed"]
        if report.is_file():
            typer.echo(str(report.resolve()))
        if failed:
            typer.echo(f"failed stages: {', '.join(failed)}", err=True)
            raise typer.Exit(1)
