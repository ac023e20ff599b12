"""A run directory: manifest, checksummed results, per-sample state shards, summary. Resumable.

`RunDir` owns the on-disk layout of a run; nothing else spells a path inside it:

    RUN/manifest.json, results.jsonl, summary.json   the run (`manifest`, `results()`, `summary`)
    RUN/states/<index:06d>.safetensors               per-sample hidden states (`open_states`, `load_states`)
    RUN/results.w<k>.jsonl                           Ray worker k's results until merged (`merge_worker_results`)
    RUN/budget-<B>/                                  the sub-run of one token budget (`budget_run`)
    RUN/mi/                                          the MI analysis (`mi_dir`)
    RUN/mi/golds.safetensors                         its gold-representation cache (`read_golds`, `write_golds`)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

from reasonlens.errors import UserError
from reasonlens.runs.io import (
    _TEMP_NAME,
    LOCK_NAME,
    CheckedAppender,
    RunLock,
    atomic_write_bytes,
    atomic_write_json,
    check_fields,
    encode_record,
    field_error,
    iter_records,
    make_shared,
    read_checked_jsonl,
    read_json_object,
    remove_stale_temp_files,
)

FORMAT_VERSION = 1
# Manifest fields that must match for a run to be resumed (everything that changes the outputs).
IDENTITY_FIELDS = (
    "command",
    "model",
    "dataset",
    "split",
    "offset",
    "template",
    "system",
    "decode",
    "layers",
    "dtype",
    "model_dtype",
    "method",
    "model_revision",
    "samples",
)
# Types of the manifest fields reasonlens reads back ('?': may be missing or null). A hand-edited manifest
# (`layers: 5`, `n: "4"`) is refused here, naming the field, instead of failing somewhere downstream.
MANIFEST_FIELDS = {
    "format_version": "int",
    "command?": "str",
    "model?": "str",
    "model_name?": "str",
    "dataset?": "str",
    "split?": "str",
    "offset?": "int",
    "n?": "int",
    "template?": "str",
    "system?": "str",
    "decode?": "dict",
    "layers?": "layers",
    "hidden_size?": "int",
    "dtype?": "str",
    "model_dtype?": "str",
    "method?": "dict",
    "grader?": "str",
    "budgets?": "list",
    "model_revision?": "str",
    "provenance?": "dict",
    "samples?": "int",
    "n_problems?": "int",
}
# Types of the fields of a result record that reasonlens reads back.
RECORD_FIELDS = {
    "index": "int",
    "id?": "str",
    "prompt?": "str",
    "completion?": "str",
    "gold?": "str",
    "n_tokens?": "int",
    "n_forced?": "int",
    "seconds?": "number",
    "stop_reason?": "str",
    "extracted?": "str",
    "correct?": "bool",
    "status?": "str",
    "error?": "str",
    "events?": "list",
}


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

    @property
    def mi_dir(self) -> Path:
        """Where `reasonlens mi` publishes its analysis of this run."""
        return self.path / "mi"

    @property
    def golds_path(self) -> Path:
        return self.mi_dir / GOLDS_NAME

    @property
    def mi_summary_path(self) -> Path:
        return self.mi_dir / MI_SUMMARY_NAME

    @property
    def token_set_path(self) -> Path:
        """The thinking-token set `reasonlens mi` learnt from this run (words of the token layer's peaks)."""
        return self.mi_dir / TOKEN_SET_NAME

    def budget_run(self, budget: int | str) -> "RunDir":
        """The sub-run of one token budget of a budgeted evaluation."""
        return RunDir(self.path / budget_run_name(budget))

    def exists(self) -> bool:
        """Whether the folder has a manifest (any file type: a pipe or folder there is refused when read)."""
        return os.path.lexists(self.manifest_path)

    @property
    def manifest(self) -> dict[str, Any]:
        manifest = self.read_json(self.manifest_path, what="manifest")
        return check_fields(manifest, str(self.manifest_path), MANIFEST_FIELDS)

    def read_json(self, path: Path, what: str) -> dict[str, Any]:
        if not os.path.lexists(path):
            raise UserError(f"{path}: not found (is {self.path} a reasonlens run directory?)")
        return read_json_object(path, what)

    def open_run(self) -> dict[str, Any]:
        """Validate an existing run directory for reading; returns its manifest."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: run directory not found")
        manifest = self.read_json(self.manifest_path, what="manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise UserError(f"{self.manifest_path}: field 'format_version' is missing or not an integer")
        if version > FORMAT_VERSION:
            raise UserError(
                f"{self.manifest_path}: run format version {version} is newer than this reasonlens "
                f"supports ({FORMAT_VERSION}); upgrade reasonlens"
            )
        return check_fields(manifest, str(self.manifest_path), MANIFEST_FIELDS)

    def check_start(self, manifest: dict[str, Any]) -> bool:
        """Everything `start` would refuse, without writing: True when the folder is a run to resume.

        A folder that exists but holds no manifest.json is written into only when it is empty: it may be the
        user's own folder, or a run that lost its manifest, whose records must not be adopted under new settings.
        """
        manifest = {"format_version": FORMAT_VERSION, **manifest}
        if os.path.lexists(self.path) and not self.path.is_dir():
            raise UserError(f"--out {self.path}: exists and is not a directory")
        if self.exists():
            existing = self.open_run()
            differences = [
                difference
                for key in IDENTITY_FIELDS
                for difference in _differences(key, existing.get(key), manifest.get(key))
            ]
            if differences:
                raise UserError(
                    f"--out {self.path}: existing run has different settings ({'; '.join(differences)}); "
                    "re-run with the run's settings to resume, or use another --out directory"
                )
            return True
        check_empty_or_new(self.path, "--out", "it has no manifest.json")
        return False

    def start(self, manifest: dict[str, Any], lock: bool = True) -> bool:
        """Create the run, or check that an existing one has the same settings. Returns True when resuming.

        With `lock`, the run folder is locked for this process (`release_lock`, or the process ending, frees
        it): a second writer is refused, naming the holder's pid. Ray workers of one run pass `lock=False`
        (each writes only its own files).
        """
        resuming = self.check_start(manifest)
        if not resuming:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"--out {self.path}: cannot create the run folder ({exc.strerror})") from None
        if lock:
            self.acquire_lock()
            resuming = self.check_start(manifest)  # another writer may have created the run meanwhile
        if resuming:
            self.remove_stale_temp_files()
            return True
        atomic_write_json(self.manifest_path, {"format_version": FORMAT_VERSION, **manifest})
        return False

    def acquire_lock(self) -> None:
        """Lock the run folder for this process (refused, naming the holder's pid, while another holds it)."""
        if getattr(self, "_lock", None) is None:
            self._lock = RunLock(self.path)

    def release_lock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

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
            check_record(self.results_path, line, record)
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

    @contextmanager
    def open_states(self, index: int) -> Iterator[Any]:
        """`safe_open` the state shard of `index`; a missing or corrupt shard is a one-line UserError naming it."""
        path = self.state_path(index)
        try:
            with safe_open(path, framework="pt") as handle:
                yield handle
        except UserError:
            raise
        except FileNotFoundError:
            raise UserError(f"{path}: state shard not found") from None
        except (SafetensorError, OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise UserError(f"{path}: corrupt safetensors shard ({reason})") from None

    def load_states(self, index: int) -> dict[str, torch.Tensor]:
        with self.open_states(index) as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}

    def state_metadata(self, index: int) -> dict[str, str]:
        with self.open_states(index) as handle:
            return dict(handle.metadata() or {})

    # -- results files of the workers of a sharded run -----------------------------------------------------------
    def worker_results_path(self, worker: int) -> Path:
        """Results file of one executor worker; merged into results.jsonl when the sharded run ends."""
        return self.path / f"results.w{worker}.jsonl"

    def worker_result_files(self) -> list[Path]:
        """`results.w<k>.jsonl` files of the run, by worker number."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := _WORKER_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def merge_worker_results(self) -> int:
        """Fold the worker result files into `results.jsonl` and delete them; returns how many records moved.

        A worker's record for an index replaces the one in results.jsonl (it was redone because its shard was
        missing). Crash-safe: results.jsonl is replaced atomically before the worker files go, and merging twice
        gives the same file, so a crash between the two steps only repeats the merge next time.
        """
        files = self.worker_result_files()
        if not files:
            return 0
        by_index = {r["index"]: r for r in iter_records(self.results_path) if isinstance(r.get("index"), int)}
        moved = 0
        for path in files:
            for record in iter_records(path):
                if isinstance(record.get("index"), int):
                    by_index[record["index"]] = record
                    moved += 1
        atomic_write_bytes(self.results_path, b"".join(encode_record(by_index[i]) for i in sorted(by_index)))
        for path in files:
            path.unlink()
        return moved


def check_record(path: Path, line: int, record: dict[str, Any]) -> dict[str, Any]:
    """A result record whose checksum holds but whose fields have the wrong types (written by hand or by another
    tool) is refused, naming the line, rather than skipped or read as something else."""
    where = f"{path}: line {line}"
    correct = record.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise field_error(where, "correct", "true, false or null", correct)
    return check_fields(record, where, RECORD_FIELDS)


def _only_bookkeeping(entries: list[str]) -> bool:
    """Whether a folder's entries are only what a killed `start` can leave: the lock file and temp files."""
    return all(name == LOCK_NAME or _TEMP_NAME.fullmatch(name) for name in entries)


def check_empty_or_new(path: Path, option: str, why: str) -> None:
    """Refuse to write into an existing folder that is not empty (UserError naming `option` and the folder)."""
    if not path.is_dir():
        return
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot list the folder ({exc.strerror})") from None
    if entries and not _only_bookkeeping(entries):
        raise UserError(
            f"{option} {path}: folder is not empty and {why}; refusing to write into it (choose a new or empty folder)"
        )


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
        return [
            f"different '{key}': {key}.{k} {_short(old.get(k))} -> {_short(new.get(k))}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]
    return [f"different '{key}': {_short(old)} -> {_short(new)}"]


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True)) if value is not None else None


