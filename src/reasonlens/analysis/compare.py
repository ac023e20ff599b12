"""``reasonlens compare RUN_A RUN_B``: paper Table 2 style comparison of MI statistics between two runs
(e.g. a reasoning model and its base model on the same problems), with bootstrap CIs and paired differences."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reasonlens.analysis.pipeline import MIConfig, check_analysable, default_token_layer, ensure_analysis
from reasonlens.errors import UserError
from reasonlens.eval.stats import bootstrap_ci, paired_bootstrap_diff

COMPARE_METRICS = ("mean", "std", "aom", "peak_ratio", "n_peaks", "cumulative")


def _layer_rows(run_path: Path, layer: str | None, config: MIConfig) -> tuple[str, dict[str, dict[str, Any]]]:
    out_dir = ensure_analysis(run_path, config, quiet=True)
    from reasonlens.runs.tables import read_table

    rows = read_table(out_dir / "stats.parquet", ["id", "layer", *COMPARE_METRICS], "statistics table").to_pylist()
    layers = sorted({r["layer"] for r in rows})
    key = str(layer) if layer is not None else default_token_layer(layers)
    if key not in layers:
        raise UserError(f"{out_dir / 'stats.parquet'}: no statistics for layer {key!r} (layers: {', '.join(layers)})")
    return key, {r["id"]: r for r in rows if r["layer"] == key}


def _estimate(values: list[float], n_boot: int, seed: int) -> dict[str, Any]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "ci95": [None, None], "n": 0}
    est = bootstrap_ci(finite, n_boot=n_boot, seed=seed)
    return {"mean": est.estimate, "ci95": [est.lo, est.hi], "n": len(finite)}


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    layer_a: str | None = None,
    layer_b: str | None = None,
    out: str | Path | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    config: MIConfig = MIConfig(),
) -> dict[str, Any]:
    """Compare MI statistics of two analysed runs; writes ``compare.parquet``, ``compare.png`` and
    ``summary.json`` into ``out`` (default ``RUN_A/compare/<name of RUN_B>``) and returns the summary.

    Each metric gets per-run means with bootstrap CIs over traces, and, on the problems both runs share
    (matched by id), the paired difference A - B with a bootstrap CI.
    """
    from reasonlens.analysis.plots import plot_comparison
    from reasonlens.runs.io import atomic_write_json

    path_a, path_b = Path(run_a), Path(run_b)
    for path in (path_a, path_b):  # a bad run B must not leave run A analysed (RUN_A/mi written)
        check_analysable(path, config)
    key_a, rows_a = _layer_rows(path_a, layer_a, config)
    key_b, rows_b = _layer_rows(path_b, layer_b, config)
    shared = sorted(set(rows_a) & set(rows_b))
    out_dir = Path(out) if out is not None else path_a / "compare" / path_b.resolve().name
    out_dir.mkdir(parents=True, exist_ok=True)
    table = []
    for metric in COMPARE_METRICS:
        row: dict[str, Any] = {
            "metric": metric,
            "a": _estimate([r[metric] for r in rows_a.values()], n_boot, seed),
            "b": _estimate([r[metric] for r in rows_b.values()], n_boot, seed),
        }
        pairs = [(rows_a[i][metric], rows_b[i][metric]) for i in shared]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
        if pairs:
            diff = paired_bootstrap_diff(
                np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), n_boot=n_boot, seed=seed
            )
            row["paired_diff"] = {"mean": diff.estimate, "ci95": [diff.lo, diff.hi], "n": len(pairs)}
        else:
            row["paired_diff"] = {"mean": None, "ci95": [None, None], "n": 0}
        table.append(row)
    flat = [
        {
            "metric": r["metric"],
            "a_mean": r["a"]["mean"],
            "a_lo": r["a"]["ci95"][0],
            "a_hi": r["a"]["ci95"][1],
            "b_mean": r["b"]["mean"],
            "b_lo": r["b"]["ci95"][0],
            "b_hi": r["b"]["ci95"][1],
            "diff_mean": r["paired_diff"]["mean"],
            "diff_lo": r["paired_diff"]["ci95"][0],
            "diff_hi": r["paired_diff"]["ci95"][1],
            "n_paired": r["paired_diff"]["n"],
        }
        for r in table
    ]
    pq.write_table(pa.Table.from_pylist(flat), out_dir / "compare.parquet")
    plot_comparison(
        out_dir / "compare.png",
        [r for r in table if r["metric"] in ("mean", "std", "aom", "peak_ratio")],
        path_a.resolve().name,
        path_b.resolve().name,
    )
    summary = {
        "command": "compare",
        "run_a": str(path_a),
        "run_b": str(path_b),
        "layer_a": key_a,
        "layer_b": key_b,
        "n_a": len(rows_a),
        "n_b": len(rows_b),
        "n_shared": len(shared),
        "table": table,
        "files": ["compare.parquet", "compare.png", "summary.json"],
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
