"""PNG plots of the MI analysis and comparisons (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from reasonlens.analysis.tokens import WordCount  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_trajectories(path: Path, traces: Sequence[dict[str, Any]], layer: str) -> str:
    """One panel per trace: MI per step, peaks marked and labelled with their generated token."""
    n = max(1, len(traces))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(traces) :]:
        ax.axis("off")
    for ax, trace in zip(axes.flat, traces):
        mi, peaks = trace["mi"], trace["peaks"]
        ax.plot(range(len(mi)), mi, linewidth=1.2)
        ax.scatter(peaks, [mi[s] for s in peaks], color="crimson", s=18, zorder=3)
        for step, label in zip(peaks, trace["labels"]):
            ax.annotate(
                repr(label.strip() or label)[1:-1][:12],
                (step, mi[step]),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=9,
            )
        ax.set_title(f"sample {trace['index']} (layer {layer})", fontsize=11)
        ax.set_xlabel("generation step")
        ax.set_ylabel("MI (paper HSIC)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_token_histogram(path: Path, words: Sequence[WordCount], top: int = 20, layer: str | None = None) -> str:
    shown = list(words[:top])[::-1]
    if not shown:  # a message, not empty axes
        fig, ax = plt.subplots(figsize=(6, 2.2))
        ax.axis("off")
        where = f" at layer {layer}" if layer is not None else ""
        ax.text(0.5, 0.62, f"No thinking tokens{where}", ha="center", fontsize=13, transform=ax.transAxes)
        ax.text(
            0.5,
            0.3,
            "no word sits on an MI peak; try `reasonlens mi RUN --peaks topk`,\nanother --token-layer, or --all-tokens",
            ha="center",
            fontsize=9,
            color="dimgray",
            transform=ax.transAxes,
        )
        return _save(fig, path)
    fig, ax = plt.subplots(figsize=(6, 0.3 * max(4, len(shown)) + 1))
    ax.barh([w.word for w in shown], [w.frequency for w in shown], color="slateblue")
    ax.set_xlabel("peaks")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("thinking tokens at MI peaks" + (f" (layer {layer})" if layer is not None else ""))
    return _save(fig, path)


def plot_cumulative_vs_correct(path: Path, rows: Sequence[dict[str, Any]], layer: str, auc: dict[str, Any]) -> str:
    groups = {"correct": [], "incorrect": [], "ungraded": []}
    for r in rows:
        if r["layer"] != layer:
            continue
        name = "ungraded" if r["correct"] is None else ("correct" if r["correct"] else "incorrect")
        groups[name].append(r["cumulative"])
    labels = [k for k, v in groups.items() if v]
    fig, ax = plt.subplots(figsize=(5, 4))
    if labels:
        ax.boxplot([groups[k] for k in labels], tick_labels=labels)
    title = "cumulative MI vs correctness"
    if auc.get("auc") is not None:
        title += f"\nAUC {auc['auc']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]"
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(f"sum of MI over steps (layer {layer})")
    return _save(fig, path)


POPULATION_LABELS = {"hsic": "HSIC (Gaussian kernel)", "linear_cka": "linear CKA"}


def plot_population(path: Path, rows: Sequence[dict[str, Any]]) -> str:
    """One panel per statistic: HSIC (~1e-3) and CKA (~0.8) live on scales a shared axis would hide."""
    statistics = sorted({r["statistic"] for r in rows}) or ["hsic"]
    fig, axes = plt.subplots(1, len(statistics), figsize=(5.2 * len(statistics), 3.8), squeeze=False)
    align = rows[0].get("align", "relative") if rows else "relative"
    for ax, statistic in zip(axes.flat, statistics):
        series: dict[str, list[tuple[int, float, int]]] = {}
        for r in rows:
            if r["statistic"] == statistic:
                series.setdefault(r["layer"], []).append((r["bin"], r["value"], r.get("n")))
        for layer, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"layer {layer}")
        ax.set_title(f"{POPULATION_LABELS.get(statistic, statistic)} with gold, across problems", fontsize=10)
        ax.set_xlabel("relative position bin" if align == "relative" else "step")
        ax.set_ylabel(POPULATION_LABELS.get(statistic, statistic).split(" (")[0])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(series) > 1:
            ax.legend(fontsize=8)
    return _save(fig, path)


def write_mi_plots(out_dir: Path, traces, words, stats_rows, token_layer: str, population_rows) -> list[str]:
    from reasonlens.eval.stats import correctness_auc

    rows = [r for r in stats_rows if r["layer"] == token_layer]
    names = [
        plot_trajectories(out_dir / "trajectories.png", traces, token_layer),
        plot_token_histogram(out_dir / "peak_tokens.png", words, layer=token_layer),
        plot_cumulative_vs_correct(
            out_dir / "cumulative_vs_correct.png",
            stats_rows,
            token_layer,
            correctness_auc(rows, "cumulative", n_boot=500, seed=0),
        ),
    ]
    if population_rows:
        names.append(plot_population(out_dir / "population.png", population_rows))
    return names


def plot_comparison(path: Path, table: Sequence[dict[str, Any]], label_a: str, label_b: str) -> str:
    """Side-by-side means with 95% CIs per statistic (paper Table 2 style)."""
    fig, axes = plt.subplots(1, len(table), figsize=(3.0 * max(1, len(table)), 3.4), squeeze=False)
    for ax, row in zip(axes.flat, table):
        means = [row["a"]["mean"], row["b"]["mean"]]
        errs = [
            [
                m - lo if m is not None and lo is not None else 0
                for m, lo in zip(means, [row["a"]["ci95"][0], row["b"]["ci95"][0]])
            ],
            [
                hi - m if m is not None and hi is not None else 0
                for m, hi in zip(means, [row["a"]["ci95"][1], row["b"]["ci95"][1]])
            ],
        ]
        ax.bar(
            [label_a[:14], label_b[:14]],
            [m or 0 for m in means],
            yerr=errs,
            color=["slateblue", "darkorange"],
            capsize=4,
        )
        ax.set_title(row["metric"], fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
    return _save(fig, path)
