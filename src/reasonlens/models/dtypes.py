"""The one table of dtype names and the device check shared by the API and every command."""

from __future__ import annotations

import torch

from reasonlens.errors import UserError

# every accepted spelling -> torch dtype; the short names are canonical (manifests, run identity)
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
CANONICAL: dict[torch.dtype, str] = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
DTYPE_CHOICES = "fp32|float32, fp16|float16, bf16|bfloat16"


def canonical_dtype(value: str | torch.dtype, option: str = "--dtype") -> str:
    """`'bfloat16'` -> `'bf16'`; an unknown name is a UserError naming `option`."""
    if isinstance(value, torch.dtype):
        if value not in CANONICAL:
            raise UserError(f"{option}: unsupported dtype {value} (choose {DTYPE_CHOICES})")
        return CANONICAL[value]
    key = str(value).strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise UserError(f"{option}: invalid dtype '{value}' (choose {DTYPE_CHOICES})")
    return CANONICAL[DTYPES[key]]


def torch_dtype(value: str | torch.dtype, option: str = "--dtype") -> torch.dtype:
    return DTYPES[canonical_dtype(value, option)]


def _cpu_build_hint() -> str:
    build = torch.__version__
    if torch.version.cuda is None and not getattr(torch.version, "hip", None):
        return (
            f"this torch ({build}) is a CPU-only build; use --device cpu, or install a CUDA build "
            f'(make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu126")'
        )
    return f"torch {build} sees no GPU (check CUDA_VISIBLE_DEVICES and the driver); use --device cpu"


def check_device(device: str | torch.device, option: str = "--device") -> str:
    """The device string to use, or a one-line UserError when this machine cannot provide it.

    `gpu` means `cuda`; `auto` picks cuda, then mps, then cpu.
    """
    text = str(device).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if text == "gpu" or text.startswith("gpu:"):
        text = "cuda" + text[3:]
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"{option}: invalid device '{device}' (cpu, cuda, cuda:N, mps or auto)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option} {device}: no CUDA device available; {_cpu_build_hint()}")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UserError(f"{option} {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError(f"{option} {device}: Apple MPS is not available on this machine; use --device cpu")
    elif parsed.type != "cpu":
        raise UserError(f"{option}: unsupported device '{device}' (cpu, cuda, cuda:N, mps or auto)")
    return text
