"""Run samples through the decode loop into a run directory: resumable, crash-safe, graded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import reasonlens
from reasonlens.data import Problem, grader_kind, load_problems, render_prompt
from reasonlens.decode import DecodeConfig, Generation, decode_batch
from reasonlens.decode.capture import HiddenStateCapture
from reasonlens.errors import UserError
from reasonlens.models import LoadedModel, load
from reasonlens.models.dtypes import DTYPES, canonical_dtype, check_device
from reasonlens.runs.io import CheckedAppender, iter_records
from reasonlens.runs.progress import progress_bar
from reasonlens.runs.provenance import run_provenance
from reasonlens.runs.rundir import RunDir
from reasonlens.runs.writer import BackgroundWriter

PluginFactory = Callable[[LoadedModel], Sequence[Any]]
RecordHook = Callable[[Generation, dict], None]
# decode one chunk: (prompts, keys, seeds, progress) -> generations; the default is the HF decode loop
ChunkDecoder = Callable[[list, list, list, Callable[[int], None]], list[Generation]]


def chunk_indices(n: int, unit: int) -> list[list[int]]:
    """The fixed chunks of dataset indices a run decodes together (the unit of decoding, sharding and resume):
    `unit` is `DecodeConfig.unit`, a batch with the static schedule, a window of batches when rows join."""
    return [list(range(s, min(s + unit, n))) for s in range(0, n, unit)]


# Sample i is decoded with seed + i, which must fit a 64-bit generator seed for every dataset size.
MAX_SEED = 2**63 - 2**32


@dataclass
class RunSpec:
    """Everything that defines a sample-level run (what `generate`, `eval` and `depth` write)."""

    out: Path
    model: str
    dataset: str
    command: str = "generate"
    split: str = "test"
    n: int | None = None
    offset: int = 0
    template: str = "raw"
    system: str | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    layers: str | list | None = None  # layers to capture; None captures nothing
    dtype: str = "fp32"  # storage dtype of captured states (CLI: --state-dtype; manifest: "dtype")
    model_dtype: str = "fp32"  # weights dtype (CLI: --dtype)
    device: str = "cpu"
    trust_remote_code: bool = False
    revision: str | None = None  # hub ids: branch, tag or commit of the weights
    samples: int = 1  # samples per problem (sampling decoding); summaries add pass@k, maj@k
    method: dict[str, Any] = field(default_factory=dict)  # intervention name and options (part of the run identity)
    extra_manifest: dict[str, Any] = field(default_factory=dict)  # recorded, not part of the identity
    label: str = ""  # the method as the progress bar names it, e.g. "suppress(thinking k=8)" (set by evaluate)

    def validate(self) -> "RunSpec":
        self.decode.validate()
        self.dtype = canonical_dtype(self.dtype, "--state-dtype")
        self.model_dtype = canonical_dtype(self.model_dtype, "--dtype")
        self.device = check_device(self.device)
        seed = self.decode.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UserError(f"--seed must be an integer in 0..{MAX_SEED}, got {seed}")
        if self.samples < 1:
            raise UserError(f"--samples must be >= 1, got {self.samples}")
        if self.samples > 1 and not self.decode.do_sample:
            raise UserError(
                f"--samples {self.samples} needs sampling (--temperature > 0): greedy samples are identical"
            )
        return self


def expand_samples(problems: list[Problem], samples: int) -> list[Problem]:
    """Each problem `samples` times (index = problem * samples + sample; ids `<id>#<sample>`)."""
    if samples <= 1:
        return problems
    return [
        replace(p, id=f"{p.id}#{j}", meta={**p.meta, "problem_id": p.id, "sample": j})
        for p in problems
        for j in range(samples)
    ]


def progress_label(spec: RunSpec, model_name: str) -> str:
    """What a run's progress bar says: command, model, method with its main option, token budget."""
    method = spec.method or {}
    parts = [spec.command, model_name]
    name = method.get("name")
    if name and name != "baseline" or spec.command == "eval":
        parts.append(spec.label or str(name))
    parts.append(f"budget {method.get('budget', spec.decode.max_new_tokens)}")
    return " ".join(parts)


