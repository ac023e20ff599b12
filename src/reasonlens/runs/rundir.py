"""A run directory: manifest, checksummed results, per-sample state shards, summary. Resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from reasonlens.errors import UserError
from reasonlens.runs.io import (
    CheckedAppender,
    atomic_write_bytes,
    atomic_write_json,
    read_checked_jsonl,
    remove_stale_temp_files,
)

FORMAT_VERSION = 1
# Manifest fields that must match for a run to be resumed (everything that changes the outputs).
IDENTITY_FIELDS = ("command", "model", "dataset", "split", "offset", "template", "system", "decode", "layers",
                   "dtype", "model_dtype", "method", "model_revision",
                   "samples")


class RunDir:
    """Files of one run. Results are appended with checksums; shards and JSON files are replaced atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- manifest -------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def states_dir(self) -> Path:
        return self.path / "states"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @property
    def manifest(self) -> dict[str, Any]:
        return self.read_json(self.manifest_path, what="manifest")

    def read_json(self, path: Path, what: str) -> dict[str, Any]:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: not found (is {self.path} a reasonlens run directory?)") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: {what} is not valid JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: {what} must be a JSON object")
        return data

    def open_run(self) -> dict[str, Any]:
        """Validate an existing run directory for reading; returns its manifest."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: run directory not found")
        manifest = self.manifest
        version = manifest.get("format_version")
        if not isinstance(version, int):
            raise UserError(f"{self.manifest_path}: field 'format_version' is missing or not an integer")
        if version > FORMAT_VERSION:
            raise UserError(f"{self.manifest_path}: run format version {version} is newer than this reasonlens "
                            f"supports ({FORMAT_VERSION}); upgrade reasonlens")
        return manifest

    def start(self, manifest: dict[str, Any]) -> bool:
        """Create the run, or check that an existing one has the same settings. Returns True when resuming."""
        manifest = {"format_version": FORMAT_VERSION, **manifest}
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path}: exists and is not a directory")
        if self.exists():
            existing = self.open_run()
            differences = [difference for key in IDENTITY_FIELDS
                           for difference in _differences(key, existing.get(key), manifest.get(key))]
            if differences:
                raise UserError(f"--out {self.path}: existing run has different settings ({'; '.join(differences)}); "
                                "re-run with the run's settings to resume, or use another --out directory")
            self.remove_stale_temp_files()
            return True
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)
        return False

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temp files that a killed writer of this run left beside the manifest, results and shards."""
        return [*remove_stale_temp_files(self.path), *remove_stale_temp_files(self.states_dir)]

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.manifest
        manifest.update(fields)
        atomic_write_json(self.manifest_path, manifest)

    # -- results --------------------------------------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        """Valid result records, one per sample index (a later record for the same index wins), sorted by index.

        A record whose checksum holds but whose `index` or `correct` has the wrong type was written by hand or by
        another tool; it is refused (UserError naming the line) rather than skipped or read as true.
        """
        records, _ = read_checked_jsonl(self.results_path)
        by_index: dict[int, dict] = {}
        for line, record in enumerate(records, start=1):
            _check_record_types(self.results_path, line, record)
            by_index[record["index"]] = record
        return [by_index[i] for i in sorted(by_index)]

    def drop_results(self, indices: set[int]) -> None:
        """Rewrite results.jsonl atomically without the records of `indices` (and without any torn tail)."""
        from reasonlens.runs.io import encode_record

        records, _ = read_checked_jsonl(self.results_path)
        kept = [r for r in records if r.get("index") not in indices]
        atomic_write_bytes(self.results_path, b"".join(encode_record(r) for r in kept))

    def appender(self) -> CheckedAppender:
        return CheckedAppender(self.results_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)

    @property
    def summary(self) -> dict[str, Any]:
        return self.read_json(self.summary_path, what="summary")

    # -- state shards ---------------------------------------------------------------------------------------
    def state_path(self, index: int) -> Path:
        return self.states_dir / f"{index:06d}.safetensors"

    def write_states(self, index: int, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
        atomic_write_bytes(self.state_path(index), blob)

    def has_states(self, index: int) -> bool:
        return self.state_path(index).is_file()

    def load_states(self, index: int) -> dict[str, torch.Tensor]:
        path = self.state_path(index)
        try:
            return load_file(path)
        except FileNotFoundError:
            raise UserError(f"{path}: state shard not found") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path}: corrupt safetensors shard ({str(exc).splitlines()[0][:120]})") from None

    def state_metadata(self, index: int) -> dict[str, str]:
        from safetensors import safe_open

        path = self.state_path(index)
        try:
            with safe_open(path, framework="pt") as handle:
                return dict(handle.metadata() or {})
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path}: corrupt safetensors shard ({str(exc).splitlines()[0][:120]})") from None


def _check_record_types(path: Path, line: int, record: dict[str, Any]) -> None:
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise UserError(f"{path}: line {line}: field 'index' must be a non-negative integer, got {json.dumps(index)}")
    correct = record.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise UserError(f"{path}: line {line}: field 'correct' must be true, false or null, got "
                        f"{json.dumps(correct)[:40]}")


def _short(value: Any, limit: int = 60) -> str:
    """JSON of a value, cut at a word boundary with an ellipsis when long (never mid-word)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",:")
    return f"{cut} ..."


def _differences(key: str, old: Any, new: Any) -> list[str]:
    """`field: old -> new` for each differing setting (one level into dicts, e.g. decode.max_new_tokens)."""
    old, new = _normalise(old), _normalise(new)
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [f"different '{key}': {key}.{k} {_short(old.get(k))} -> {_short(new.get(k))}"
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return [f"different '{key}': {_short(old)} -> {_short(new)}"]


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True)) if value is not None else None
