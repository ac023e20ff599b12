"""Provenance recorded in every run manifest: when, with which code and libraries, on which weights.

Not part of a run's identity (a resumed run keeps the provenance of its first start); everything here is
cheap: the weights fingerprint hashes each safetensors file's header and size, not its gigabytes.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import platform
import struct
import subprocess
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin")
_HEADER_LIMIT = 100 * 1024 * 1024  # a safetensors header larger than this is not one


def utc_timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("reasonlens", "torch", "transformers", "safetensors", "numpy", "math-verify", "vllm", "ray"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name in ("reasonlens", "torch", "transformers"):
                versions[name] = None
    return versions


@functools.lru_cache(maxsize=1)
def source_checkout() -> dict[str, Any] | None:
    """The git commit of the reasonlens source when it runs from a checkout (editable install), else None."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return prefix
        (length,) = struct.unpack("<Q", prefix)
        return prefix + handle.read(min(length, _HEADER_LIMIT))


FULL_HASH_LIMIT = 2 * 1024**3  # weights up to this size also get a full sha256 (cached by path, size, mtime)


def _full_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached in $REASONLENS_CACHE/weights-sha256.json by (path, size, mtime)."""
    from reasonlens.models.builtin import cache_root
    from reasonlens.runs.io import atomic_write_json

    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_root() / "weights-sha256.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), str):
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    try:
        atomic_write_json(cache_file, cache)
    except OSError:
        pass  # a read-only cache folder only costs the next run the hashing time
    return cache[key]


def weights_fingerprint(directory: Path, gguf_file: str | None = None) -> dict[str, Any]:
    """sha256 over config.json and, per weights file, its name, size and (safetensors) header.

    The header lists every tensor's name, dtype, shape and byte offsets, so re-saved or re-quantized weights
    change it; identical bytes always give the same digest. `method` says what was hashed.
    """
    directory = Path(directory)
    digest = hashlib.sha256()
    files = (
        sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        if gguf_file is None
        else [directory / gguf_file]
    )
    config = directory / "config.json"
    if config.is_file():
        digest.update(b"config.json\0" + config.read_bytes())
    total = 0
    for path in files:
        size = path.stat().st_size
        total += size
        digest.update(f"{path.name}\0{size}\0".encode())
        if path.suffix == ".safetensors":
            digest.update(_safetensors_header(path))
        else:
            with open(path, "rb") as handle:  # GGUF / .bin: the first MiB (header, tensor table)
                digest.update(handle.read(1 << 20))
    out: dict[str, Any] = {
        "sha256": digest.hexdigest(),
        "method": "config + per-file name, size and header",
        "files": [p.name for p in files],
        "bytes": total,
    }
    if total <= FULL_HASH_LIMIT:
        out["file_sha256"] = {p.name: _full_sha256(p) for p in files}
    return out


def _parameters_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_provenance(lm) -> dict[str, Any]:
    """Where the weights came from: spec, local path, hub revision/commit, and a fingerprint."""
    source = dict((getattr(lm, "extra", None) or {}).get("source", {}))
    out: dict[str, Any] = {
        "spec": getattr(lm, "spec", None),
        "name": getattr(lm, "name", None),
        **{k: v for k, v in source.items() if v is not None},
    }
    path = source.get("path")
    model = getattr(lm, "model", None)
    if path and Path(path).is_dir():
        try:
            out["weights"] = weights_fingerprint(Path(path), source.get("gguf_file"))
        except OSError:
            pass
    elif hasattr(model, "parameters") and sum(p.numel() for p in model.parameters()) <= 10_000_000:
        out["weights"] = {"sha256": _parameters_digest(model), "method": "parameters (fp32 bytes)"}  # tiny models
    return out


def run_provenance(lm) -> dict[str, Any]:
    """The `provenance` field of a run manifest."""
    provenance: dict[str, Any] = {
        "created_utc": utc_timestamp(),
        "versions": package_versions(),
        "model": model_provenance(lm),
    }
    checkout = source_checkout()
    if checkout is not None:
        provenance["git"] = checkout
    return provenance
