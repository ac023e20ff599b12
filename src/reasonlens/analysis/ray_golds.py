"""Gold encoding of `reasonlens mi` on Ray replicas (`mi --executor ray`).

Gold encoding is the model-bound part of the MI analysis; the trajectory pass that follows streams the shards
on the driver and reuses `RUN/mi/golds.safetensors` written here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonlens.analysis.pipeline import check_shards, layer_keys, load_samples
from reasonlens.analysis.stages import layer_arg
from reasonlens.errors import UserError
from reasonlens.runs.executors import RayExecutor, shard_chunks
from reasonlens.runs.rundir import RunDir, read_golds, write_golds


def prepare_golds(run_path: str | Path, config, executor: RayExecutor) -> int:
    """Encode the MI analysis's missing gold representations on the Ray replicas (one per worker) into
    `RUN/mi/golds.safetensors`, which `analyze_run` then reuses; returns how many samples were encoded.

    Gold encoding is the model-bound part of `reasonlens mi`; the trajectory pass that follows streams the
    shards on the driver. Samples are shared round robin; a cut-off encoding keeps what finished.
    """
    run = RunDir(Path(run_path).resolve())
    manifest = run.open_run()
    layers = layer_keys(manifest, config.layers)
    samples = load_samples(run, manifest, config)
    spec = config.gold.model or str(manifest.get("model"))
    identity = config.gold.identity(spec)
    widths = check_shards(run, samples, layers)
    golds = read_golds(run.golds_path, identity, [s.index for s in samples], layers)
    missing = [s for s in samples if s.index not in golds]
    if not missing:
        return 0
    actors = executor.actors(spec, "fp32", config.gold.device, False)
    shares = shard_chunks(list(range(len(missing))), len(actors))
    layer_args = [layer_arg(k) for k in layers]
    refs = [
        actor.encode_golds.remote(
            [(missing[i].index, missing[i].gold_text) for i in share], layer_args, config.gold.pooling
        )
        for actor, share in zip(actors, shares)
        if share
    ]
    try:
        for part in executor.gather(refs):  # each worker's share as it finishes: a failure keeps the others' work
            for name, tensor in part.items():
                index, key = name.split(".", 1)
                golds.setdefault(int(index), {})[key] = tensor
    finally:
        mismatch = _gold_width_mismatch(golds, widths)
        if golds and mismatch is None:  # golds of another width must never land in RUN/mi
            write_golds(run.golds_path, golds, identity)
    if mismatch is not None:
        key, width, gold_width = mismatch
        raise UserError(
            f"{run.state_path(samples[0].index)}: layer.{key} states have hidden size {width}, but model "
            f"{spec!r} has hidden size {gold_width}; analyse with the model that generated the run (--model)"
        )
    return len(missing)


def _gold_width_mismatch(golds: dict[int, dict[str, Any]], widths: dict[str, int]) -> tuple[str, int, int] | None:
    """(layer, state width, gold width) of the first gold whose width differs from the run's states, else None."""
    for by_layer in golds.values():
        for key, tensor in by_layer.items():
            if key in widths and int(tensor.shape[-1]) != widths[key]:
                return key, widths[key], int(tensor.shape[-1])
    return None
