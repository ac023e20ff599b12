"""Dataset registry: bundled math sets, local files, Hugging Face hub ids, synthetic generators."""

from __future__ import annotations

import csv
import inspect
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Iterator

from reasonlens.data.records import Problem
from reasonlens.errors import UserError, did_you_mean

Loader = Callable[..., list[Problem]]  # loader(split), or loader(split, variant=None) for `name:variant`

# Candidate source fields for each record field, in order of preference.
DEFAULT_FIELD_MAP: dict[str, tuple[str, ...]] = {
    "id": ("id", "unique_id", "idx"),
    "question": ("question", "problem", "prompt", "input"),
    "solution": ("solution", "rationale", "reasoning"),
    "answer": ("answer", "final_answer", "target", "output"),
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Loader
    grader: str  # "numeric", "math" or "letter" (multiple choice A-E): which comparison reasonlens.eval.grade uses
    splits: tuple[str, ...]
    description: str = ""


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str,
    loader: Loader,
    grader: str = "math",
    splits: Iterable[str] = ("test",),
    description: str = "",
) -> None:
    """Make `name` loadable everywhere a dataset is accepted. `loader(split)` returns the records; a loader with a
    `variant` parameter also serves `name:variant` (the text after the colon, e.g. synthetic levels)."""
    if grader not in ("numeric", "math", "letter"):
        raise ValueError(f"grader must be 'numeric', 'math' or 'letter', got {grader!r}")
    _REGISTRY[name] = DatasetInfo(name, loader, grader, tuple(splits), description)


