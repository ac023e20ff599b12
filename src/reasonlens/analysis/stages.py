"""The stages of the MI analysis (`reasonlens mi`), each a function or a small object of its own:

1. stream traces: `iter_states` reads one sample's shard at a time (token ids + states per analysed layer);
2. per-trace estimator: `score_traces` scores every step with the estimator registered under
   `TraceScoring.estimator` (`reasonlens.mi.estimators`) against the sample's gold representation;
3. peaks and statistics: `score_traces` also finds each trace's peaks and their statistics (`analysis.peaks`);
4. population statistics: `layer_statistics` (peak statistics across traces, MI vs correctness) and
   `population_statistics` (HSIC / linear CKA across problems at aligned positions, `PopulationConfig`);
5. writers: `TraceWriter` (mi / peaks / stats tables, readings, plot traces) and `write_population`.

`analysis.pipeline.analyze_run` composes them; each stage reads only its own settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from reasonlens.analysis.enrichment import TraceCounts, trace_counts
from reasonlens.analysis.peaks import PeakConfig, TraceStats, aggregate_stats, find_peaks, trace_stats
from reasonlens.analysis.tokens import PeakToken, agreement_rate, peak_tokens, token_text
from reasonlens.errors import UserError
from reasonlens.eval.stats import correctness_auc
from reasonlens.mi import get_estimator
from reasonlens.mi.population import GramStatistic
from reasonlens.mi.trajectory import AlignedStates


@dataclass(frozen=True)
class TraceScoring:
    """Settings of stages 2-3: the per-trace estimator (by its registered name), its kernel settings, the peaks.
    Errors name the `reasonlens mi` options."""

    estimator: str = "paper_hsic"
    sigma: float | str = 50.0
    eps: float = 1e-5
    peaks: PeakConfig = PeakConfig()

    def __post_init__(self) -> None:
        for option, value in (("--eps", self.eps), ("--sigma", self.sigma)):
            if value != "median" and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserError(f"{option} must be a positive finite number, got {value}")


ALIGNMENTS = ("relative", "step")


@dataclass(frozen=True)
class PopulationConfig:
    """Settings of the population stage: whether it runs (`enabled`); traces aligned by relative position
    (`n_bins` bins) or by absolute step (every `stride`-th step); HSIC / CKA with a permutation p-value per bin
    holding `min_samples` problems. The settings are checked (and recorded) even when the stage is off."""

    enabled: bool = True
    align: str = "relative"
    n_bins: int = 10
    stride: int = 32
    min_samples: int = 4
    n_permutations: int = 200

    def __post_init__(self) -> None:
        if self.align not in ALIGNMENTS:
            raise UserError(f"--align must be 'relative' or 'step', got {self.align!r}")
        for option, value, least in (("--bins", self.n_bins, 1), ("--stride", self.stride, 1)):
            if value < least:
                raise UserError(f"{option} must be >= {least}, got {value}")
        if self.n_permutations < 0:
            raise UserError(f"--permutations must be >= 0, got {self.n_permutations}")


@dataclass
class Sample:
    index: int
    id: str
    correct: bool | None
    gold_text: str


@dataclass
class ScoredTrace:
    """One (sample, layer) trace after stages 1-3: its states, MI per step, peak steps and statistics."""

    sample: Sample
    layer: str
    token_ids: torch.Tensor
    states: torch.Tensor
    mi: np.ndarray
    peaks: np.ndarray
    stats: TraceStats


def check_finite(path: Path, key: str, tensor: torch.Tensor) -> None:
    """States of a sample whose record says ok must be finite (the decode loop marks non-finite ones failed)."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise UserError(
            f"{path}: tensor 'layer.{key}' holds NaN or infinite values although the sample's record "
            "says status ok (re-generate this sample)"
        )


def iter_states(
    run: Any, samples: list[Sample], layers: list[str]
) -> Iterator[tuple[Sample, torch.Tensor, dict[str, torch.Tensor]]]:
    """Stage 1: each sample's generated token ids and its states at every analysed layer, one shard at a time."""
    for s in samples:
        path = run.state_path(s.index)
        with run.open_states(s.index) as handle:
            names = set(handle.keys())
            missing = [k for k in layers if f"layer.{k}" not in names]
            if missing or "token_ids" not in names:
                raise UserError(
                    f"{path}: shard lacks tensors {', '.join(['layer.' + k for k in missing] or ['token_ids'])}"
                )
            token_ids = handle.get_tensor("token_ids")
            states = {k: handle.get_tensor(f"layer.{k}") for k in layers}
        for key, tensor in states.items():
            check_finite(path, key, tensor)  # checked before any write too; the shard may change in between
        yield s, token_ids, states


