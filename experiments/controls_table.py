"""Print the prediction table of docs/results.md ("Controls of the instrument") from the outputs of
experiments/controls.sh: every figure is read from the run directories, none is typed in.

Usage: python experiments/controls_table.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def ci(low: float, high: float, digits: int = 2) -> str:
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def verdict(low: float, high: float, expect: str) -> str:
    """expect: '>0', '<0', '=0' (a null: the CI should include 0) or '>1' for ratios."""
    if expect == ">0":
        return "holds" if low > 0 else ("fails (opposite)" if high < 0 else "fails (CI includes 0)")
    if expect == "<0":
        return "holds" if high < 0 else ("fails (opposite)" if low > 0 else "fails (CI includes 0)")
    if expect == "<=0":  # "no gain": anything but a significant improvement
        return "holds" if not low > 0 else "fails (a gain)"
    if expect == ">1":
        return "holds" if low > 1 else "fails (CI includes 1)"
    return "holds (CI includes 0)" if low <= 0 <= high else "fails (an effect)"


def comparison(path: Path, run: str | None = None, budget: int | None = None) -> dict:
    for row in load(path)["comparisons"]:
        if (run is None or row["run"].endswith(run)) and (budget is None or row["budget"] == budget):
            return row
    raise KeyError(f"{path}: no comparison for {run} budget {budget}")


def correct_by_index(run: Path) -> dict[int, bool]:
    from reasonlens.interventions.evaluate import load_eval_run

    return {r["index"]: bool(r.get("correct")) for r in load_eval_run(run).results[None] if r.get("status") == "ok"}


def pooled_gap(thinking: Path, randoms: list[Path]) -> tuple[float, float, float, int]:
    """Thinking minus the mean of the random seeds, per problem; bootstrap CI over problems (2000, seed 0)."""
    import numpy as np

    from reasonlens.eval import bootstrap_ci

    first = correct_by_index(thinking)
    seeds = [correct_by_index(run) for run in randoms]
    shared = sorted(set(first).intersection(*seeds))
    diffs = np.array([first[i] - np.mean([seed[i] for seed in seeds]) for i in shared], dtype=float)
    interval = bootstrap_ci(diffs, n_boot=2000, seed=0)
    return interval.estimate, interval.lo, interval.hi, len(shared)


def suppression_rows(out: Path, prefix: str, label: str, k: int) -> list[tuple[str, str, str, str]]:
    """(b): the learnt top-k words vs baseline, then thinking minus each random seed and minus their mean."""
    thinking = comparison(out / f"cmp_{prefix}sup{k}.json", f"sup{k}")
    manifest = load(out / f"{prefix}sup{k}" / "manifest.json")
    words = manifest["method"]["words"]
    rows = [
        (
            f"(b) {label}: suppressing the top-{k} learnt words ({', '.join(words)}) hurts "
            f"(vs baseline {thinking['reference_accuracy']:.3f})",
            f"{thinking['difference']:+.3f}",
            ci(*thinking["difference_ci95"], 3),
            verdict(*thinking["difference_ci95"], "<0"),
        )
    ]
    for seed in (0, 1, 2):
        gap = comparison(out / f"cmp_{prefix}thinking_minus_rand{k}_{seed}.json")
        control = load(out / f"{prefix}rand{k}_{seed}" / "manifest.json")["method"]["words"]
        rows.append(
            (
                f"(b) {label}, k={k}, seed {seed}: thinking minus frequency-matched random ({', '.join(control)}) < 0",
                f"{gap['difference']:+.3f} (thinking {gap['accuracy']:.3f} vs random {gap['reference_accuracy']:.3f})",
                ci(*gap["difference_ci95"], 3),
                verdict(*gap["difference_ci95"], "<0"),
            )
        )
    estimate, low, high, n = pooled_gap(
        out / f"{prefix}sup{k}", [out / f"{prefix}rand{k}_{seed}" for seed in (0, 1, 2)]
    )
    rows.append(
        (
            f"(b) {label}, k={k}: thinking minus the mean of the 3 random seeds < 0 ({n} problems)",
            f"{estimate:+.3f}",
            ci(low, high, 3),
            verdict(low, high, "<0"),
        )
    )
    return rows


def main(out: Path) -> None:
    rows: list[tuple[str, str, str, str]] = []
    for run, label in (("r_test", "organism-reasoner"), ("n_test", "organism-reasoner-noreflect")):
        if not (out / run / "mi" / "summary.json").is_file():
            continue  # a section not (yet) run in OUT is left out of the table
        e = load(out / run / "mi" / "summary.json")["thinking_word_enrichment"]
        rows.append(
            (
                f"(a) MI peaks of {label} fall on thinking words more often than those words occur (enrichment > 1)",
                f"x{e['ratio']:.2f} (peak share {e['peak_share']:.3f} vs base rate "
                f"{e['base_rate']:.3f}, {e['n_traces']} held-out traces)",
                f"[{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]",
                verdict(e["ci95"][0], e["ci95"][1], ">1"),
            )
        )
    compare_path = out / "r_test" / "compare" / "d_test" / "summary.json"
    compare = load(compare_path) if compare_path.is_file() else {}
    for row in compare["table"] if "table" in compare else compare.get("rows", []):
        if row["metric"] in ("mean", "aom"):
            d = row.get("paired_diff") or {}
            if d.get("mean") is None:
                continue
            rows.append(
                (
                    f"(a) {row['metric']} MI: reasoner > direct twin (paired, reasoner - direct)",
                    f"{d['mean']:+.4g} ({row['a']['mean']:.4g} vs {row['b']['mean']:.4g})",
                    f"[{d['ci95'][0]:+.4g}, {d['ci95'][1]:+.4g}]",
                    verdict(d["ci95"][0], d["ci95"][1], ">0"),
                )
            )
    for prefix, label in (("", "reasoner"), ("n_", "no-reflection twin")):
        if not (out / f"cmp_{prefix}sup5.json").is_file():
            continue
        for k in (5, 10, 20):
            if not (out / f"cmp_{prefix}thinking_minus_rand{k}_2.json").is_file():
                learnt = len((out / f"{prefix[:1] or 'r'}_tokens.jsonl").read_text().splitlines())
                rows.append((f"(b) {label}, k={k}", f"not run ({learnt} words learnt)", "", "n/a"))
                continue
            rows += suppression_rows(out, prefix, label, k)
    scaling = [
        (f"cmp_{tag}_scaling.json", tag, label, expect)
        for tag, label, expect in (("r", "reasoner", ">0"), ("n", "no-reflection twin", "<=0"))
    ]
    scaling += [
        (f"cmp_{tag}_wait1.json", tag, label, expect)
        for tag, label, expect in (("r", "reasoner", ">0"), ("n", "no-reflection twin", "<=0"))
    ]
    for name, tag, label, expect in scaling:
        if not (out / name).is_file():
            continue
        for row in load(out / name)["comparisons"]:
            method = {
                "ttts": "TTTS",
                "bf": "budget forcing (every stop -> Wait)",
                "wait1": "one forced Wait (budget forcing --max-waits 1, post hoc)",
            }[row["run"].rsplit("_", 1)[1]]
            rows.append(
                (
                    f"(c) {method} at {row['budget']} tokens vs truncated baseline, {label} "
                    f"({'helps' if expect == '>0' else 'no gain'})",
                    f"{row['difference']:+.3f} ({row['reference_accuracy']:.2f} -> {row['accuracy']:.2f})",
                    ci(*row["difference_ci95"], 3),
                    verdict(*row["difference_ci95"], expect),
                )
            )
    for row in load(out / "cmp_twins.json")["comparisons"] if (out / "cmp_twins.json").is_file() else []:
        twin = "no-reflection twin" if row["run"].endswith("n_base") else "direct twin"
        rows.append(
            (
                f"twins: {twin} accuracy minus the reasoner's (greedy, {row['n_paired']} problems)",
                f"{row['difference']:+.3f} ({row['reference_accuracy']:.2f} -> {row['accuracy']:.2f})",
                ci(*row["difference_ci95"], 3),
                "reported",
            )
        )
    for row in load(out / "cmp_rr.json")["comparisons"] if (out / "cmp_rr.json").is_file() else []:
        rows.append(
            (
                f"(d) RR at layer {row['run'][-1]} (no prediction of direction: reported)",
                f"{row['difference']:+.3f}",
                ci(*row["difference_ci95"], 3),
                verdict(*row["difference_ci95"], "=0").replace("holds", "null").replace("fails", "effect"),
            )
        )
    excluded = load(out / "sup5" / "manifest.json")["method"].get("excluded_answer_format")
    print(f"answer-format words excluded from thinking and random words: {', '.join(excluded or ['none'])}")
    print("| prediction | measured | 95% CI | verdict |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/controls"))