def registered_datasets() -> dict[str, DatasetInfo]:
    return dict(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo | None:
    """Registry entry for `name` (a `name:variant` form resolves through its base name's registration)."""
    return _REGISTRY.get(name.split(":", 1)[0])


# One problem is kilobytes; a longer line is a broken or hostile file (it would exhaust memory when tokenized).
MAX_LINE_BYTES = 8 * 1024 * 1024


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed or over-long lines raise UserError."""
    from reasonlens.runs.io import open_regular, parse_json

    with open_regular(path, "dataset file") as handle:
        for lineno, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise UserError(f"{path}:{lineno}: line is longer than {MAX_LINE_BYTES // 2**20} MiB")
            if not raw.strip():
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{lineno}: line is not valid UTF-8") from None
            obj = parse_json(raw, f"{path}:{lineno}")
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _pick(row: dict, field_name: str, candidates: tuple[str, ...], where: str, required: bool) -> str:
    for key in candidates:
        if key in row and row[key] is not None:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise UserError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
            return str(value)
    if required:
        raise UserError(f"{where}: missing field '{candidates[0]}' (looked for {', '.join(candidates)})")
    return ""


def row_to_problem(row: dict, where: str, index: int, field_map: dict[str, str] | None = None) -> Problem:
    """Map a raw row to a Problem; `field_map` maps record fields (id, question, solution, answer) to row keys."""
    fmap = {k: ((field_map[k],) if field_map and k in field_map else v) for k, v in DEFAULT_FIELD_MAP.items()}
    question = _pick(row, "question", fmap["question"], where, required=True)
    if not question.strip():
        raise UserError(f"{where}: field '{fmap['question'][0]}' is empty")
    answer = _pick(row, "answer", fmap["answer"], where, required=True)
    if not answer.strip():
        raise UserError(f"{where}: field '{fmap['answer'][0]}' is empty")
    ident = _pick(row, "id", fmap["id"], where, required=False) or f"row-{index}"
    solution = _pick(row, "solution", fmap["solution"], where, required=False)
    used = {k for keys in fmap.values() for k in keys}
    meta = {k: v for k, v in row.items() if k not in used and isinstance(v, (str, int, float, bool))}
    return Problem(ident, question, solution, answer.strip(), meta)


def _check_unique(problems: list[Problem], source: str) -> list[Problem]:
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise UserError(f"{source}: duplicate id {p.id!r}")
        seen.add(p.id)
    return problems


def load_file(path: str | Path, field_map: dict[str, str] | None = None) -> list[Problem]:
    """Load a local .jsonl / .json / .csv / .parquet file of problems."""
    from reasonlens.runs.io import open_regular

    path = Path(path)
    if not os.path.lexists(path):
        raise UserError(f"{path}: dataset file not found")
    open_regular(path, "dataset file").close()  # a pipe or device is refused here, without blocking
    suffix = path.suffix.lower()
    problems: list[Problem] = []
    if suffix in (".jsonl", ".json"):
        for i, (lineno, row) in enumerate(iter_jsonl(path)):
            problems.append(row_to_problem(row, f"{path}:{lineno}", i, field_map))
    elif suffix == ".csv":
        reader = None
        try:
            # utf-8-sig: a byte-order mark (Excel writes one) must not become part of the first column's name.
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                for i, row in enumerate(reader):
                    if None in row:
                        raise UserError(f"{path}:{reader.line_num}: row has more fields than the header")
                    problems.append(row_to_problem(row, f"{path}:{reader.line_num}", i, field_map))
        except UnicodeDecodeError:
            raise UserError(f"{path}: file is not valid UTF-8") from None
        except csv.Error as exc:
            line = getattr(reader, "line_num", 0)
            raise UserError(f"{path}:{line}: malformed CSV ({exc})") from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise UserError(f"{path}: cannot read parquet ({type(exc).__name__})") from None
        for i, row in enumerate(table.to_pylist()):
            problems.append(row_to_problem(row, f"{path}:row {i}", i, field_map))
    else:
        raise UserError(f"{path}: unsupported dataset format '{suffix}' (use .jsonl, .json, .csv or .parquet)")
    if not problems:
        raise UserError(f"{path}: dataset file has no rows")
    return _check_unique(problems, str(path))


def _bundled(filename: str) -> Loader:
    def load(split: str) -> list[Problem]:
        with resources.as_file(resources.files("reasonlens.data") / "bundled" / filename) as p:
            return load_file(p)

    return load


def _load_hub(name: str, split: str, field_map: dict[str, str] | None) -> list[Problem]:
    try:
        import datasets  # optional extra: reasonlens[hub]
    except ImportError:
        raise UserError(
            f"dataset '{name}' is not a registered name or a file; hub ids need `pip install reasonlens[hub]`"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # network and hub errors come in many types
        raise UserError(f"dataset '{name}': cannot load from the Hugging Face hub ({type(exc).__name__})") from None
    return _check_unique([row_to_problem(dict(r), f"{name}[{i}]", i, field_map) for i, r in enumerate(ds)], name)


def load_problems(
    name: str,
    split: str = "test",
    n: int | None = None,
    field_map: dict[str, str] | None = None,
    offset: int = 0,
) -> list[Problem]:
    """Load problems by registered name, local file path, or Hugging Face hub id.

    `n` keeps the first n problems after `offset`; the order is the source order (deterministic).
    """
    if n is not None and n < 1:
        raise UserError(f"--limit must be >= 1, got {n}")
    if offset < 0:
        raise UserError(f"--offset must be >= 0, got {offset}")
    info = _REGISTRY.get(name.split(":", 1)[0])
    if info is not None:
        if split not in info.splits:
            raise UserError(f"dataset '{name}' has no split '{split}' (available: {', '.join(info.splits)})")
        problems = info.loader(split) if ":" not in name else _load_variant(info, name, split)
    elif Path(name).suffix.lower() in (".jsonl", ".json", ".csv", ".parquet") or Path(name).exists():
        problems = load_file(name, field_map)
    elif "/" in name:
        problems = _load_hub(name, split, field_map)
    else:
        known = ", ".join(sorted(_REGISTRY))
        raise UserError(
            f"unknown dataset '{name}'{did_you_mean(name, sorted(_REGISTRY))} (known: {known}; or a "
            ".jsonl/.csv/.parquet path, or a hub id)"
        )
    if offset and offset >= len(problems):
        raise UserError(f"--offset {offset}: dataset '{name}' (split {split}) has only {len(problems)} problems")
    problems = problems[offset:]
    return problems[:n] if n is not None else problems


def _load_variant(info: DatasetInfo, name: str, split: str) -> list[Problem]:
    # "name:variant": the text after the colon goes to loaders that take a `variant` (e.g. synthetic levels).
    if "variant" not in inspect.signature(info.loader).parameters:
        raise UserError(f"dataset '{info.name}' has no variants (got '{name}')")
    return info.loader(split, variant=name.split(":", 1)[1])  # type: ignore[call-arg]


def grader_kind(dataset: str) -> str:
    """Which grader a dataset uses: registered datasets say; files and hub ids use math-verify."""
    info = _REGISTRY.get(dataset.split(":", 1)[0])
    return info.grader if info else "math"


register_dataset("gsm8k", _bundled("gsm8k_test.jsonl"), grader="numeric", description="GSM8K test (1319), MIT")
register_dataset("math500", _bundled("math500_test.jsonl"), grader="math", description="MATH-500 (500), MIT")
register_dataset("aime24", _bundled("aime24_test.jsonl"), grader="math", description="AIME 2024 I+II (30)")
register_dataset("aime25", _bundled("aime25_test.jsonl"), grader="math", description="AIME 2025 I+II (30)")
