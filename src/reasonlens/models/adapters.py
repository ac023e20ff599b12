"""A uniform view of a causal LM's layer stack, whatever its family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from torch import nn

from reasonlens.errors import UserError

LayerKey = Union[int, str]  # a decoder layer index (>= 0) or "final" (after the final norm)

# (decoder layer list, final norm) attribute paths per family, relative to the CausalLM module.
_FAMILY_PATHS: dict[str, tuple[str, str]] = {
    "llama": ("model.layers", "model.norm"),
    "qwen2": ("model.layers", "model.norm"),
    "qwen3": ("model.layers", "model.norm"),
    "mistral": ("model.layers", "model.norm"),
    "gemma": ("model.layers", "model.norm"),
    "gemma2": ("model.layers", "model.norm"),
    "phi3": ("model.layers", "model.norm"),
    "phi": ("model.layers", "model.final_layernorm"),
    "gpt2": ("transformer.h", "transformer.ln_f"),
}


def _get(module: nn.Module, path: str) -> nn.Module | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@dataclass
class LayerAdapter:
    """Decoder layers, final norm and LM head of a model, with layer-index resolution."""

    decoder_layers: nn.ModuleList
    final_norm: nn.Module
    lm_head: nn.Module
    hidden_size: int
    family: str

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    def resolve(self, layer: LayerKey) -> LayerKey:
        """Map a user layer spec (int, negative int, "final", or its string form) to an index or "final"."""
        if isinstance(layer, str):
            text = layer.strip().lower()
            if text == "final":
                return "final"
            try:
                layer = int(text)
            except ValueError:
                raise UserError(f"invalid layer '{layer}' (an integer index or 'final')") from None
        index = layer + self.num_layers if layer < 0 else layer
        if not 0 <= index < self.num_layers:
            raise UserError(f"invalid layer {layer}: the model has {self.num_layers} decoder layers "
                            f"(valid: {-self.num_layers}..{self.num_layers - 1} or 'final')")
        return index

    def resolve_many(self, layers: str | list[LayerKey] | None) -> list[LayerKey]:
        """Resolve a comma-separated string or list; the default is the last decoder layer."""
        if layers is None or layers == "" or layers == []:
            return [self.num_layers - 1]
        items = layers.split(",") if isinstance(layers, str) else list(layers)
        resolved: list[LayerKey] = []
        for item in items:
            key = self.resolve(item)
            if key not in resolved:
                resolved.append(key)
        return resolved


def adapter_for(model: nn.Module) -> LayerAdapter:
    """Find the layer stack of a Hugging Face causal LM (Llama, Qwen2/3, Mistral, Gemma, Phi, GPT-2 and look-alikes)."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    candidates = [_FAMILY_PATHS[model_type]] if model_type in _FAMILY_PATHS else []
    candidates += [p for p in _FAMILY_PATHS.values() if p not in candidates]
    for layers_path, norm_path in candidates:
        layers, norm = _get(model, layers_path), _get(model, norm_path)
        if isinstance(layers, nn.ModuleList) and norm is not None:
            head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
            if head is None:
                head = getattr(model, "lm_head", None)
            if head is None:
                break
            hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd")
            return LayerAdapter(layers, norm, head, int(hidden), model_type or "unknown")
    raise UserError(f"unsupported model architecture '{type(model).__name__}' (no decoder layer list found)")
