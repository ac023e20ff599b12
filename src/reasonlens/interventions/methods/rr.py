"""`rr`: Representation Recycling (SPEC A6) - a decoder layer re-run on the hidden state of trigger tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.interventions.methods.words import chosen_token_set, identity_token_ids, resolve_token_ids
from reasonlens.interventions.recycle import RepresentationRecycling, default_layer
from reasonlens.interventions.registry import Method, ResolvedMethod, register_method


@dataclass
class RecycleOptions:
    words: list[str] | None = None  # trigger words (overrides token_set)
    token_set: Path | None = None
    token_set_dataset: str | None = None
    token_set_split: str | None = None
    k: int | None = None  # top-k words of the set
    seed: int = 0  # recycling draws
    split_starts: bool = False
    layer: int | None = None  # decoder layer (default floor(2L/3)); negative counts from the end
    p: float = 1.0  # recycling probability
    repeats: int = 1  # extra applications of the layer


@register_method("rr", "Representation Recycling: layer re-run on trigger tokens")
class Recycle(Method):
    options_type = RecycleOptions
    engines = ("hf",)  # needs the model's layers
    token_action = "triggers"

    def resolve(self, lm, options: RecycleOptions, dataset: str, split: str) -> ResolvedMethod:
        warnings: list[str] = []
        provenance: dict[str, Any] = {}
        token_set = chosen_token_set(options, dataset, split, provenance, warnings)
        # Checked here, before the run directory exists (the plugin checks again when it is built).
        if not 0.0 <= options.p <= 1.0:
            raise UserError(f"--p must be in [0, 1], got {options.p}")
        if options.repeats < 1:
            raise UserError(f"--repeats must be >= 1, got {options.repeats}")
        if lm.layers is None:
            raise UserError(f"--method rr: model '{lm.name}' has no decoder layer stack to recycle")
        num_layers = lm.layers.num_layers
        layer = default_layer(num_layers) if options.layer is None else options.layer
        if layer < 0:
            layer += num_layers
        if not 0 <= layer < num_layers:
            raise UserError(f"--rr-layer {options.layer}: model has {num_layers} decoder layers")
        identity = {
            "name": self.name,
            "words": list(token_set.words),
            "layer": layer,
            "p": options.p,
            "repeats": options.repeats,
            "seed": options.seed,
        }
        entries = resolve_token_ids(lm, identity["words"], options.split_starts, identity, provenance, warnings)
        return ResolvedMethod(identity, provenance, warnings, entries)

    def build(self, lm, identity, budget=None) -> list:
        triggers = identity_token_ids(lm, identity)
        return [
            RepresentationRecycling(
                triggers, layer=identity["layer"], p=identity["p"], repeats=identity["repeats"], seed=identity["seed"]
            )
        ]

    def label_details(self, identity) -> list[str]:
        details = [f"layer {identity.get('layer')}"]
        if identity.get("p", 1.0) != 1.0:
            details.append(f"p={identity.get('p')}")
        return details
