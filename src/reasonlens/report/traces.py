"""The per-trace payload of the report: token ids, MI per step and layer, peaks, and a token-text table.

Traces are embedded as JSON and rendered by the page one at a time, so a report with 1000 traces stays
responsive. Token texts come from the run's tokenizer (loaded without the model weights when possible);
when it cannot be loaded the page shows token ids instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reasonlens.report.sources import RunSource
from reasonlens.runs.tables import read_mi_summary

PROMPT_CHARS = 2000  # the tail of the prompt shown above a trace (the question is at its end)


@dataclass(frozen=True)
class TraceOptions:
    max_traces: int = 1000  # per run; the rest are listed as omitted
    significant_digits: int = 5


def load_tokenizer(model_spec: str | None) -> Any | None:
    """The tokenizer of ``model_spec`` (tiny models, built-ins, model dirs), or None when it cannot be had."""
    if not model_spec:
        return None
    try:
        if model_spec.startswith("tiny-"):
            from reasonlens.models import byte_level_tokenizer

            return byte_level_tokenizer()
        from reasonlens.models.builtin import resolve_builtin

        path = resolve_builtin(model_spec) or Path(model_spec).expanduser()
        if Path(path).is_dir():
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - a missing tokenizer only costs token texts; the report still renders
        pass
    try:
        from reasonlens.models import load

        return load(model_spec).tokenizer
    except Exception:  # noqa: BLE001 - same: fall back to showing ids
        return None


def token_texts(tokenizer: Any | None, ids: set[int]) -> dict[str, str]:
    """``{str(id): decoded text}`` for every id (special tokens kept); empty without a tokenizer."""
    if tokenizer is None:
        return {}
    out = {}
    for token_id in sorted(ids):
        try:
            out[str(token_id)] = tokenizer.decode([int(token_id)], skip_special_tokens=False)
        except Exception:  # noqa: BLE001 - an id outside the vocabulary is shown as its number
            continue
    return out


def _round(values: np.ndarray, digits: int) -> list[float | None]:
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in values.tolist()]


def _mi_by_trace(mi_dir: Path, indices: set[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """``{index: {layer: {"ids", "mi", "peaks"}}}`` from ``mi.parquet`` (steps in order)."""
    from reasonlens.runs.tables import read_table

    table = read_table(mi_dir / "mi.parquet", ["index", "layer", "step", "mi", "token_id", "is_peak"], "MI table")
    index = table.column("index").to_numpy()
    keep = np.isin(index, np.fromiter(indices, dtype=np.int64, count=len(indices)))
    index = index[keep]
    layer = np.asarray(table.column("layer").to_pylist(), dtype=object)[keep]
    step = table.column("step").to_numpy()[keep]
    mi = table.column("mi").to_numpy(zero_copy_only=False).astype(np.float64)[keep]
    token = table.column("token_id").to_numpy()[keep]
    peak = table.column("is_peak").to_numpy(zero_copy_only=False).astype(bool)[keep]
    out: dict[int, dict[str, dict[str, Any]]] = {}
    order = np.lexsort((step, layer.astype(str), index))
    index, layer, step, mi, token, peak = index[order], layer[order], step[order], mi[order], token[order], peak[order]
    if index.size == 0:
        return out
    boundaries = np.flatnonzero((index[1:] != index[:-1]) | (layer[1:] != layer[:-1])) + 1
    for start, stop in zip(np.r_[0, boundaries], np.r_[boundaries, index.size]):
        out.setdefault(int(index[start]), {})[str(layer[start])] = {
            "ids": token[start:stop],
            "mi": mi[start:stop],
            "peaks": np.flatnonzero(peak[start:stop]),
        }
    return out


def _state_token_ids(run_path: Path, index: int) -> np.ndarray | None:
    from safetensors import safe_open

    from reasonlens.runs import RunDir

    path = RunDir(run_path).state_path(index)
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="np") as handle:
            return handle.get_tensor("token_ids") if "token_ids" in handle.keys() else None
    except Exception:  # noqa: BLE001 - a torn shard: the trace is shown as text
        return None


def trace_payload(source: RunSource, options: TraceOptions = TraceOptions()) -> dict[str, Any]:
    """The JSON the page needs for one trace run (see the template's ``renderTrace``)."""
    from reasonlens.runs import RunDir

    results = RunDir(source.path).results()
    shown = results[: options.max_traces]
    indices = {int(r["index"]) for r in shown}
    mi_summary = read_mi_summary(source.mi_dir / "summary.json") if source.has_mi else {}
    by_trace = _mi_by_trace(source.mi_dir, indices) if source.has_mi else {}
    layers = [str(k) for k in mi_summary.get("layers") or []]
    default_layer = str(mi_summary.get("token_layer") or (layers[-1] if layers else ""))
    traces = []
    all_ids: set[int] = set()
    for record in shown:
        index = int(record["index"])
        entry: dict[str, Any] = {
            "i": index,
            "id": str(record.get("id", index)),
            "ok": record.get("correct"),
            "st": record.get("status"),
            "x": record.get("extracted"),
            "g": record.get("gold"),
            "p": str(record.get("prompt", ""))[-PROMPT_CHARS:],
            "sr": record.get("stop_reason"),
        }
        per_layer = by_trace.get(index)
        if per_layer:
            first = per_layer.get(default_layer) or next(iter(per_layer.values()))
            ids = first["ids"]
            entry["m"] = {k: _round(v["mi"], options.significant_digits) for k, v in per_layer.items()}
            entry["k"] = {k: v["peaks"].tolist() for k, v in per_layer.items()}
        else:
            ids = _state_token_ids(source.path, index)
        if ids is not None:
            entry["t"] = [int(i) for i in ids.tolist()]
            all_ids.update(entry["t"])
        else:
            entry["c"] = str(record.get("completion", ""))
        traces.append(entry)
    model = str(source.manifest.get("model") or mi_summary.get("model") or "")
    vocab = token_texts(load_tokenizer(model), all_ids) if all_ids else {}
    return {
        "run": source.label,
        "model": model,
        "dataset": source.manifest.get("dataset"),
        "layers": layers,
        "layer": default_layer,
        "traces": traces,
        "vocab": vocab,
        "omitted": max(0, len(results) - len(shown)),
        "mi_estimator": mi_summary.get("estimator"),
    }
