"""Validated readers of the analysis outputs under ``RUN/mi`` (and other analysis folders).

Like every file in a run folder these are untrusted input: a truncated ``stats.parquet``, a ``mi.parquet``
without its columns or a hand-edited ``summary.json`` is refused with one line naming the file (and field),
never a pyarrow traceback. Non-regular files are refused without blocking (`runs.io.open_regular`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from reasonlens.errors import UserError
from reasonlens.runs.io import check_fields, open_regular, read_json_object

# Fields of RUN/mi/summary.json that readers use ('?': may be missing or null).
MI_SUMMARY_FIELDS = {
    "command?": "str",
    "layers": "list",
    "token_layer?": "str",
    "n?": "int",
    "per_layer?": "dict",
    "thinking_tokens?": "list",
    "population?": "list",
    "model?": "str",
    "estimator?": "str",
}


def read_table(path: str | Path, columns: Sequence[str] | None = None, what: str = "table"):
    """A pyarrow table from the parquet file `path` (only `columns`, which must all exist)."""
    import pyarrow.parquet as pq

    path = Path(path)
    with open_regular(path, what) as handle:
        try:
            parquet = pq.ParquetFile(handle)
            names = set(parquet.schema_arrow.names)
            missing = [c for c in columns or [] if c not in names]
            if missing:
                raise UserError(f"{path}: {what} has no column {', '.join(map(repr, missing))} (re-run the analysis)")
            return parquet.read(columns=list(columns) if columns is not None else None)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise UserError(f"{path}: {what} is damaged or not parquet ({reason}); re-run the analysis") from None


def read_mi_summary(path: str | Path) -> dict[str, Any]:
    """``RUN/mi/summary.json``, with the types of the fields readers use checked."""
    summary = read_json_object(path, "MI summary")
    check_fields(summary, str(path), MI_SUMMARY_FIELDS)
    if not all(isinstance(layer, str) for layer in summary["layers"]):
        raise UserError(f"{path}: field 'layers' must be a list of layer names (strings)")
    for key, entry in (summary.get("per_layer") or {}).items():
        if not isinstance(entry, dict):
            raise UserError(f"{path}: field 'per_layer.{key}' must be an object")
    for word in summary.get("thinking_tokens") or []:
        if not isinstance(word, dict):
            raise UserError(f"{path}: field 'thinking_tokens' must be a list of objects")
    return summary