def score_traces(
    run: Any,
    samples: list[Sample],
    layers: list[str],
    golds: dict[int, dict[str, torch.Tensor]],
    scoring: TraceScoring,
) -> Iterator[list[ScoredTrace]]:
    """Stages 1-3 for each sample in turn: its trace at every layer, scored and with its peaks."""
    estimator = get_estimator(scoring.estimator)
    for sample, token_ids, states in iter_states(run, samples, layers):
        traces = []
        for key in layers:
            h = states[key]
            if h.shape[0] != token_ids.shape[0]:
                raise UserError(
                    f"{run.state_path(sample.index)}: layer.{key} has {h.shape[0]} rows but "
                    f"token_ids has {token_ids.shape[0]}"
                )
            mi = estimator.scorer(golds[sample.index][key], scoring.sigma, scoring.eps)(h).numpy()
            steps = find_peaks(mi, scoring.peaks)
            stats = trace_stats(mi, scoring.peaks, peaks=steps)
            traces.append(ScoredTrace(sample, key, token_ids, h, mi, steps, stats))
        yield traces


@dataclass
class Tables:
    """Streaming parquet writers for the per-step and per-peak tables."""

    directory: Path
    batch_rows: int = 200_000
    _writers: dict[str, pq.ParquetWriter] = field(default_factory=dict)
    _columns: dict[str, dict[str, list]] = field(default_factory=dict)
    _schemas: dict[str, pa.Schema] = field(default_factory=dict)

    def register(self, name: str, schema: pa.Schema) -> None:
        self._schemas[name] = schema
        self._columns[name] = {f.name: [] for f in schema}

    def add_columns(self, name: str, **columns: Sequence[Any]) -> None:
        cols = self._columns[name]
        for key, values in columns.items():
            cols[key].extend(values)
        if len(next(iter(cols.values()))) >= self.batch_rows:
            self._flush(name)

    def _flush(self, name: str) -> None:
        cols = self._columns[name]
        if not next(iter(cols.values())):
            return
        table = pa.table(cols, schema=self._schemas[name])
        if name not in self._writers:
            self._writers[name] = pq.ParquetWriter(self.directory / f"{name}.parquet.tmp", self._schemas[name])
        self._writers[name].write_table(table)
        self._columns[name] = {f.name: [] for f in self._schemas[name]}

    def close(self) -> None:
        for name in self._schemas:
            self._flush(name)
            if name not in self._writers:  # no rows: still write an empty table with the schema
                pq.write_table(self._schemas[name].empty_table(), self.directory / f"{name}.parquet.tmp")
            else:
                self._writers[name].close()
            (self.directory / f"{name}.parquet.tmp").replace(self.directory / f"{name}.parquet")


MI_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("layer", pa.string()),
        ("step", pa.int32()),
        ("mi", pa.float64()),
        ("token_id", pa.int64()),
        ("is_peak", pa.bool_()),
    ]
)
PEAK_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("id", pa.string()),
        ("layer", pa.string()),
        ("step", pa.int32()),
        ("mi", pa.float64()),
        ("generated_id", pa.int64()),
        ("generated_text", pa.string()),
        ("argmax_id", pa.int64()),
        ("argmax_text", pa.string()),
        ("agree", pa.bool_()),
    ]
)


POPULATION_SCHEMA = pa.schema(
    [
        ("layer", pa.string()),
        ("statistic", pa.string()),
        ("align", pa.string()),
        ("bin", pa.int64()),
        ("n", pa.int64()),
        ("value", pa.float64()),
        ("p_value", pa.float64()),
    ]
)


