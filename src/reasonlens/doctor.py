"""`reasonlens doctor`: versions, devices, caches and bundled models, for bug reports and first-run checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def _devices() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "torch_build": "cuda " + torch.version.cuda if torch.version.cuda else "cpu-only",
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps is not None and mps.is_available())
    return info


def _caches() -> dict[str, Any]:
    from reasonlens.models import cache_root

    out: dict[str, Any] = {}
    root = cache_root()
    out["reasonlens_cache"] = {
        "path": str(root),
        "exists": root.is_dir(),
        "bytes": _folder_size(root) if root.is_dir() else 0,
    }
    try:
        from huggingface_hub import constants

        hub = Path(constants.HF_HUB_CACHE)
        out["huggingface_cache"] = {
            "path": str(hub),
            "exists": hub.is_dir(),
            "offline": os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"),
        }
    except ImportError:
        pass
    return out


def _bundled_models() -> list[dict[str, Any]]:
    from reasonlens.errors import UserError
    from reasonlens.models import builtin_names, cache_root

    rows = []
    for name in builtin_names():
        if name == "smollm2-135m":
            from reasonlens.models.builtin import smollm2_gguf_path

            try:
                gguf = smollm2_gguf_path()
                converted = (cache_root() / name / "model.safetensors").is_file()
                status = "ready" if converted else f"converted on first use from {gguf.name}"
            except UserError as exc:
                status = f"missing: {exc}"
        else:
            path = Path(__file__).resolve().parent / "organisms" / name
            status = "shipped" if (path / "config.json").is_file() else "missing"
        rows.append({"name": name, "status": status})
    rows += [
        {"name": n, "status": "built in-process (random weights, tests)"}
        for n in ("tiny-llama", "tiny-qwen2", "tiny-gpt2")
    ]
    return rows


def diagnose() -> dict[str, Any]:
    """Everything `reasonlens doctor` prints, as a dict."""
    from reasonlens.data import registered_datasets
    from reasonlens.runs.provenance import package_versions, source_checkout

    return {
        "versions": package_versions(),
        "checkout": source_checkout(),
        "devices": _devices(),
        "caches": _caches(),
        "models": _bundled_models(),
        "datasets": sorted(registered_datasets()),
    }


def format_report(report: dict[str, Any]) -> list[str]:
    lines = ["versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v is not None)]
    if report["checkout"]:
        lines.append(
            f"checkout: {report['checkout']['commit'][:12]}" + (" (modified)" if report["checkout"]["dirty"] else "")
        )
    d = report["devices"]
    gpus = ", ".join(d.get("cuda_devices", [])) or "none"
    lines.append(
        f"devices: torch {d['torch_build']}; CUDA GPUs: {gpus}; MPS: {'yes' if d['mps_available'] else 'no'}; "
        f"CPU threads: {d['cpu_threads']}"
    )
    for name, cache in report["caches"].items():
        extra = f", {cache['bytes'] / 1e6:.0f} MB" if "bytes" in cache else ""
        offline = ", HF_HUB_OFFLINE set" if cache.get("offline") else ""
        lines.append(
            f"{name.replace('_', ' ')}: {cache['path']}"
            + (extra if cache["exists"] else " (not created yet)")
            + offline
        )
    lines.append("models:")
    lines += [f"  {m['name']:20s} {m['status']}" for m in report["models"]]
    lines.append("datasets: " + ", ".join(report["datasets"]))
    return lines
