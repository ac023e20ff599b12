"""A uniform view of a causal LM's layer stack, whatever its family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from torch import nn

from reasonlens.errors import UserError

# A decoder layer index k >= 0 (the output of block k, i.e. Hugging Face `hidden_states[k + 1]`), "embed" (the
# input of block 0 = `hidden_states[0]`, the token embeddings) or "final" (after the final norm).
LayerKey = Union[int, str]
LAYER_SPEC_HELP = "indices (negative ok), ranges 10-20, 'all', 'embed', 'final', comma-separated"

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
        """Map a user layer spec (int, negative int, "embed", "final", or its string form) to a layer key."""
        if isinstance(layer, str):
            text = layer.strip().lower()
            if text in ("final", "embed"):
                return text
            try:
                layer = int(text)
            except ValueError:
                raise UserError(f"invalid layer '{layer}' ({LAYER_SPEC_HELP})") from None
        index = layer + self.num_layers if layer < 0 else layer
        if not 0 <= index < self.num_layers:
            raise UserError(
                f"invalid layer {layer}: the model has {self.num_layers} decoder layers "
                f"(valid: {-self.num_layers}..{self.num_layers - 1} or 'final')"
            )
        return index

    def resolve_many(self, layers: str | list[LayerKey] | None) -> list[LayerKey]:
        """Resolve a comma-separated string or list; the default is the last decoder layer.

        `all` is every decoder layer 0..L-1; `a-b` (or `a:b`) the decoder layers a..b inclusive (negative ends
        count from the last layer, e.g. `-4:-1`).
        """
        if layers is None or layers == "" or layers == []:
            return [self.num_layers - 1]
        items = layers.split(",") if isinstance(layers, str) else list(layers)
        resolved: list[LayerKey] = []
        for item in items:
            for key in self._expand(item):
                if key not in resolved:
                    resolved.append(key)
        return resolved

    def _expand(self, item: LayerKey) -> list[LayerKey]:
        if not isinstance(item, str):
            return [self.resolve(item)]
        text = item.strip().lower()
        if text == "all":
            return list(range(self.num_layers))
        # "a:b" allows negative ends; "a-b" is split after the first character so "-3" stays a number
        if ":" in text:
            start, _, stop = text.partition(":")
        elif "-" in text[1:]:
            head, _, stop = text[1:].partition("-")
            start = text[0] + head
        else:
            return [self.resolve(text)]
        first, last = self.resolve(start), self.resolve(stop)
        if not isinstance(first, int) or not isinstance(last, int) or first > last:
            raise UserError(f"invalid layer range '{item}' (e.g. 10-20 or -4:-1; {LAYER_SPEC_HELP})")
        return list(range(first, last + 1))


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