def execute(
    spec: RunSpec,
    lm: LoadedModel | None = None,
    plugins: PluginFactory | None = None,
    record_hook: RecordHook | None = None,
    problems: list[Problem] | None = None,
    quiet: bool = False,
    chunks: Sequence[int] | None = None,
    worker: int | None = None,
    decoder: Callable[[Any, list, DecodeConfig], ChunkDecoder] | None = None,
) -> dict[str, Any]:
    """Run (or resume) `spec`; returns the summary that is also written to `summary.json`.

    Samples are decoded in fixed chunks of `spec.decode.unit` dataset indices (a batch, or with rows joining
    a window of batches); a chunk with any unfinished sample is decoded again whole, so a resumed run decodes
    exactly the schedule an uninterrupted run would, and its outputs are identical. A sample is complete
    once its result record (and, when capturing, its state shard, written first) is on disk. Shards and
    records are written by a background thread in that order (`BackgroundWriter`), so decoding goes on
    while the disk works; a chunk's records are written in index order once the whole chunk is decoded.

    Sharded execution (`reasonlens.runs.executors`): `chunks` restricts the run to those chunk numbers and
    `worker` appends results to `results.w<worker>.jsonl` instead of `results.jsonl` (which it then only
    reads), so several workers write one run directory without sharing a file; the executor merges them and
    writes the summary (a worker returns `{"worker", "n_written"}`). `decoder(lm, plugins, decode_config)`
    replaces the HF decode loop for a chunk (the vLLM engine).
    """
    spec.validate()
    if problems is None:
        problems = load_problems(spec.dataset, split=spec.split, n=spec.n, offset=spec.offset)
    n_problems = len(problems)
    problems = expand_samples(problems, spec.samples)
    if lm is None:
        lm = load(
            spec.model,
            dtype=spec.model_dtype,
            device=spec.device,
            trust_remote_code=spec.trust_remote_code,
            revision=spec.revision,
        )
    if spec.layers is not None and lm.layers is None:
        raise UserError(f"--layers: model '{spec.model}' does not support hidden-state capture")
    layers = lm.layers.resolve_many(spec.layers) if spec.layers is not None else []
    prompts = [render_prompt(p, spec.template, lm.tokenizer, spec.system) for p in problems]
    _check_prompt_lengths(lm, problems, prompts, spec)
    run = RunDir(spec.out)
    manifest = {
        "command": spec.command,
        "model": spec.model,
        "model_name": lm.name,
        "dataset": spec.dataset,
        "split": spec.split,
        "offset": spec.offset,
        "n": len(problems),
        "template": spec.template,
        "samples": spec.samples if spec.samples > 1 else None,
        "n_problems": n_problems,
        "system": spec.system,
        "decode": spec.decode.to_dict(),
        "layers": layers,
        "hidden_size": lm.hidden_size,
        "dtype": spec.dtype if layers else None,
        "model_dtype": spec.model_dtype,
        "method": spec.method,
        "grader": grader_kind(spec.dataset),
        "grader_version": _grader_version(),
        "reasonlens_version": reasonlens.__version__,
        "model_revision": spec.revision,
        "provenance": run_provenance(lm),
        **spec.extra_manifest,
    }
    # Plug-ins check their own options (token ids of suppressed words, layers) before anything is written.
    plugin_list = list(plugins(lm)) if plugins else []
    run.start(manifest, lock=worker is None)
    try:
        return _execute_started(
            spec, run, lm, problems, prompts, layers, plugin_list, record_hook, chunks, worker, decoder
        )
    finally:
        run.release_lock()


