"""Gold encoding of `reasonlens mi` on Ray replicas (`mi --executor ray`).

Gold encoding is the model-bound part of the MI analysis; the trajectory pass that follows streams the shards
on the driver and reuses `RUN/mi/golds.safetensors` written here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from reasonlens.analysis.pipeline import _layer_arg, _layer_keys, _samples, check_shards, mi_dir
from reasonlens.errors import UserError
from reasonlens.runs.executors import RayExecutor, shard_chunks
from reasonlens.runs.io import make_shared
from reasonlens.runs.rundir import RunDir


def prepare_golds(run_path: str | Path, config, executor: RayExecutor) -> int:
    """Encode the MI analysis's missing gold representations on the Ray replicas (one per worker) into
    `RUN/mi/golds.safetensors`, which `analyze_run` then reuses; returns how many samples were encoded.

    Gold encoding is the model-bound part of `reasonlens mi`; the trajectory pass that follows streams the
    shards on the driver. Samples are shared round robin; a cut-off encoding keeps what finished.
    """
    run = RunDir(Path(run_path).resolve())
    manifest = run.open_run()
    layers = _layer_keys(manifest, config.layers)
    samples = _samples(run, manifest, config)
    spec = config.model or str(manifest.get("model"))
    identity = config.gold_identity(spec)
    widths = check_shards(run, samples, layers)
    out_dir = mi_dir(run.path)
    path = out_dir / "golds.safetensors"
    tensors: dict[str, Any] = {}
    if path.is_file():
        with safe_open(path, framework="pt") as handle:
            if all((handle.metadata() or {}).get(k) == v for k, v in identity.items()):
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    missing = [s for s in samples if not all(f"{s.index}.{k}" in tensors for k in layers)]
    if not missing:
        return 0
    actors = executor.actors(spec, "fp32", config.device, False)
    shares = shard_chunks(list(range(len(missing))), len(actors))
    layer_args = [_layer_arg(k) for k in layers]
    refs = [
        actor.encode_golds.remote(
            [(missing[i].index, missing[i].gold_text) for i in share], layer_args, config.gold_pooling
        )
        for actor, share in zip(actors, shares)
        if share
    ]
    try:
        for part in executor.gather(refs):  # each worker's share as it finishes: a failure keeps the others' work
            tensors.update(part)
    finally:
        mismatch = _gold_width_mismatch(tensors, widths)
        if tensors and mismatch is None:  # golds of another width must never land in RUN/mi
            out_dir.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(path) + ".tmp", metadata=identity)
            make_shared(Path(str(path) + ".tmp")).replace(path)
    if mismatch is not None:
        key, width, gold_width = mismatch
        raise UserError(
            f"{run.state_path(samples[0].index)}: layer.{key} states have hidden size {width}, but model "
            f"{spec!r} has hidden size {gold_width}; analyse with the model that generated the run (--model)"
        )
    return len(missing)


def _gold_width_mismatch(tensors: dict[str, Any], widths: dict[str, int]) -> tuple[str, int, int] | None:
    """(layer, state width, gold width) of the first gold whose width differs from the run's states, else None."""
    for name, tensor in tensors.items():
        key = name.split(".", 1)[1]
        if key in widths and int(tensor.shape[-1]) != widths[key]:
            return key, widths[key], int(tensor.shape[-1])
    return None
