"""Executors: where the chunks of a run are decoded — in this process, or sharded over Ray workers.

A run is a list of fixed chunks of `DecodeConfig.unit` dataset indices (`runner.chunk_indices`). The Ray executor
keeps one model replica per worker (a Ray actor) and hands each worker a deterministic share of the
unfinished chunks (round robin: chunk k goes to worker k mod W). Workers write state shards straight into
the run's `states/` (one file per sample, never shared) and append results to their own checksummed file
`results.w<k>.jsonl`, so no two processes ever write the same file and no lock is needed. When the workers
are done (or one fails, or the driver is interrupted) the worker files are merged into `results.jsonl`
(one record per index, sorted; atomic replace) and deleted. A cut-off run resumes like a local one: the
merge runs first, then only unfinished chunks are handed out. Because a chunk is decoded with the same
batch composition and seeds wherever it runs, greedy results equal those of the single-process run.

Scheduling, placement, retries of dead processes and multi-node transport are Ray's. Multi-node runs need
`--out` on storage every node sees (NFS, a shared volume): workers write there directly.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from reasonlens.engines import EngineSpec, load_engine_model
from reasonlens.errors import UserError
from reasonlens.runs.progress import progress_bar
from reasonlens.runs.rundir import RunDir
from reasonlens.runs.runner import (
    PluginFactory,
    RecordHook,
    RunSpec,
    _complete_indices,
    chunk_indices,
    execute,
    summarize,
)

EXECUTORS = ("local", "ray")


def shard_chunks(chunk_ids: Sequence[int], workers: int) -> list[list[int]]:
    """Deterministic round-robin shares: worker w gets chunks w, w + W, w + 2W, ... of `chunk_ids`.

    Round robin rather than contiguous blocks so that a dataset sorted by difficulty (long traces at one
    end) still gives every worker a similar amount of work.
    """
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    return [list(chunk_ids[w::workers]) for w in range(workers)]


def pending_chunks(run: RunDir, n_problems: int, unit: int) -> list[int]:
    """Chunk numbers with at least one unfinished sample (after merging worker files and dropping orphans);
    `unit` is the run's `DecodeConfig.unit`."""
    if not run.exists():
        return list(range(len(chunk_indices(n_problems, unit))))
    run.merge_worker_results()
    done = _complete_indices(run, bool(run.manifest.get("layers")))
    return [k for k, chunk in enumerate(chunk_indices(n_problems, unit)) if not all(i in done for i in chunk)]


# -- executors ------------------------------------------------------------------------------------------------


