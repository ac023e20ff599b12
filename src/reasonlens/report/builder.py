"""Build the self-contained HTML report from run directories.

Each section is rendered only when its data exists: run summary (always), per-trace token view (runs with
token ids), thinking tokens and MI statistics/plots (runs with ``RUN/mi/``), interventions and
accuracy-vs-budget curves (``eval`` runs), depth scaling and adaptive exit (``depth`` dirs), latent
trajectories (``latent`` dirs).
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.report.sources import RunSource, collect_sources, finite, method_label, run_summary
from reasonlens.report.svg import Axes, Series, bar_chart, downloadable, line_chart
from reasonlens.report.template import TRACE_VIEW, render_page
from reasonlens.report.traces import TraceOptions, trace_payload
from reasonlens.runs.io import inside
from reasonlens.runs.tables import read_mi_summary

MAX_LATENT_SAMPLES = 3
MAX_TOKEN_ROWS = 30


@dataclass(frozen=True)
class ReportConfig:
    title: str = "reasonlens report"
    max_traces: int = 1000  # traces embedded per run
    n_boot: int = 2000  # paired bootstrap resamples for the intervention comparison
    seed: int = 0
    # (stage, finding) lines shown first (the demo's findings table); empty: no findings section
    findings: tuple[tuple[str, str], ...] = ()

    def validate(self) -> "ReportConfig":
        if self.max_traces < 1:
            raise UserError(f"--max-traces must be >= 1, got {self.max_traces}")
        if self.n_boot < 10:
            raise UserError(f"--n-boot must be >= 10, got {self.n_boot}")
        return self


@dataclass
class Section:
    anchor: str
    label: str
    html: str


# -- formatting --------------------------------------------------------------------------------------------------


def pct(value: Any) -> str:
    number = finite(value)
    return "n/a" if number is None else f"{100 * number:.1f}%"


def acc_ci(accuracy: Any, ci: Sequence[Any] | None) -> str:
    text = pct(accuracy)
    if ci and len(ci) == 2 and finite(ci[0]) is not None and finite(ci[1]) is not None:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def num(value: Any, digits: int = 4) -> str:
    number = finite(value)
    if number is None:
        return "n/a"
    if number != 0 and (abs(number) < 1e-3 or abs(number) >= 1e5):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[int] = (),
    raw: bool = False,
    css: str = "data",
) -> str:
    """An HTML table; cells are escaped unless ``raw`` (callers then escape what they put in)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for number, cell in enumerate(row):
            cls = ' class="num"' if number in numeric else ""
            cells.append(f"<td{cls}>{cell if raw else escape(str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def with_downloads(charts: list[str]) -> list[str]:
    """Each inline SVG chart with a 'download SVG' link named after its title."""
    out = []
    for chart in charts:
        if chart.startswith("<svg"):
            title = re.search(r'aria-label="([^"]*)"', chart)
            slug = re.sub(r"[^a-z0-9]+", "-", (title.group(1) if title else "chart").lower()).strip("-") or "chart"
            chart = downloadable(chart, f"{slug}.svg")
        out.append(chart)
    return out


WIDE_FIGURES = ("trajectories.png", "population.png")  # multi-panel: shown full width so their text is readable


MAX_FIGURE_BYTES = 32 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_figure(folder: Path, name: str, caption: str) -> str:
    """A figure embedding the PNG `name` of the run folder `folder`.

    Run folders may come from someone else: the path must stay inside the folder (no absolute path, `..` or
    symlink out, `runs.io.inside`), be a regular file and be a PNG, so a report can never carry another file
    of this machine (a key, a password file) to whoever it is shared with.
    """
    from reasonlens.runs.io import inside, read_bounded

    if not isinstance(name, str) or not name:
        raise UserError(f"{folder}: figure name must be a non-empty string, got {str(name)[:60]!r}")
    path = inside(folder, name, what="figure")
    blob = read_bounded(path, "figure", MAX_FIGURE_BYTES)
    if not blob.startswith(PNG_MAGIC):
        raise UserError(f"{path}: figure is not a PNG image")
    data = base64.b64encode(blob).decode("ascii")
    wide = ' class="wide"' if path.name in WIDE_FIGURES else ""
    return (
        f'<figure{wide}><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f'<figcaption>{escape(caption)} <a class="download" download="{escape(path.name)}" '
        f'href="data:image/png;base64,{data}">download PNG</a></figcaption></figure>'
    )


def section(anchor: str, label: str, help_text: str, inner: str) -> Section:
    return Section(
        anchor,
        label,
        f'<section id="{anchor}"><h2>{escape(label)}</h2><p class="help">{help_text}</p>{inner}</section>',
    )


# -- sections ----------------------------------------------------------------------------------------------------


def _budget_cell(summary: dict[str, Any]) -> tuple[str, str]:
    by_budget = summary.get("accuracy_by_budget") or {}
    if not by_budget:
        return "n/a", ""
    top = max(by_budget, key=lambda b: int(b))
    ci = (summary.get("accuracy_ci95_by_budget") or {}).get(top)
    return acc_ci(by_budget[top], ci) + f" (budget {top})", ""


def findings_section(findings: Sequence[tuple[str, str]]) -> Section:
    """What the runs found, one line per stage, each with its paired 95% CI (shown before anything else)."""
    return section(
        "findings",
        "Findings",
        "One line per stage: an effect is called an effect only when its paired "
        "bootstrap 95% CI excludes 0. The organisms are controls of the instrument by construction "
        "(docs/organisms.md), not evidence about large models.",
        table(["stage", "finding"], [list(row) for row in findings]),
    )


def overview_section(sources: list[RunSource]) -> Section:
    rows = []
    for source in sources:
        manifest, summary = source.manifest, run_summary(source)
        model = str(manifest.get("model") or summary.get("model") or "")
        dataset = str(manifest.get("dataset") or summary.get("dataset") or "")
        split = manifest.get("split") or summary.get("split")
        if split:
            dataset += f" ({split}"
            offset = manifest.get("offset")
            dataset += f", from {offset})" if offset else ")"
        method = manifest.get("method") or summary.get("method")
        if source.kind == "depth":
            steps = summary.get("steps") or {}
            if steps:
                top = max(steps, key=int)
                accuracy = acc_ci(steps[top].get("accuracy"), steps[top].get("accuracy_ci95")) + f" (r={top})"
            else:
                accuracy = "n/a"
            n = max((int(e.get("n") or 0) for e in steps.values()), default=0)
            tokens = "n/a"
            label = "depth scaling"
        elif source.kind == "latent":
            accuracy, n, tokens, label = "n/a", summary.get("n_samples", ""), "n/a", "latent"
        elif "accuracy_by_budget" in summary:
            accuracy, _ = _budget_cell(summary)
            n, tokens, label = summary.get("n", ""), "n/a", method_label(method, manifest.get("command"))
        else:
            accuracy = acc_ci(summary.get("accuracy"), summary.get("accuracy_ci95"))
            n = summary.get("n", "")
            tokens = num(summary.get("mean_tokens"), 4)
            label = method_label(method, manifest.get("command"))
        rows.append(
            [
                source.label,
                source.kind,
                label,
                model,
                dataset,
                str(manifest.get("template") or "–"),
                str(n),
                accuracy,
                tokens,
            ]
        )
    inner = table(
        ["run", "kind", "method", "model", "dataset", "template", "n", "accuracy [95% CI]", "mean tokens"],
        rows,
        numeric=(6, 8),
    )
    return section(
        "summary",
        "Runs",
        "Every run directory in this report. Accuracy counts failed and ungradable "
        "samples as incorrect; the interval is the run's 95% CI (Wilson score; with several samples per "
        "problem a bootstrap over problems; older runs recorded a percentile bootstrap).",
        inner,
    )


def traces_section(payloads: list[dict[str, Any]]) -> Section:
    notes = []
    for payload in payloads:
        if not payload["layers"]:
            notes.append(
                f"{escape(payload['run'])}: no MI analysis (run <code>reasonlens mi</code> on it) — tokens "
                "are shown uncoloured."
            )
    notice = "".join(f'<p class="notice">{n}</p>' for n in notes)
    return section(
        "traces",
        "Traces",
        "Every generated token is one box, coloured by the MI of the hidden state that predicted it "
        "(light = low, dark = high, scaled within the trace unless chosen otherwise); MI peaks are "
        "outlined. Hover a token for step, MI, token id and layer; click a red mark in the curve to jump "
        "to that peak; j/k move through the list.",
        notice + TRACE_VIEW,
    )


def _stat_cell(stats: dict[str, Any], name: str) -> str:
    entry = stats.get(name) or {}
    text = num(entry.get("mean"))
    ci = entry.get("ci95")
    if ci and finite(ci[0]) is not None and finite(ci[1]) is not None:
        text += f" [{num(ci[0], 3)}, {num(ci[1], 3)}]"
    return text


def thinking_section(sources: list[RunSource]) -> Section | None:
    parts = []
    for source in sources:
        if not source.has_mi:
            continue
        summary = read_mi_summary(source.mi_dir / "summary.json")
        words = summary.get("thinking_tokens") or []
        parts.append(
            f"<h3>{escape(source.label)} — {escape(str(summary.get('model', '')))}, token layer "
            f"{escape(str(summary.get('token_layer')))}, {summary.get('n', 0)} traces</h3>"
        )
        if words:
            total = sum(int(w.get("frequency") or 0) for w in words) or 1
            rows = [
                [
                    str(rank),
                    escape(repr(str(w.get("word")))),
                    str(w.get("frequency")),
                    f"{100 * int(w.get('frequency') or 0) / total:.1f}%",
                    f'<span class="mono">{escape(", ".join(map(str, (w.get("token_ids") or [])[:10])))}'
                    f"{' …' if len(w.get('token_ids') or []) > 10 else ''}</span>",
                ]
                for rank, w in enumerate(words[:MAX_TOKEN_ROWS], start=1)
            ]
            parts.append(
                table(["rank", "word", "peaks", "share", "token ids (all variants)"], rows, numeric=(0, 2, 3), raw=True)
            )
        else:
            parts.append('<p class="notice">No alphabetic tokens at MI peaks in this run.</p>')
        stat_rows = []
        for layer, entry in (summary.get("per_layer") or {}).items():
            stats = entry.get("stats") or {}
            auc = entry.get("cumulative_mi_vs_correct") or {}
            auc_text = (
                "n/a" if auc.get("auc") is None else f"{auc['auc']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]"
            )
            stat_rows.append(
                [
                    layer,
                    str(entry.get("n_traces")),
                    _stat_cell(stats, "mean"),
                    _stat_cell(stats, "std"),
                    _stat_cell(stats, "n_peaks"),
                    _stat_cell(stats, "peak_ratio"),
                    _stat_cell(stats, "aom"),
                    num(entry.get("argmax_agreement"), 3),
                    auc_text,
                ]
            )
        if stat_rows:
            parts.append(
                table(
                    [
                        "layer",
                        "traces",
                        "mean MI",
                        "std",
                        "peaks/trace",
                        "peak ratio",
                        "AOM",
                        "argmax agrees",
                        "AUC cum. MI → correct",
                    ],
                    stat_rows,
                    numeric=(1, 2, 3, 4, 5, 6, 7),
                )
            )
        if summary.get("estimator"):
            parts.append(f'<p class="help">MI estimator: {escape(str(summary["estimator"]))}.</p>')
    if not parts:
        return None
    return section(
        "thinking",
        "Thinking tokens and MI statistics",
        "Words at MI peaks of the token layer, counted over all traces (all token-id variants of a word "
        "grouped). Statistics are means over traces with bootstrap 95% CIs; AOM = mean over peaks of "
        "|MI − median| / IQR; the AUC says how well cumulative MI separates correct from incorrect traces.",
        "".join(parts),
    )


PLOT_CAPTIONS = {
    "trajectories.png": "MI per step for a few traces, peaks marked with their token",
    "peak_tokens.png": "most frequent tokens at MI peaks",
    "cumulative_vs_correct.png": "cumulative MI of correct vs incorrect traces",
    "population.png": "population HSIC / linear CKA across problems by relative position",
}


def mi_plots_section(sources: list[RunSource]) -> Section | None:
    parts = []
    for source in sources:
        if not source.has_mi:
            continue
        pngs = sorted(
            source.mi_dir.glob("*.png"),
            key=lambda p: (list(PLOT_CAPTIONS).index(p.name) if p.name in PLOT_CAPTIONS else 99, p.name),
        )
        if pngs:
            parts.append(
                f'<h3>{escape(source.label)}</h3><div class="charts">'
                + "".join(
                    png_figure(source.mi_dir, p.name, PLOT_CAPTIONS.get(p.name, p.stem.replace("_", " "))) for p in pngs
                )
                + "</div>"
            )
    if not parts:
        return None
    return section("mi-plots", "MI plots", "Figures written by <code>reasonlens mi</code>.", "".join(parts))


def _group_key(source: RunSource) -> tuple[str, str, str, int]:
    m = source.manifest
    return (str(m.get("model")), str(m.get("dataset")), str(m.get("split")), int(m.get("offset") or 0))


def _reference_first(group: list[RunSource]) -> list[RunSource]:
    def rank(source: RunSource) -> int:
        method = source.manifest.get("method") or {}
        if source.kind == "eval" and method.get("name") == "baseline" and not source.manifest.get("budgets"):
            return 0
        if source.kind == "trace":
            return 1
        return 2

    return sorted(group, key=rank)


def interventions_section(sources: list[RunSource], config: ReportConfig) -> Section | None:
    from reasonlens.interventions.evaluate import compare_runs

    evals = [s for s in sources if s.kind == "eval"]
    if not evals:
        return None
    groups: dict[tuple, list[RunSource]] = {}
    for source in sources:
        if source.kind in ("eval", "trace"):
            groups.setdefault(_group_key(source), []).append(source)
    parts = []
    for key, group in groups.items():
        if not any(s.kind == "eval" for s in group):
            continue
        group = _reference_first(group)
        if group[0].kind == "trace" and len(group) > 1:
            group = group[:1] + [s for s in group[1:] if s.kind == "eval"]
        model, dataset, split, offset = key
        parts.append(f"<h3>{escape(model)} on {escape(dataset)} ({escape(split)}, problems from {offset})</h3>")
        labels = {str(s.path): s.label for s in group}
        try:
            report = (
                compare_runs([s.path for s in group], n_boot=config.n_boot, seed=config.seed)
                if len(group) > 1
                else None
            )
        except UserError as exc:
            parts.append(f'<p class="notice">Paired comparison not possible: {escape(str(exc))}</p>')
            report = None
        if report is None:
            rows = []
            for s in group:
                summary = run_summary(s)
                if "accuracy_by_budget" in summary:
                    for b, acc in summary["accuracy_by_budget"].items():
                        rows.append(
                            [
                                s.label,
                                method_label(s.manifest.get("method")),
                                b,
                                acc_ci(acc, summary["accuracy_ci95_by_budget"].get(b)),
                            ]
                        )
                else:
                    rows.append(
                        [
                            s.label,
                            method_label(s.manifest.get("method"), s.manifest.get("command")),
                            "–",
                            acc_ci(summary.get("accuracy"), summary.get("accuracy_ci95")),
                        ]
                    )
            parts.append(table(["run", "method", "budget", "accuracy [95% CI]"], rows, numeric=(2,)))
            continue
        diffs = {(c["run"], c["budget"]): c for c in report["comparisons"]}
        rows = []
        for row in report["runs"]:
            c = diffs.get((row["run"], row["budget"]))
            diff = "reference" if row["run"] == str(group[0].path) else "–"
            if c is not None:
                mark = " *" if c["significant"] else ""
                diff = (
                    f"{100 * c['difference']:+.1f} [{100 * c['difference_ci95'][0]:+.1f}, "
                    f"{100 * c['difference_ci95'][1]:+.1f}]{mark} (n={c['n_paired']})"
                )
            rows.append(
                [
                    labels.get(row["run"], row["run"]),
                    method_label(row["method"], "generate"),
                    "–" if row["budget"] is None else str(row["budget"]),
                    str(row["n_graded"]),
                    acc_ci(row["accuracy"], row["ci95"]),
                    diff,
                ]
            )
        parts.append(
            table(
                ["run", "method", "budget", "graded", "accuracy [95% CI]", "Δ vs reference, points [95% CI]"],
                rows,
                numeric=(2, 3),
            )
        )
    curves = budget_curves(evals, sources)
    if curves:
        parts.append('<h3>Accuracy vs token budget</h3><div class="charts">' + curves + "</div>")
    return section(
        "interventions",
        "Interventions and test-time scaling",
        "Accuracy of each decoding method on the same problems (graded samples only), and the paired "
        "bootstrap 95% CI of its difference to the reference (the first row: a baseline run). * marks an "
        "interval that excludes zero. Suppression with the thinking tokens vs a frequency-matched random "
        "control tests whether those tokens matter; RR re-runs one decoder layer at thinking tokens; TTTS "
        "appends thinking tokens while budget remains.",
        "".join(parts),
    )


def budget_curves(evals: list[RunSource], sources: list[RunSource]) -> str:
    charts = []
    by_dataset: dict[tuple[str, str], list[RunSource]] = {}
    for source in evals:
        if source.manifest.get("budgets"):
            by_dataset.setdefault((str(source.manifest.get("model")), str(source.manifest.get("dataset"))), []).append(
                source
            )
    for (model, dataset), runs in by_dataset.items():
        series = []
        budgets: list[int] = []
        for source in runs:
            summary = run_summary(source)
            by_budget = summary.get("accuracy_by_budget") or {}
            cis = summary.get("accuracy_ci95_by_budget") or {}
            keys = sorted(by_budget, key=int)
            budgets += [int(b) for b in keys]
            series.append(
                Series(
                    f"{method_label(source.manifest.get('method'))} ({source.label})",
                    [int(b) for b in keys],
                    [finite(by_budget[b]) for b in keys],
                    [finite((cis.get(b) or [None])[0]) for b in keys],
                    [finite((cis.get(b) or [None, None])[1]) for b in keys],
                )
            )
        if not budgets:
            continue
        for source in evals:  # plain runs of the same model/dataset as flat reference lines
            if source.manifest.get("budgets") or (
                str(source.manifest.get("model")),
                str(source.manifest.get("dataset")),
            ) != (model, dataset):
                continue
            accuracy = finite(run_summary(source).get("accuracy"))
            if accuracy is not None:
                series.append(
                    Series(
                        f"{method_label(source.manifest.get('method'))} ({source.label})",
                        [min(budgets), max(budgets)],
                        [accuracy, accuracy],
                        dashed=True,
                    )
                )
        charts.append(
            line_chart(
                Axes(f"{model} on {dataset}", "token budget", "accuracy", log2_x=True, y_range=(0.0, 1.0), width=620),
                series,
            )
        )
    return "".join(with_downloads(charts))


def depth_section(sources: list[RunSource]) -> Section | None:
    depths = [s for s in sources if s.kind == "depth"]
    if not depths:
        return None
    parts = []
    for source in depths:
        summary = source.summary
        steps = summary.get("steps") or {}
        keys = sorted(steps, key=int)
        adaptive = summary.get("adaptive")
        parts.append(
            f"<h3>{escape(source.label)} — {escape(str(summary.get('model')))} on "
            f"{escape(str(summary.get('dataset')))}</h3>"
        )
        rows = [
            [
                f"r = {r}",
                acc_ci(steps[r].get("accuracy"), steps[r].get("accuracy_ci95")),
                str(steps[r].get("n")),
                num(steps[r].get("mean_iterations_per_token"), 3),
            ]
            for r in keys
        ]
        if adaptive:
            rows.append(
                [
                    f"exit {adaptive.get('criterion')} < {num(adaptive.get('threshold'), 2)} "
                    f"(max {adaptive.get('max_steps')})",
                    acc_ci(adaptive.get("accuracy"), adaptive.get("accuracy_ci95")),
                    str(adaptive.get("n")),
                    num(adaptive.get("mean_iterations_per_token"), 3),
                ]
            )
        parts.append(table(["setting", "accuracy [95% CI]", "n", "core iterations / token"], rows, numeric=(2, 3)))
        if adaptive and finite(adaptive.get("iterations_saved_vs_fixed_rmax")) is not None:
            parts.append(
                f"<p>Adaptive exit uses {pct(1 - adaptive['iterations_saved_vs_fixed_rmax'])} of the core "
                f"iterations of r = {adaptive.get('max_steps')} "
                f"(accuracy change {100 * (finite(adaptive.get('accuracy_change_vs_fixed_rmax')) or 0):+.1f}"
                " points).</p>"
            )
        series = [
            Series(
                "fixed r",
                [int(r) for r in keys],
                [finite(steps[r].get("accuracy")) for r in keys],
                [finite((steps[r].get("accuracy_ci95") or [None])[0]) for r in keys],
                [finite((steps[r].get("accuracy_ci95") or [None, None])[1]) for r in keys],
            )
        ]
        mean_iter = finite(adaptive.get("mean_iterations_per_token")) if adaptive else None
        if adaptive and mean_iter:
            series.append(
                Series(
                    f"adaptive exit ({adaptive.get('criterion')})",
                    [mean_iter],
                    [finite(adaptive.get("accuracy"))],
                    markers_only=True,
                )
            )
        charts = [
            line_chart(
                Axes(
                    "accuracy vs core iterations",
                    "iterations r (adaptive: mean per token)",
                    "accuracy",
                    log2_x=True,
                    y_range=(0.0, 1.0),
                ),
                series,
            )
        ]
        histogram = (adaptive or {}).get("iterations_histogram") or {}
        if histogram:
            labels = sorted(histogram, key=int)
            charts.append(
                bar_chart(
                    Axes("exit step per token (adaptive)", "core iterations used", "tokens"),
                    labels,
                    [float(histogram[k]) for k in labels],
                )
            )
        parts.append('<div class="charts">' + "".join(with_downloads(charts)) + "</div>")
    return section(
        "depth",
        "Recurrent depth: scaling and adaptive exit",
        "Accuracy when every token gets r iterations of the recurrent core, and with per-token adaptive "
        "exit (stop iterating once successive next-token distributions agree); the histogram shows how "
        "many iterations tokens needed before exiting.",
        "".join(parts),
    )


def latent_section(sources: list[RunSource]) -> Section | None:
    latents = [s for s in sources if s.kind == "latent"]
    if not latents:
        return None
    parts = []
    for source in latents:
        summary = source.summary
        counts = summary.get("label_counts") or {}
        parts.append(
            f"<h3>{escape(source.label)} — {escape(str(summary.get('model')))}, "
            f"{summary.get('n_tokens')} tokens in {summary.get('n_samples')} samples</h3>"
        )
        if counts:
            parts.append(table(["trajectory", "tokens"], [[k, str(v)] for k, v in counts.items()], numeric=(1,)))
        charts = []
        curve = summary.get("mean_dist_to_star_by_iteration") or []
        if curve:
            charts.append(
                line_chart(
                    Axes("mean distance to s* by iteration", "iteration", "‖s_i − s*‖"),
                    [Series("mean", list(range(1, len(curve) + 1)), [finite(v) for v in curve])],
                )
            )
        names = summary.get("figures") or []
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{source.path / 'summary.json'}: field 'figures' must be a list of file names")
        figures = [(name, inside(source.path, name, what="figure")) for name in names]
        samples = sorted({f.name.split("_")[0] for _, f in figures})[:MAX_LATENT_SAMPLES]
        for name, fig in figures:
            if fig.name.split("_")[0] in samples and os.path.lexists(fig) and not fig.name.endswith("_pca6.png"):
                kind = fig.stem.split("_", 1)[-1].replace("_", " ")
                charts.append(png_figure(source.path, name, f"sample {fig.name.split('_')[0]}: {kind}"))
        parts.append('<div class="charts">' + "".join(with_downloads(charts)) + "</div>")
    return section(
        "latent",
        "Recurrent depth: latent trajectories",
        "Convergence heatmaps show ‖s_i − s*‖ per token and iteration (s* = the state after many "
        "iterations); PCA paths show each token's state across iterations. Tokens are labelled fixed "
        "point (settles), orbit (keeps circling) or slider (keeps drifting one way).",
        "".join(parts),
    )


# -- the report --------------------------------------------------------------------------------------------------


def build_report(run_dirs: Sequence[str | Path], out: str | Path, config: ReportConfig = ReportConfig()) -> Path:
    """Write one self-contained HTML report for ``run_dirs`` to ``out``; returns its path."""
    from reasonlens.runs.io import atomic_write_bytes

    config.validate()
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory (give a file name such as report.html)")
    html = render_report(run_dirs, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, html.encode("utf-8"))
    return out


def render_report(run_dirs: Sequence[str | Path], config: ReportConfig = ReportConfig()) -> str:
    """The report's HTML text (see :func:`build_report`)."""
    sources = collect_sources(list(run_dirs))
    sections: list[Section] = [findings_section(config.findings)] if config.findings else []
    sections.append(overview_section(sources))
    payloads = [trace_payload(s, TraceOptions(max_traces=config.max_traces)) for s in sources if s.kind == "trace"]
    payloads = [p for p in payloads if p["traces"]]
    if payloads:
        sections.append(traces_section(payloads))
    for maker in (thinking_section, mi_plots_section):
        made = maker(sources)
        if made is not None:
            sections.append(made)
    made = interventions_section(sources, config)
    if made is not None:
        sections.append(made)
    for maker in (depth_section, latent_section):
        made = maker(sources)
        if made is not None:
            sections.append(made)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{len(sources)} run{'s' if len(sources) != 1 else ''} · generated {stamp}"
    return render_page(
        config.title, subtitle, [(s.anchor, s.label) for s in sections], "".join(s.html for s in sections), payloads
    )
