"""Read run directories into what the report shows: detection of each directory's kind and its tables.

Kinds (detected from the files, never from the directory name):

- ``trace``: a sample run with per-sample results (``manifest.json`` + ``results.jsonl``; e.g. ``generate``),
  optionally with state shards (token ids) and an MI analysis under ``RUN/mi/``;
- ``eval``: a run whose manifest says ``command: eval`` (plain, or budgeted with ``budget-<B>/`` sub-runs);
- ``depth``: a depth-scaling directory (``summary.json`` with ``command: depth``);
- ``latent``: a latent-trajectory analysis (``summary.json`` with ``command: latent``);
- a ``RUN/mi`` folder given directly counts as its run.

A directory that is none of these but holds such directories (e.g. ``runs/demo``) is expanded into them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs import RunDir
from reasonlens.runs.io import read_json_object

KINDS = ("trace", "eval", "depth", "latent")
MAX_EXPAND_DEPTH = 3


@dataclass
class RunSource:
    """One input directory, its kind and its JSON files (manifest/summary may be empty when absent)."""

    path: Path
    kind: str
    manifest: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def mi_dir(self) -> Path:
        return RunDir(self.path).mi_dir

    @property
    def has_mi(self) -> bool:
        return (self.mi_dir / "summary.json").is_file() and (self.mi_dir / "mi.parquet").is_file()


def detect_kind(path: Path) -> str | None:
    """The kind of run directory at ``path``, or None when it is not one."""
    run = RunDir(path)  # depth and latent directories keep their summary.json where a run keeps its own
    if run.exists():
        command = read_json_object(run.manifest_path, "manifest").get("command")
        return "eval" if command == "eval" else "trace"
    if os.path.lexists(run.summary_path):
        command = read_json_object(run.summary_path, "summary").get("command")
        if command in ("depth", "latent"):
            return command
    return None


def _load_source(path: Path, kind: str) -> RunSource:
    run = RunDir(path)
    # open_run checks the format version this reasonlens can read
    manifest = run.open_run() if run.manifest_path.is_file() else {}
    summary = read_json_object(run.summary_path, "summary") if run.summary_path.is_file() else {}
    if kind in ("trace", "eval") and not summary and not run.results_path.is_file() and not manifest.get("budgets"):
        raise UserError(f"{path}: run directory has neither summary.json nor results.jsonl (has it started?)")
    return RunSource(path=path, kind=kind, manifest=manifest, summary=summary)


def _expand(path: Path, depth: int) -> list[RunSource]:
    if path.name == "mi" and (path / "summary.json").is_file() and detect_kind(path.parent) is not None:
        path = path.parent
    kind = detect_kind(path)
    if kind is not None:
        return [_load_source(path, kind)]
    if depth >= MAX_EXPAND_DEPTH:
        return []
    found: list[RunSource] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found.extend(_expand(child, depth + 1))
    return found


def collect_sources(paths: list[str | Path]) -> list[RunSource]:
    """Every run directory named by ``paths`` (folders of runs are expanded), each once, labelled."""
    if not paths:
        raise UserError("report: give at least one RUN_DIR")
    sources: list[RunSource] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UserError(f"{path}: run directory not found")
        found = _expand(path, 0)
        if not found:
            raise UserError(
                f"{path}: not a reasonlens run directory (no manifest.json, depth/latent summary.json, "
                "or run directories inside)"
            )
        for source in found:
            resolved = source.path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                sources.append(source)
    _label(sources)
    return sources


def _label(sources: list[RunSource]) -> None:
    """Short unique labels: the paths relative to their common parent."""
    resolved = [s.path.resolve() for s in sources]
    if len(resolved) == 1:
        sources[0].label = resolved[0].name
        return
    common = Path(*_common_parts([p.parts for p in resolved]))
    for source, path in zip(sources, resolved):
        source.label = str(path.relative_to(common)) if path != common else path.name


def _common_parts(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    common: list[str] = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return tuple(common)


def run_summary(source: RunSource) -> dict[str, Any]:
    """The run's summary.json, or one computed from its results when it has none yet."""
    if source.summary:
        return source.summary
    if source.kind in ("trace", "eval") and RunDir(source.path).results_path.is_file():
        from reasonlens.runs import summarize

        return summarize(RunDir(source.path))
    return {}


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def method_label(method: dict[str, Any] | None, command: str | None = None) -> str:
    """A short human name of an intervention setting, e.g. ``suppress (random, k=8)``."""
    if not method:
        return command or "baseline"
    if "recurrent" in method:
        kwargs = method["recurrent"]
        if kwargs.get("exit_criterion"):
            return f"adaptive exit ({kwargs['exit_criterion']})"
        return f"r={kwargs.get('num_steps')}"
    from reasonlens.interventions import get_method, method_names

    name = str(method.get("name", command or "?"))
    return get_method(name).label(method) if name in method_names() else name
