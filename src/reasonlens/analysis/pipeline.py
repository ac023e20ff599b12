"""``reasonlens mi RUN``: MI trajectories, peaks, statistics and thinking tokens for a run directory.

Streams over the state shards one sample at a time (only aligned population reductions and a few traces for
plots stay in memory) and writes, under ``RUN/mi/``:

- ``golds.safetensors``: gold representations per sample and layer (reused when the settings match)
- ``mi.parquet``: one row per (sample, layer, step): ``mi``, ``token_id``, ``is_peak``
- ``stats.parquet``: one row per (sample, layer): peak statistics, cumulative MI, correctness
- ``peaks.parquet``: one row per peak: generated token, LM-head argmax, agreement
- ``population.parquet``: population HSIC / linear CKA between aligned states and golds across problems
- ``tokens.jsonl``: the thinking-token set (JSON lines word/frequency/token_ids)
- ``*.png`` plots and ``summary.json``

The model is loaded only to encode golds (when not cached) and to decode peak states with the LM head.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from reasonlens.analysis.enrichment import peak_enrichment, whole_word_ids
from reasonlens.analysis.stages import (
    PopulationConfig,
    Sample,
    TraceScoring,
    TraceWriter,
    aligned_states,
    check_finite,
    layer_arg,
    layer_statistics,
    population_statistics,
    score_traces,
    write_population,
)
from reasonlens.analysis.tokens import WordCounter, write_token_set
from reasonlens.errors import UserError
from reasonlens.mi import get_estimator
from reasonlens.runs.rundir import MI_SUMMARY_NAME, TOKEN_SET_NAME

GOLD_SOURCES = ("solution", "answer")


@dataclass(frozen=True)
class GoldConfig:
    """Settings of the golds stage (`collect_golds`): the problem field encoded as ``h_y`` (``source``, reference:
    the solution), its pooling, and the model that encodes it and reads peaks through the LM head (``model``:
    override the manifest's model spec) on ``device``."""

    source: str = "solution"
    pooling: str = "last"
    model: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.source not in GOLD_SOURCES:
            raise UserError(f"--gold must be one of {', '.join(GOLD_SOURCES)}, got {self.source!r}")

    def identity(self, model_spec: str) -> dict[str, str]:
        """The gold cache's key (``golds.safetensors`` is reused only when it matches)."""
        return {"source": self.source, "pooling": self.pooling, "model": model_spec}


@dataclass(frozen=True)
class OutputConfig:
    """What the writers add to the MI tables: LM-head readings of peak states (``decode_argmax``, needs the
    model), the token set's filter, plots (of the first ``plot_traces`` traces) and the enrichment words (words
    whose share of the token layer's peaks is compared with their base rate; None: the paper's list)."""

    decode_argmax: bool = True
    alphabetic_only: bool = True
    plots: bool = True
    plot_traces: int = 6
    enrichment_words: Sequence[str] | None = None


@dataclass(frozen=True)
class MIConfig:
    """Settings of the MI analysis of one run: one sub-config per stage, plus what spans them.

    ``layers``: layer keys to analyse (default: every captured layer). ``token_layer``: the layer whose
    peaks make the thinking-token set (default: the deepest captured decoder layer). ``n_boot`` and ``seed``:
    bootstrap resamples and the one seed of every random draw (bootstraps, permutations). ``limit``: analyse
    only the first N samples. :meth:`summary_block` is the flat `config` block of ``mi/summary.json``.
    """

    layers: Sequence[str] | None = None
    token_layer: str | None = None
    scoring: TraceScoring = TraceScoring()
    gold: GoldConfig = GoldConfig()
    population: PopulationConfig = PopulationConfig()
    output: OutputConfig = OutputConfig()
    n_boot: int = 2000
    seed: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise UserError(f"--n-boot must be >= 1, got {self.n_boot}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")

    def summary_block(self) -> dict[str, Any]:
        """The settings as the flat `config` block of ``mi/summary.json`` (its keys and their order predate the
        sub-configs and stay, so summaries of old and new analyses compare key by key)."""
        nested = asdict(self)
        scoring, gold, population, output = (nested[k] for k in ("scoring", "gold", "population", "output"))
        return {
            "layers": nested["layers"],
            "token_layer": nested["token_layer"],
            "estimator": scoring["estimator"],
            "sigma": scoring["sigma"],
            "eps": scoring["eps"],
            "peaks": scoring["peaks"],
            "gold_source": gold["source"],
            "gold_pooling": gold["pooling"],
            "model": gold["model"],
            "device": gold["device"],
            "decode_argmax": output["decode_argmax"],
            "alphabetic_only": output["alphabetic_only"],
            "population": population["enabled"],
            "align": population["align"],
            "n_bins": population["n_bins"],
            "stride": population["stride"],
            "min_samples": population["min_samples"],
            "n_permutations": population["n_permutations"],
            "n_boot": nested["n_boot"],
            "seed": nested["seed"],
            "plots": output["plots"],
            "plot_traces": output["plot_traces"],
            "limit": nested["limit"],
            "enrichment_words": output["enrichment_words"],
        }


def _paper_thinking_words() -> tuple[str, ...]:
    from reasonlens.interventions.tokens import PAPER_THINKING_WORDS  # late: interventions import this package

    return PAPER_THINKING_WORDS


def mi_dir(run_path: str | Path) -> Path:
    from reasonlens.runs import RunDir

    return RunDir(run_path).mi_dir


def layer_keys(manifest: dict[str, Any], wanted: Sequence[str] | None) -> list[str]:
    captured = [str(k) for k in manifest.get("layers") or []]
    if not captured:
        raise UserError("manifest.json: field 'layers' is empty; re-run generate with --layers to capture states")
    if not wanted:
        return captured
    out = []
    for key in wanted:
        key = str(key).strip()
        if key not in captured:
            raise UserError(f"--layers: layer {key!r} was not captured in this run (captured: {', '.join(captured)})")
        out.append(key)
    return out


def default_token_layer(layers: Sequence[str]) -> str:
    """The deepest captured decoder layer (the reference's choice), else ``"final"``."""
    ints = [int(k) for k in layers if k.lstrip("-").isdigit()]
    return str(max(ints)) if ints else layers[0]


def load_samples(run: Any, manifest: dict[str, Any], config: MIConfig) -> list[Sample]:
    from reasonlens.data import load_problems

    results = [r for r in run.results() if r.get("status", "ok") != "failed" and run.has_states(int(r["index"]))]
    if config.limit is not None:
        results = results[: config.limit]
    if not results:
        raise UserError(f"{run.path}: no samples with state shards to analyse")
    problems = load_problems(
        manifest["dataset"],
        split=manifest.get("split", "test"),
        n=manifest.get("n"),
        offset=int(manifest.get("offset") or 0),
    )
    by_id = {p.id: p for p in problems}
    samples = []
    for record in results:
        index = int(record["index"])
        problem = (
            problems[index]
            if index < len(problems) and problems[index].id == record.get("id")
            else by_id.get(record.get("id"))
        )
        if problem is None:
            raise UserError(
                f"{run.results_path}: sample {index} (id {record.get('id')!r}) is not in dataset "
                f"{manifest['dataset']!r}"
            )
        text = problem.solution if config.gold.source == "solution" and problem.solution else problem.answer
        samples.append(Sample(index, str(record.get("id")), record.get("correct"), text))
    return samples


class _ModelHandle:
    """Loads the run's model on first use only."""

    def __init__(self, spec: str, device: str):
        self.spec = spec
        self.device = device
        self._lm = None

    @property
    def loaded(self):
        return self._lm

    def get(self):
        if self._lm is None:
            from reasonlens.models import load

            self._lm = load(self.spec, device=self.device)
        return self._lm


def collect_golds(
    out_dir: Path, samples: list[Sample], layers: list[str], config: MIConfig, model: _ModelHandle
) -> tuple[dict[int, dict[str, torch.Tensor]], bool]:
    """Gold representations per sample and layer, read from ``golds.safetensors`` when it matches and encoded
    with the model otherwise; writes nothing. Returns the golds and whether any were encoded."""
    from reasonlens.runs.progress import progress_bar
    from reasonlens.runs.rundir import GOLDS_NAME, read_golds

    golds = read_golds(out_dir / GOLDS_NAME, config.gold.identity(model.spec), [s.index for s in samples], layers)
    missing = [s for s in samples if s.index not in golds]
    if missing:
        from reasonlens.models import encode_gold

        lm = model.get()
        with progress_bar(transient=True) as bar:
            task = bar.add_task("gold representations", total=len(missing), info="")
            for s in missing:
                encoded = encode_gold(lm, s.gold_text, [layer_arg(k) for k in layers], pooling=config.gold.pooling)
                golds[s.index] = {str(k): v.float() for k, v in encoded.items()}
                bar.advance(task)
    return golds, bool(missing)


def check_shards(run: Any, samples: list[Sample], layers: list[str]) -> dict[str, int]:
    """Read every sample's shard header (no tensor data) before anything is written: each shard must open, hold
    ``token_ids`` and the analysed layers with one row per token, and all shards must agree on each layer's
    width. Returns the width (hidden size) of each layer; errors name the shard."""
    widths: dict[str, tuple[int, Path]] = {}
    for s in samples:
        path = run.state_path(s.index)
        with run.open_states(s.index) as handle:
            names = set(handle.keys())
            missing = [f"layer.{k}" for k in layers if f"layer.{k}" not in names]
            if missing or "token_ids" not in names:
                raise UserError(f"{path}: shard lacks tensors {', '.join(missing or ['token_ids'])}")
            n_tokens = handle.get_slice("token_ids").get_shape()[0]
            for key in layers:
                shape = handle.get_slice(f"layer.{key}").get_shape()
                if len(shape) != 2 or shape[0] != n_tokens:
                    raise UserError(
                        f"{path}: layer.{key} has shape {list(shape)}, expected [{n_tokens} tokens, hidden size]"
                    )
                first = widths.setdefault(key, (shape[1], path))
                if shape[1] != first[0]:
                    raise UserError(f"{path}: layer.{key} has hidden size {shape[1]}, but {first[1]} has {first[0]}")
                check_finite(path, key, handle.get_tensor(f"layer.{key}"))
    return {key: width for key, (width, _) in widths.items()}


def _check_gold_widths(
    run: Any, samples: list[Sample], widths: dict[str, int], golds: dict[int, dict[str, torch.Tensor]], model_spec: str
) -> None:
    """Golds and states must live in the same space (the run's model and the analysing model agree)."""
    for key, width in widths.items():
        gold_width = int(golds[samples[0].index][key].shape[-1])
        if gold_width != width:
            raise UserError(
                f"{run.state_path(samples[0].index)}: layer.{key} states have hidden size {width}, but "
                f"model {model_spec!r} has hidden size {gold_width}; analyse with the model that "
                "generated the run (--model)"
            )


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _preflight(
    run_path: str | Path, config: MIConfig
) -> tuple[Any, dict[str, Any], list[str], list[Sample], dict[str, int]]:
    from reasonlens.runs import RunDir

    run = RunDir(run_path)
    manifest = run.open_run()
    layers = layer_keys(manifest, config.layers)
    token_layer = config.token_layer or default_token_layer(layers)
    if token_layer not in layers:
        raise UserError(f"--token-layer: layer {token_layer!r} is not among the analysed layers ({', '.join(layers)})")
    samples = load_samples(run, manifest, config)
    return run, manifest, layers, samples, check_shards(run, samples, layers)


def check_analysable(run_path: str | Path, config: MIConfig = MIConfig(), reuse_existing: bool = True) -> None:
    """Raise the UserError :func:`ensure_analysis` (``reuse_existing``) or :func:`analyze_run` would hit on
    this run, without writing anything (for commands that write before the analysis or analyse several runs:
    check first). Does not load the model, so a states/model width mismatch is found only by the analysis."""
    from reasonlens.runs import RunDir

    get_estimator(config.scoring.estimator)
    out_dir = mi_dir(run_path)
    if reuse_existing and all(
        (out_dir / name).is_file() for name in ("stats.parquet", "peaks.parquet", "summary.json")
    ):
        RunDir(run_path).open_run()
    else:
        _preflight(run_path, config)


def analyze_run(run_path: str | Path, config: MIConfig = MIConfig(), quiet: bool = False) -> dict[str, Any]:
    """Analyse one run directory; writes ``RUN/mi/*`` and returns the summary (also ``RUN/mi/summary.json``)."""
    from reasonlens.runs.io import publish_directory

    # Everything that can be wrong with the run is found before RUN/mi is created or changed.
    get_estimator(config.scoring.estimator)
    run, manifest, layers, samples, widths = _preflight(run_path, config)
    token_layer = config.token_layer or default_token_layer(layers)
    out_dir = mi_dir(run.path)
    model = _ModelHandle(config.gold.model or str(manifest.get("model")), config.gold.device)
    golds, encoded = collect_golds(out_dir, samples, layers, config, model)
    _check_gold_widths(run, samples, widths, golds, model.spec)
    lm = model.get() if config.output.decode_argmax else None
    # RUN/mi is published as one unit: written into a staging folder, then swapped in, so an interrupted or
    # failed analysis leaves the previous RUN/mi (or none) and never a mix of old and new files.
    run.acquire_lock()
    try:
        with publish_directory(out_dir) as staging:
            _stage_golds(staging, out_dir, golds, encoded, config.gold.identity(model.spec))
            return _write_analysis(
                staging, run, manifest, layers, token_layer, samples, widths, model, golds, lm, config, quiet
            )
    finally:
        run.release_lock()


def _stage_golds(
    staging: Path, previous: Path, golds: dict[int, dict[str, torch.Tensor]], encoded: bool, identity: dict[str, str]
) -> None:
    """The golds of the new analysis: the previous cache file carried over unchanged when nothing was encoded
    (a hard link, else a copy), otherwise written anew."""
    from reasonlens.runs.rundir import GOLDS_NAME, write_golds

    old = previous / GOLDS_NAME
    if not encoded and old.is_file() and not old.is_symlink():
        try:
            os.link(old, staging / old.name)
            return
        except OSError:
            shutil.copy2(old, staging / old.name)
            return
    write_golds(staging / GOLDS_NAME, golds, identity)


def _write_analysis(
    out_dir: Path,
    run: Any,
    manifest: dict[str, Any],
    layers: list[str],
    token_layer: str,
    samples: list[Sample],
    widths: dict[str, int],
    model: _ModelHandle,
    golds: dict[int, dict[str, torch.Tensor]],
    lm: Any,
    config: MIConfig,
    quiet: bool,
) -> dict[str, Any]:
    """The stages (`analysis.stages`) over the run: scored traces -> writers -> layer and population statistics
    -> thinking tokens -> summary."""
    from reasonlens.runs.io import atomic_write_json
    from reasonlens.runs.progress import progress_bar

    estimator = get_estimator(config.scoring.estimator)
    tokenizer = model.loaded.tokenizer if model.loaded is not None else None
    max_steps = int((manifest.get("decode") or {}).get("max_new_tokens") or 512)
    population = config.population
    enrichment_words = list(config.output.enrichment_words or _paper_thinking_words())
    writer = TraceWriter(
        out_dir,
        layers,
        token_layer,
        lm,
        tokenizer,
        whole_word_ids(tokenizer, enrichment_words) if tokenizer is not None else set(),
        aligned_states(layers, population, max_steps) if population.enabled else {},
        config.output.plot_traces,
    )
    with progress_bar(transient=quiet) as bar:
        task = bar.add_task("MI trajectories", total=len(samples), info="")
        for traces in score_traces(run, samples, layers, golds, config.scoring):
            for trace in traces:
                writer.add(trace)
            bar.advance(task)
    writer.close()

    per_layer = layer_statistics(writer.stats_rows, writer.peaks, layers, config.n_boot, config.seed)
    population_rows: list[dict[str, Any]] = []
    if population.enabled:
        population_rows = population_statistics(writer.aligned, golds, layers, population, config.seed)
        write_population(out_dir, population_rows)

    words = []
    if tokenizer is not None:
        counter = WordCounter(tokenizer, alphabetic_only=config.output.alphabetic_only)
        counter.add(p.generated_id for p in writer.peaks[token_layer])
        words = counter.words()
        write_token_set(out_dir / TOKEN_SET_NAME, words)

    summary = {
        "command": "mi",
        "run": str(run.path),
        "model": model.spec,
        "dataset": manifest.get("dataset"),
        "n": len(samples),
        "layers": layers,
        "token_layer": token_layer,
        "config": config.summary_block(),
        "estimator": estimator.describe(),
        "per_layer": per_layer,
        "population": population_rows,
        "thinking_tokens": [w.to_json() for w in words[:30]],
        "warnings": population_warnings(population_rows),
        "thinking_word_enrichment": (
            {
                "layer": token_layer,
                **peak_enrichment(writer.enrichment_counts, enrichment_words, n_boot=config.n_boot, seed=config.seed),
            }
            if tokenizer is not None
            else None
        ),
        "files": sorted(p.name for p in out_dir.iterdir() if not p.name.endswith(".tmp")) + ["summary.json"],
    }
    summary = _nan_to_none(summary)
    if config.output.plots:
        from reasonlens.analysis.plots import write_mi_plots

        summary["plots"] = write_mi_plots(
            out_dir, writer.plot_traces, words, writer.stats_rows, token_layer, population_rows
        )
    atomic_write_json(out_dir / MI_SUMMARY_NAME, summary)
    return summary


SMALL_BIN = 20  # problems per population bin below which a permutation p-value is flagged


def population_warnings(rows: list[dict[str, Any]], small: int = SMALL_BIN) -> list[str]:
    """A warning when population HSIC/CKA bins hold few problems: their p-values are coarse and unstable
    (with n problems at most n! distinct permutations exist, 24 for n = 4) and should be read as descriptive."""
    sizes = [int(r["n"]) for r in rows if r.get("p_value") is not None]
    few = [n for n in sizes if n < small]
    if not few:
        return []
    return [
        f"population HSIC/CKA: {len(few)} of {len(sizes)} bins have fewer than {small} problems (smallest "
        f"n={min(few)}); their permutation p-values are unstable, read them as descriptive (more problems: "
        f"--limit, fewer bins: --bins)"
    ]


def ensure_analysis(run_path: str | Path, config: MIConfig = MIConfig(), quiet: bool = False) -> Path:
    """``RUN/mi`` with its tables, running :func:`analyze_run` first when they are missing."""
    out_dir = mi_dir(run_path)
    if not all((out_dir / name).is_file() for name in ("stats.parquet", "peaks.parquet", "summary.json")):
        analyze_run(run_path, config, quiet=quiet)
    return out_dir


def _no_peaks_message(key: str, chosen: bool, out_dir: Path, layers_with_peaks: list[str], peaks: dict) -> str:
    """Why a token set is empty, and what to try next (naming --token-layer only if the user gave it)."""
    rule = "the IQR rule" if peaks.get("mode", "iqr") == "iqr" else f"top-{peaks.get('k')} peaks"
    where = f"--token-layer {key}: " if chosen else ""
    others = f"layers with peaks: {', '.join(layers_with_peaks)}" if layers_with_peaks else "no layer has peaks"
    return (
        f"{where}no MI peaks at layer {key} ({rule}; {others}; {out_dir / 'peaks.parquet'}); try "
        f"`reasonlens mi RUN --peaks topk`, or a shallower layer with --token-layer / --layers"
    )


def build_token_set(
    run_path: str | Path,
    out: str | Path,
    layer: str | None = None,
    reading: str = "generated",
    alphabetic_only: bool = True,
    top: int | None = None,
    config: MIConfig = MIConfig(),
) -> list:
    """Thinking-token set of a run: peak tokens of ``layer`` counted and grouped by word, written to ``out``.

    ``reading`` is ``"generated"`` (the emitted token at each peak, the reference) or ``"argmax"`` (the LM-head
    reading of the peak state). Uses ``RUN/mi/peaks.parquet``, computing the analysis if needed.
    """
    from reasonlens.runs import RunDir

    if reading not in ("generated", "argmax"):
        raise UserError(f"--reading must be 'generated' or 'argmax', got {reading!r}")
    if top is not None and top < 1:
        raise UserError(f"--top-words must be >= 1, got {top}")
    if Path(out).is_dir():  # the output is checked before any analysis runs
        raise UserError(f"--out {out}: is a directory (give a file name such as tokens.jsonl)")
    run = RunDir(run_path)
    manifest = run.open_run()
    out_dir = ensure_analysis(run_path, config)
    from reasonlens.runs.tables import read_mi_summary, read_table

    summary = read_mi_summary(out_dir / "summary.json")
    key = str(layer) if layer is not None else summary.get("token_layer") or default_token_layer(summary["layers"])
    table = read_table(out_dir / "peaks.parquet", ["layer", "generated_id", "argmax_id"], "peaks table").to_pydict()
    if key not in set(table["layer"]):
        raise UserError(
            _no_peaks_message(
                key, layer is not None, out_dir, sorted(set(table["layer"])), summary.get("config", {}).get("peaks", {})
            )
        )
    column = table["generated_id" if reading == "generated" else "argmax_id"]
    ids = [i for l, i in zip(table["layer"], column) if l == key and i is not None]
    if reading == "argmax" and not ids:
        raise UserError(
            f"{out_dir / 'peaks.parquet'}: no LM-head readings; re-run `reasonlens mi` with argmax decoding"
        )
    from reasonlens.models import load

    lm = load(config.gold.model or str(manifest.get("model")), device=config.gold.device)
    counter = WordCounter(lm.tokenizer, alphabetic_only=alphabetic_only)
    counter.add(ids)
    words = counter.words(top=top)
    if not words:
        hint = "" if not alphabetic_only else "keep them with --all-tokens, or "
        raise UserError(
            f"{run_path}: the {len(ids)} peak tokens at layer {key} hold no word; {hint}find more peaks "
            f"with `reasonlens mi {run_path} --peaks topk --num-peaks 40` (nothing written to {out})"
        )
    source = {key: manifest.get(key) for key in ("model", "dataset", "split") if manifest.get(key) is not None}
    write_token_set(out, words, source={**source, "run": str(Path(run_path).resolve()), "layer": key})
    return words