class TraceWriter:
    """Stage 5 for each scored trace: rows of `mi.parquet` and `peaks.parquet` (streamed), its `stats.parquet`
    row, the peak readings of every layer, the states the population stage aligns, the token layer's
    enrichment counts and the first traces to plot."""

    def __init__(
        self,
        out_dir: Path,
        layers: list[str],
        token_layer: str,
        lm: Any,
        tokenizer: Any,
        enrichment_ids: set[int],
        aligned: dict[str, AlignedStates],
        plot_traces: int,
    ):
        self.out_dir = out_dir
        self.token_layer = token_layer
        self.lm = lm
        self.tokenizer = tokenizer
        self.enrichment_ids = enrichment_ids
        self.aligned = aligned
        self.max_plot_traces = plot_traces
        self.tables = Tables(out_dir)
        self.tables.register("mi", MI_SCHEMA)
        self.tables.register("peaks", PEAK_SCHEMA)
        self.stats_rows: list[dict[str, Any]] = []
        self.peaks: dict[str, list[PeakToken]] = {k: [] for k in layers}
        self.plot_traces: list[dict[str, Any]] = []
        self.enrichment_counts: list[TraceCounts] = []
        self._text: dict[int, str] = {}

    def text_of(self, token_id: int | None) -> str | None:
        if token_id is None or self.tokenizer is None:
            return None
        if token_id not in self._text:
            self._text[token_id] = token_text(self.tokenizer, token_id)
        return self._text[token_id]

    def add(self, trace: ScoredTrace) -> None:
        sample, key, mi, steps, stats, token_ids = (
            trace.sample,
            trace.layer,
            trace.mi,
            trace.peaks,
            trace.stats,
            trace.token_ids,
        )
        is_peak = np.zeros(mi.shape[0], dtype=bool)
        is_peak[steps] = True
        self.tables.add_columns(
            "mi",
            index=[sample.index] * mi.shape[0],
            layer=[key] * mi.shape[0],
            step=list(range(mi.shape[0])),
            mi=mi.tolist(),
            token_id=token_ids.tolist(),
            is_peak=is_peak.tolist(),
        )
        readings = peak_tokens(
            sample.index,
            layer_arg(key),
            steps.tolist(),
            token_ids,
            trace.states if self.lm is not None else None,
            self.lm,
        )
        self.peaks[key].extend(readings)
        self.tables.add_columns(
            "peaks",
            index=[sample.index] * len(readings),
            id=[sample.id] * len(readings),
            layer=[key] * len(readings),
            step=[p.step for p in readings],
            mi=[float(mi[p.step]) for p in readings],
            generated_id=[p.generated_id for p in readings],
            generated_text=[self.text_of(p.generated_id) for p in readings],
            argmax_id=[p.argmax_id for p in readings],
            argmax_text=[self.text_of(p.argmax_id) for p in readings],
            agree=[p.agree for p in readings],
        )
        length = max(1, stats.n_steps)
        self.stats_rows.append(
            {
                "index": sample.index,
                "id": sample.id,
                "layer": key,
                "correct": sample.correct,
                **stats.as_dict(),
                "mean_per_step": stats.cumulative / length,
            }
        )
        if key in self.aligned:
            self.aligned[key].add(sample.index, trace.states)
        if key == self.token_layer and self.tokenizer is not None:
            self.enrichment_counts.append(trace_counts(token_ids.tolist(), steps.tolist(), self.enrichment_ids))
        if key == self.token_layer and len(self.plot_traces) < self.max_plot_traces:
            self.plot_traces.append(
                {
                    "index": sample.index,
                    "mi": mi,
                    "peaks": steps,
                    "labels": [self.text_of(int(token_ids[s])) or str(int(token_ids[s])) for s in steps],
                }
            )

    def close(self) -> None:
        self.tables.close()
        pq.write_table(pa.Table.from_pylist(self.stats_rows), self.out_dir / "stats.parquet")


def layer_arg(key: str) -> int | str:
    """A layer key of the run ("3", "final", "embed") as the model's layer argument."""
    return key if key in ("final", "embed") else int(key)


def layer_statistics(
    stats_rows: list[dict[str, Any]],
    peaks: dict[str, list[PeakToken]],
    layers: Sequence[str],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Stage 4, across the traces of each layer: mean peak statistics with bootstrap CIs, LM-head agreement
    at peaks, and how well cumulative / mean MI separate correct from wrong traces (AUC)."""
    per_layer: dict[str, Any] = {}
    for key in layers:
        rows = [r for r in stats_rows if r["layer"] == key]
        agg = aggregate_stats(
            [TraceStats(**{f: r[f] for f in TraceStats.__dataclass_fields__}) for r in rows],
            n_boot=n_boot,
            seed=seed,
        )
        per_layer[key] = {
            "n_traces": len(rows),
            "stats": {name: {"mean": a.mean, "ci95": [a.lo, a.hi], "n": a.n} for name, a in agg.items()},
            "argmax_agreement": agreement_rate(peaks[key]),
            "cumulative_mi_vs_correct": correctness_auc(rows, "cumulative", n_boot, seed),
            "mean_mi_vs_correct": correctness_auc(rows, "mean_per_step", n_boot, seed),
        }
    return per_layer


def aligned_states(layers: Sequence[str], config: PopulationConfig, max_steps: int) -> dict[str, AlignedStates]:
    """The population stage's accumulators, one per layer (filled by `TraceWriter.add`)."""
    return {
        k: AlignedStates(align=config.align, n_bins=config.n_bins, max_steps=max_steps, stride=config.stride)
        for k in layers
    }


def population_statistics(
    aligned: dict[str, AlignedStates],
    golds: dict[int, dict[str, torch.Tensor]],
    layers: Sequence[str],
    config: PopulationConfig,
    seed: int,
) -> list[dict[str, Any]]:
    """Stage 4, across problems: HSIC and linear CKA between aligned states and golds, with permutation p-values
    (drawn from ``seed``, the analysis's one seed)."""
    rows: list[dict[str, Any]] = []
    gold_by_layer = {k: {i: g[k] for i, g in golds.items()} for k in layers}
    for key in layers:
        for name in ("hsic", "linear_cka"):
            points = aligned[key].trajectory(
                gold_by_layer[key],
                GramStatistic(name),
                n_permutations=config.n_permutations,
                seed=seed,
                min_samples=config.min_samples,
            )
            rows.extend(
                {
                    "layer": key,
                    "statistic": name,
                    "align": config.align,
                    "bin": p.position,
                    "n": p.n,
                    "value": p.statistic,
                    "p_value": p.p_value,
                }
                for p in points
            )
    return rows


def write_population(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=POPULATION_SCHEMA), out_dir / "population.parquet")