def _execute_started(
    spec: RunSpec,
    run: RunDir,
    lm: LoadedModel,
    problems: list[Problem],
    prompts: list[str],
    layers: list,
    plugin_list: list,
    record_hook: RecordHook | None,
    chunks: Sequence[int] | None,
    worker: int | None,
    decoder: Callable[[Any, list, DecodeConfig], ChunkDecoder] | None,
) -> dict[str, Any]:
    if worker is None:
        run.merge_worker_results()  # a sharded run that was cut off left its records in worker files
        done = _complete_indices(run, bool(layers))
    else:
        done = _worker_complete_indices(run, worker, bool(layers))
    kind = grader_kind(spec.dataset)

    def sink(row, tensors):
        index = int(row.key)
        if index in done:
            return
        metadata = {"id": problems[index].id, "index": str(index), "layers": ",".join(map(str, layers))}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        writer.submit(lambda: run.write_states(index, tensors, metadata), size)

    if layers:
        plugin_list.append(HiddenStateCapture(layers, sink, DTYPES[spec.dtype]))

    from reasonlens.eval import Grader

    selected = None if chunks is None else set(chunks)
    todo = [
        c
        for k, c in enumerate(chunk_indices(len(problems), spec.decode.unit))
        if (selected is None or k in selected) and not all(i in done for i in c)
    ]
    if decoder is not None:
        decode_chunk = decoder(lm, plugin_list, spec.decode)
    else:

        def decode_chunk(chunk_prompts, keys, seeds, progress):
            return decode_batch(lm, chunk_prompts, spec.decode, plugin_list, keys=keys, seeds=seeds, progress=progress)

    tokens_done = 0
    started = time.perf_counter()
    appender_cm = run.appender() if worker is None else CheckedAppender(run.worker_results_path(worker))
    # Exit order matters: the writer drains (shards, then their records) before the appender closes.
    with (
        Grader() as grader,
        appender_cm as appender,
        BackgroundWriter(max_jobs=max(16, 2 * spec.decode.batch_size)) as writer,
        progress_bar() as bar,
    ):
        task = bar.add_task(progress_label(spec, lm.name), total=len(problems), completed=len(done), info="")

        def on_step(active: int) -> None:
            nonlocal tokens_done
            tokens_done += active
            rate = tokens_done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, info=f"{rate:,.0f} tok/s")

        for chunk in todo:
            generations = decode_chunk(
                [prompts[i] for i in chunk], list(chunk), [spec.decode.seed + i for i in chunk], on_step
            )
            records = []
            for gen in generations:
                index = int(gen.key)
                if index in done:
                    continue
                record = _record(gen, problems[index], prompts[index], lm, grader, kind)
                if record_hook is not None:
                    record_hook(gen, record)
                records.append(record)
            writer.submit(lambda records=records: appender.append(records))  # after the chunk's shards
            done.update(r["index"] for r in records)
            bar.update(task, completed=len(done))
    if worker is not None:
        return {"worker": worker, "n_written": sum(1 for _ in iter_records(run.worker_results_path(worker)))}
    summary = summarize(run, spec, lm.name)
    run.write_summary(summary)
    return summary


def _grader_version() -> str:
    from reasonlens.eval.grade import GRADER_VERSION

    return GRADER_VERSION


def _worker_complete_indices(run: RunDir, worker: int, needs_states: bool) -> set[int]:
    """Like `_complete_indices` without rewriting shared files: results.jsonl plus this worker's own file."""
    records = list(iter_records(run.results_path)) + list(iter_records(run.worker_results_path(worker)))
    return {
        r["index"]
        for r in records
        if isinstance(r.get("index"), int) and (not needs_states or run.has_states(r["index"]))
    }


def _check_prompt_lengths(lm: LoadedModel, problems: list[Problem], prompts: list[str], spec: RunSpec) -> None:
    """A prompt longer than a learned position table (GPT-2 style) is a bad input, not an IndexError mid-run.

    Rotary models (a `rope_parameters` / `rope_theta` config) have no table to overrun and are not limited here.
    """
    config = getattr(lm.model, "config", None)
    if getattr(config, "rope_parameters", None) is not None or getattr(config, "rope_theta", None) is not None:
        return
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(limit, int) or limit <= 0:
        return
    budget = spec.decode.max_new_tokens
    for problem, prompt in zip(problems, prompts):
        n_tokens = len(lm.tokenizer(prompt, add_special_tokens=spec.decode.add_special_tokens)["input_ids"])
        if n_tokens > limit:
            raise UserError(
                f"--dataset {spec.dataset}: problem '{problem.id}' has a {n_tokens}-token prompt, longer "
                f"than the {limit} positions of model '{spec.model}'"
            )
        if n_tokens + budget > limit:
            raise UserError(
                f"--max-new-tokens {budget}: problem '{problem.id}' has a {n_tokens}-token prompt, so "
                f"generation would run past the {limit} positions of model '{spec.model}'; allow at most "
                f"{limit - n_tokens} new tokens"
            )