class LocalExecutor:
    """Everything in this process (the default). One model replica, cached across `run` calls."""

    def __init__(self, engine: EngineSpec = EngineSpec()):
        self.engine = engine.validate()
        self._handles: dict[tuple, tuple[Any, Callable | None]] = {}

    def _handle(
        self, model: str, dtype: str, device: str, trust_remote_code: bool, revision: str | None = None
    ) -> tuple[Any, Callable | None]:
        key = (model, dtype, device, trust_remote_code, revision)
        if key not in self._handles:
            self._handles[key] = load_engine_model(self.engine, model, dtype, device, trust_remote_code, revision)
        return self._handles[key]

    def driver_model(
        self,
        model: str,
        dtype: str = "fp32",
        device: str = "cpu",
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        """The model the caller may use to resolve options (tokenizer, layer count); the one `run` decodes with."""
        return self._handle(model, dtype, device, trust_remote_code, revision)[0]

    def run(
        self,
        spec: RunSpec,
        lm=None,
        plugins: PluginFactory | None = None,
        record_hook: RecordHook | None = None,
        problems=None,
        quiet: bool = False,
    ) -> dict[str, Any]:
        spec = tag_engine(spec, self.engine)
        if self.engine.name == "hf" and lm is not None:
            return execute(spec, lm=lm, plugins=plugins, record_hook=record_hook, problems=problems, quiet=quiet)
        handle, decoder = self._handle(spec.model, spec.model_dtype, spec.device, spec.trust_remote_code, spec.revision)
        return execute(
            spec, lm=handle, plugins=plugins, record_hook=record_hook, problems=problems, quiet=quiet, decoder=decoder
        )

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class RayConfig:
    """Ray cluster settings. `address=None` starts a local cluster; "auto" or "ray://host:10001" joins one."""

    address: str | None = None
    workers: int | None = None  # model replicas; default: the cluster's GPUs (cuda) or CPUs / cpus_per_worker
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # default: tensor_parallel_size on cuda, 0 on cpu


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'reasonlens[ray]'") from None
    return ray


class _Replica:
    """One model replica inside a Ray actor: decodes the chunks it is given into the shared run directory."""

    def __init__(
        self,
        worker: int,
        engine: EngineSpec,
        model: str,
        dtype: str,
        device: str,
        trust_remote_code: bool,
        threads: int,
    ):
        import torch

        torch.set_num_threads(max(1, threads))
        self.worker = worker
        # Ray exposes only this actor's GPUs, so any "cuda:<i>" the user named is this replica's "cuda".
        self.device = "cuda" if device.startswith("cuda") else device
        self.lm, self.decoder = load_engine_model(engine, model, dtype, self.device, trust_remote_code)

    def run(self, spec: RunSpec, chunks: list[int], plugins, record_hook, problems) -> dict[str, Any]:
        spec = replace(spec, device=self.device)
        return execute(
            spec,
            lm=self.lm,
            plugins=plugins,
            record_hook=record_hook,
            problems=problems,
            quiet=True,
            chunks=chunks,
            worker=self.worker,
            decoder=self.decoder,
        )

    def encode_golds(self, items: list[tuple[int, str]], layers: list, pooling: str) -> dict[str, Any]:
        from reasonlens.models import encode_gold

        out = {}
        for index, text in items:
            for key, value in encode_gold(self.lm, text, layers, pooling=pooling).items():
                out[f"{index}.{key}"] = value.float().contiguous()
        return out

    def ping(self) -> int:
        return os.getpid()


class RayExecutor:
    """Shards runs over Ray actors, one model replica each (kept across `run` calls, e.g. eval budgets)."""

    def __init__(self, config: RayConfig = RayConfig(), engine: EngineSpec = EngineSpec()):
        self.config = config
        self.engine = engine.validate()
        self._ray = _import_ray()
        self._started_ray = False
        self._actors: list = []
        self._actor_key: tuple | None = None
        if config.workers is not None and config.workers < 1:
            raise UserError(f"--workers must be >= 1, got {config.workers}")

    # The driver never needs a GPU: it shards, merges and summarises.
    def driver_model(
        self,
        model: str,
        dtype: str = "fp32",
        device: str = "cpu",
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        if self.engine.name == "vllm":
            from reasonlens.engines.vllm_engine import tokenizer_only_model

            return tokenizer_only_model(model, trust_remote_code)
        from reasonlens.models import load

        return load(model, dtype=dtype, device="cpu", trust_remote_code=trust_remote_code)

    def _init_ray(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        # Ray's INFO/WARNING lines (token setup, "Started a local Ray instance") are noise in our console
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if self.config.address is None and self.config.workers is not None:
            kwargs["num_cpus"] = max(1, math.ceil(self.config.workers * self.config.cpus_per_worker))
        try:
            ray.init(address=self.config.address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(
                f"--ray-address {self.config.address}: cannot join the Ray cluster ({str(exc).splitlines()[0][:120]})"
            ) from None
        self._started_ray = True

    def _gpus_per_worker(self, device: str) -> float:
        if self.config.gpus_per_worker is not None:
            return self.config.gpus_per_worker
        return float(self.engine.tensor_parallel_size) if device.startswith("cuda") else 0.0

    def _n_workers(self, device: str) -> int:
        if self.config.workers is not None:
            return self.config.workers
        resources = self._ray.cluster_resources()
        gpus = self._gpus_per_worker(device)
        if gpus > 0:
            n = int(resources.get("GPU", 0) // gpus)
            if n < 1:
                raise UserError(f"--device {device}: the Ray cluster has no free GPU for a worker")
            return n
        return max(1, int(resources.get("CPU", 1) // self.config.cpus_per_worker))

    def actors(self, model: str, dtype: str, device: str, trust_remote_code: bool) -> list:
        """The replicas for this model, started (and loaded) once."""
        key = (model, dtype, device, trust_remote_code)
        if self._actors and self._actor_key == key:
            return self._actors
        self._kill_actors()
        self._init_ray()
        n = self._n_workers(device)
        gpus = self._gpus_per_worker(device)
        remote = self._ray.remote(_Replica).options(num_cpus=self.config.cpus_per_worker, num_gpus=gpus)
        threads = max(1, int(self.config.cpus_per_worker))
        self._actors = [
            remote.remote(w, self.engine, model, dtype, device, trust_remote_code, threads) for w in range(n)
        ]
        self._actor_key = key
        self._get([a.ping.remote() for a in self._actors])  # surface load errors here, once
        return self._actors

    def gather(self, refs) -> Iterator[Any]:
        """The result of each of `refs` as it finishes (so a failure keeps what finished before it)."""
        waiting = list(refs)
        while waiting:
            ready, waiting = self._ray.wait(waiting, num_returns=1)
            yield self._get(ready[0])

    def _get(self, refs):
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(str(cause)) from None
            raise
        except self._ray.exceptions.RayActorError as exc:
            cause = getattr(exc, "cause", None)  # an actor whose __init__ raised
            if isinstance(cause, UserError) or (
                cause is not None and isinstance(getattr(cause, "cause", None), UserError)
            ):
                inner = cause if isinstance(cause, UserError) else cause.cause
                raise UserError(str(inner)) from None
            raise

    def run(
        self,
        spec: RunSpec,
        lm=None,
        plugins: PluginFactory | None = None,
        record_hook: RecordHook | None = None,
        problems=None,
        quiet: bool = False,
    ) -> dict[str, Any]:
        """Run (or resume) `spec` over the workers; `lm` is ignored (every worker loads its own replica)."""
        from reasonlens.data import load_problems

        spec = tag_engine(replace(spec, out=Path(spec.out).resolve()), self.engine).validate()
        if spec.revision:
            raise UserError("--revision is not supported with --executor ray yet; pass a local snapshot directory")
        if spec.samples > 1:
            raise UserError("--samples > 1 is not supported with --executor ray yet; use --executor local")
        if problems is None:
            problems = load_problems(spec.dataset, split=spec.split, n=spec.n, offset=spec.offset)
        run = RunDir(spec.out)
        if run.exists():
            run.start({**run.manifest, **_identity_of(spec, run.manifest)})  # a different spec is refused here
        pending = pending_chunks(run, len(problems), spec.decode.unit)
        actors = self.actors(spec.model, spec.model_dtype, spec.device, spec.trust_remote_code)
        shares = shard_chunks(pending, len(actors))
        done_before = len(run.results()) if run.exists() else 0
        refs = [
            actor.run.remote(spec, share, plugins, record_hook, problems)
            for actor, share in zip(actors, shares)
            if share
        ]
        try:
            with progress_bar(transient=quiet) as bar:
                task = bar.add_task(
                    f"{spec.command} x{len(actors)} workers", total=len(problems), completed=done_before, info=""
                )
                waiting = list(refs)
                while waiting:
                    _, waiting = self._ray.wait(waiting, num_returns=len(waiting), timeout=0.5)
                    bar.update(task, completed=done_before + _count_worker_records(run))
                self._get(refs)
        finally:
            run.merge_worker_results()
        summary = summarize(run, spec, run.manifest.get("model_name"))
        run.write_summary(summary)
        return summary

    def _kill_actors(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors, self._actor_key = [], None

    def close(self) -> None:
        if self._ray.is_initialized():
            self._kill_actors()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _identity_of(spec: RunSpec, manifest: dict[str, Any]) -> dict[str, Any]:
    """The identity fields a worker's manifest would have, from the spec (fields needing the model come from
    the existing manifest), so the driver refuses a mismatching resume before starting any replica."""
    from reasonlens.runs.rundir import IDENTITY_FIELDS

    values = {
        "command": spec.command,
        "model": spec.model,
        "dataset": spec.dataset,
        "split": spec.split,
        "offset": spec.offset,
        "template": spec.template,
        "system": spec.system,
        "decode": spec.decode.to_dict(),
        "model_dtype": spec.model_dtype,
        "method": spec.method,
        "model_revision": spec.revision,
        "samples": spec.samples if spec.samples > 1 else None,
    }
    return {k: values[k] for k in IDENTITY_FIELDS if k in values}


def _count_worker_records(run: RunDir) -> int:
    total = 0
    for path in run.worker_result_files():
        try:
            total += path.read_bytes().count(b"\n")
        except FileNotFoundError:  # merged away meanwhile
            pass
    return total


def tag_engine(spec: RunSpec, engine: EngineSpec) -> RunSpec:
    """Runs decoded by vLLM carry `"engine": "vllm"` in their method identity (so an HF run is never resumed
    with vLLM outputs or the reverse); HF runs keep the method dict they always had."""
    if engine.name == "hf" or spec.method.get("engine") == engine.name:
        return spec
    return replace(
        spec,
        method={**spec.method, "engine": engine.name},
        extra_manifest={
            **spec.extra_manifest,
            "engine": {"name": engine.name, "tensor_parallel_size": engine.tensor_parallel_size},
        },
    )


def make_executor(
    kind: str = "local", workers: int | None = None, address: str | None = None, engine: EngineSpec = EngineSpec()
):
    """The executor the CLI options name (`--executor`, `--workers`, `--ray-address`, `--engine`)."""
    if kind not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "local":
        if address is not None:
            raise UserError("--ray-address needs --executor ray")
        if workers not in (None, 1):
            raise UserError("--workers needs --executor ray (the local executor is one process)")
        return LocalExecutor(engine)
    return RayExecutor(RayConfig(address=address, workers=workers), engine)
