"""`steer`: add a vector to the output of one decoder layer at every position (activation steering).

The vector is a safetensors file holding one tensor `vector` [d] (e.g. a difference of mean states between two
prompt sets, saved with `safetensors.torch.save_file({"vector": v}, path)`). Options through `--set`:
`vector=PATH` (required), `layer=L` (negative counts from the end; `--rr-layer` sets it too), `scale=S`.
The run's identity records the file's sha256, so a resumed run with another vector is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from reasonlens.errors import UserError
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method
from reasonlens.interventions.steering import Steering


@dataclass
class SteerOptions:
    vector: Path | None = None  # safetensors file with a tensor "vector" [d]
    layer: int | None = None  # decoder layer whose output is steered (default: the middle layer)
    scale: float = 1.0  # the vector is multiplied by this


def load_vector(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise UserError(f"--set vector: cannot read {path} as safetensors ({error})") from None
    if "vector" not in tensors or tensors["vector"].dim() != 1:
        raise UserError(f"--set vector: {path} must hold one-dimensional tensor 'vector' [d]")
    return tensors["vector"]


@register_method("steer", "activation steering: add a vector to one decoder layer's output")
class Steer(Method):
    options_type = SteerOptions
    token_action = "steering"

    def resolve(self, lm, options: SteerOptions, dataset: str, split: str) -> ResolvedMethod:
        if options.vector is None:
            raise UserError("--method steer needs --set vector=PATH (a safetensors file with tensor 'vector' [d])")
        path = Path(options.vector).expanduser()
        vector = load_vector(path)
        if lm.layers is None:
            raise UserError(f"--method steer: model '{lm.name}' has no decoder layer stack to steer")
        if vector.shape[0] != lm.layers.hidden_size:
            raise UserError(
                f"--set vector: {path} has {vector.shape[0]} dims, the model's states have {lm.layers.hidden_size}"
            )
        layer = lm.layers.num_layers // 2 if options.layer is None else lm.layers.resolve(options.layer)
        identity = {
            "name": self.name,
            "vector": str(path),
            "vector_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "layer": layer,
            "scale": float(options.scale),
        }
        return ResolvedMethod(identity, {}, [])

    def build(self, lm, identity, budget=None) -> list:
        vector = load_vector(Path(identity["vector"]))
        return [Steering(identity["layer"], vector, scale=identity["scale"])]

    def label_details(self, identity) -> list[str]:
        return [f"layer {identity.get('layer')}", f"x{identity.get('scale')}"]