_WORKER_FILE = re.compile(r"^results\.w(\d+)\.jsonl$")
GOLDS_NAME = "golds.safetensors"
MI_SUMMARY_NAME = "summary.json"
TOKEN_SET_NAME = "tokens.jsonl"


def budget_run_name(budget: int | str) -> str:
    """The folder of one budget's sub-run inside a budgeted evaluation (`budget-<B>`)."""
    return f"budget-{budget}"


# -- the gold-representation cache of the MI analysis ---------------------------------------------------------------


def read_golds(
    path: Path, identity: dict[str, str], indices: Iterable[int], layers: list[str]
) -> dict[int, dict[str, torch.Tensor]]:
    """The cached gold representations `{index: {layer: [d]}}` of those `indices` whose every layer is in the
    file at `path` (finite vectors), when its metadata matches `identity`. The file is a cache: a missing,
    damaged, non-regular or symlinked one, or other settings, give nothing (the golds are encoded again)."""
    golds: dict[int, dict[str, torch.Tensor]] = {}
    if not path.is_file() or path.is_symlink():
        return golds
    try:
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
            if not all(meta.get(k) == v for k, v in identity.items()):
                return golds
            names = set(handle.keys())
            for index in indices:
                if all(f"{index}.{k}" in names for k in layers):
                    found = {k: handle.get_tensor(f"{index}.{k}") for k in layers}
                    if all(t.dim() == 1 and bool(torch.isfinite(t).all()) for t in found.values()):
                        golds[index] = found
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return {}
    return golds


def write_golds(path: Path, golds: dict[int, dict[str, torch.Tensor]], identity: dict[str, str]) -> None:
    """Write the gold cache atomically (temp file, then rename), readable by the other users of a shared run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{i}.{k}": v.contiguous() for i, by_layer in golds.items() for k, v in by_layer.items()}
    temp = Path(str(path) + ".tmp")
    save_file(tensors, str(temp), metadata=identity)
    make_shared(temp).replace(path)