def _complete_indices(run: RunDir, needs_states: bool) -> set[int]:
    """Indices with a result (and a shard when capturing); results whose shard vanished are dropped to be redone."""
    results = {r["index"] for r in run.results()}
    orphans = {i for i in results if needs_states and not run.has_states(i)}
    if orphans:
        run.drop_results(orphans)
    return results - orphans


def _record(gen: Generation, problem: Problem, prompt: str, lm: LoadedModel, grader, kind: str) -> dict[str, Any]:
    failure = next((e["type"] for e in gen.events if e.get("type") in ("nonfinite_logits", "nonfinite_state")), None)
    record: dict[str, Any] = {
        "index": int(gen.key),
        "id": problem.id,
        "prompt": prompt,
        "completion": gen.text,
        "gold": problem.answer,
        "n_tokens": gen.n_tokens,
        "n_forced": gen.n_forced,
        "seconds": round(gen.seconds, 4),
        "stop_reason": gen.stop_reason,
    }
    if failure is not None:
        record.update(extracted=None, correct=None, status="failed", error=f"{failure.replace('_', ' ')} detected")
    else:
        grade = grader.grade(gen.text, problem.answer, kind=kind)
        record.update(
            extracted=grade.extracted,
            correct=grade.correct,
            status={"ok": "ok", "no_answer": "ok"}.get(grade.status, grade.status),
            error=grade.reason,
        )
    if "sample" in problem.meta:
        record.update(problem_id=problem.meta["problem_id"], sample=problem.meta["sample"])
    if gen.events:
        record["events"] = gen.events
    return record


def summarize(run: RunDir, spec: RunSpec | None = None, model_name: str | None = None) -> dict[str, Any]:
    """Accuracy with its Wilson 95% CI, counts and throughput, from the results on disk."""
    from reasonlens.eval import proportion_ci

    results = run.results()
    graded = [r for r in results if r.get("status") == "ok"]
    # Failed and ungradable samples count as incorrect: an output that breaks the grader must not raise accuracy.
    correct = [1.0 if r.get("correct") else 0.0 for r in results]
    n_correct = int(sum(correct))
    accuracy, lo, hi = proportion_ci(correct) if correct else (0.0, 0.0, 1.0)
    tokens = sum(int(r.get("n_tokens", 0)) for r in results)
    seconds = sum(float(r.get("seconds", 0.0)) for r in results)
    manifest = run.manifest
    return {
        "command": manifest.get("command"),
        "model": manifest.get("model"),
        "dataset": manifest.get("dataset"),
        "template": manifest.get("template"),
        "method": manifest.get("method"),
        "n": len(results),
        "n_expected": manifest.get("n"),
        "n_graded": len(graded),
        "n_correct": n_correct,
        "accuracy": accuracy,
        "accuracy_ci95": [lo, hi],
        "accuracy_ci_method": "wilson",
        "accuracy_graded": n_correct / len(graded) if graded else 0.0,
        "n_failed": sum(r.get("status") == "failed" for r in results),
        "n_ungradable": sum(r.get("status") == "ungradable" for r in results),
        "total_tokens": tokens,
        "mean_tokens": tokens / len(results) if results else 0.0,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        **_multi_sample(results, manifest),
    }


def _multi_sample(results: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any]:
    """pass@k, maj@k and the mean over samples with a CI over problems, when the run drew several samples."""
    from reasonlens.eval.stats import multi_sample_summary

    if not manifest.get("samples") or not results:
        return {}
    groups: dict[str, list[tuple[str | None, bool]]] = {}
    for r in sorted(results, key=lambda r: r["index"]):
        groups.setdefault(str(r.get("problem_id", r.get("id"))), []).append(
            (r.get("extracted"), bool(r.get("correct")))
        )
    out = multi_sample_summary(list(groups.values()))
    # samples of one problem are not independent: the accuracy's CI resamples problems, not samples
    return {**out, "accuracy_ci95": out["mean_accuracy_ci95"], "accuracy_ci_method": out["mean_accuracy_ci_method"]}
