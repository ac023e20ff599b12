"""Re-grade a finished run's completions with the current grader: no generation, in place, atomic, resumable.

``results.jsonl`` is only ever replaced whole (write to a temporary file, then rename): until the swap
the run reads as before. Verdicts written so far go to ``results.regrade.jsonl`` (checksummed lines, as
results are), so an interrupted re-grade resumes where it stopped. Each re-graded record keeps the
verdict it had before its first re-grade under ``previous``; the manifest records ``grader_version``.
Runs with budgets (``budget-<B>/`` sub-runs) are re-graded sub-run by sub-run and their top-level
summary rebuilt.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from reasonlens.errors import UserError

VERDICT_FIELDS = ("extracted", "correct", "status", "error")
WORK_FILE = "results.regrade.jsonl"


@dataclass
class RegradeReport:
    """What one re-grade changed in one run directory."""

    run: Path
    n: int
    accuracy_before: float
    accuracy_after: float
    changes: list[dict[str, Any]] = field(default_factory=list)


def _verdict(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in VERDICT_FIELDS}


def _accuracy(records: list[dict[str, Any]]) -> float:
    return sum(1 for r in records if r.get("correct")) / len(records) if records else 0.0


def regrade_run(
    path: str | Path, grader=None, progress: Callable[[int, int], None] | None = None
) -> list[RegradeReport]:
    """Re-grade the run at ``path`` (and its ``budget-<B>`` sub-runs); one report per results file."""
    from reasonlens.eval.grade import Grader
    from reasonlens.runs.rundir import RunDir

    run = RunDir(path)
    manifest = run.open_run()
    owned = grader is None
    grader = grader or Grader()
    try:
        sub_runs = manifest.get("runs")
        if isinstance(sub_runs, dict) and sub_runs and not run.results_path.exists():
            reports = [_regrade_results(RunDir(run.path / str(name)), grader, progress) for name in sub_runs.values()]
            _rebuild_budget_summary(run, sub_runs)
            return reports
        return [_regrade_results(run, grader, progress)]
    finally:
        if owned:
            grader.close()


@contextmanager
def _locked(run) -> Iterator[None]:
    """Hold the run folder's writer lock (where this RunDir has one) so no generation writes meanwhile."""
    acquire = getattr(run, "acquire_lock", None)
    if acquire is None:
        yield
        return
    acquire()
    try:
        yield
    finally:
        run.release_lock()


def _regrade_results(run, grader, progress) -> RegradeReport:
    with _locked(run):
        return _regrade_locked(run, grader, progress)


def _regrade_locked(run, grader, progress) -> RegradeReport:
    from reasonlens.data import grader_kind
    from reasonlens.eval.grade import GRADE_KINDS, GRADER_VERSION
    from reasonlens.runs.io import CheckedAppender, atomic_write_bytes, encode_record, iter_records
    from reasonlens.runs.runner import summarize

    manifest = run.open_run()
    kind = manifest.get("grader") or grader_kind(str(manifest.get("dataset", "")))
    if kind not in GRADE_KINDS:
        raise UserError(f"{run.manifest_path}: field 'grader' must be one of {', '.join(GRADE_KINDS)}, got {kind!r}")
    records = run.results()
    if not records:
        raise UserError(f"{run.results_path}: no results to re-grade")
    expected = manifest.get("n")
    if isinstance(expected, int) and len(records) < expected:
        raise UserError(
            f"{run.path}: run is not finished ({len(records)} of {expected} samples); "
            "finish it first by re-running its command"
        )
    work_path = run.path / WORK_FILE
    done = {r["index"]: r for r in iter_records(work_path) if r.get("grader_version") == GRADER_VERSION}
    with CheckedAppender(work_path) as appender:
        for position, record in enumerate(records):
            if record["index"] in done:
                continue
            regraded = dict(record)
            if record.get("status") != "failed":  # a non-finite generation stays failed: there is nothing to grade
                grade = grader.grade(str(record.get("completion", "")), str(record.get("gold", "")), kind=kind)
                regraded.update(
                    extracted=grade.extracted,
                    correct=grade.correct,
                    status={"ok": "ok", "no_answer": "ok"}.get(grade.status, grade.status),
                    error=grade.reason,
                )
            regraded.setdefault("previous", {**_verdict(record), "grader_version": manifest.get("grader_version", "1")})
            regraded["grader_version"] = GRADER_VERSION
            appender.append([regraded])
            done[record["index"]] = regraded
            if progress is not None:
                progress(position + 1, len(records))
    new_records = [done[r["index"]] for r in records]
    atomic_write_bytes(run.results_path, b"".join(encode_record(r) for r in new_records))
    work_path.unlink(missing_ok=True)
    run.update_manifest(grader_version=GRADER_VERSION)
    run.write_summary({**_previous_summary(run), **summarize(run)})
    # Changes are counted against each record's verdict before its first re-grade.
    originals = [r.get("previous") or r for r in records]
    changes = [
        {
            "index": new["index"],
            "id": new.get("id"),
            "gold": new.get("gold"),
            "before": {k: old.get(k) for k in ("extracted", "correct", "status")},
            "after": {k: new.get(k) for k in ("extracted", "correct", "status")},
        }
        for old, new in zip(originals, new_records)
        if old.get("correct") != new.get("correct") or old.get("status") != new.get("status")
    ]
    return RegradeReport(run.path, len(new_records), _accuracy(originals), _accuracy(new_records), changes)


def _previous_summary(run) -> dict[str, Any]:
    try:
        return run.summary
    except UserError:
        return {}


def _rebuild_budget_summary(top, sub_runs: dict) -> None:
    from reasonlens.runs.rundir import RunDir

    summary = _previous_summary(top)
    subs = {str(budget): RunDir(top.path / str(name)).summary for budget, name in sub_runs.items()}
    summary.update(
        accuracy_by_budget={b: s["accuracy"] for b, s in subs.items()},
        accuracy_ci95_by_budget={b: s["accuracy_ci95"] for b, s in subs.items()},
    )
    top.write_summary(summary)
    from reasonlens.eval.grade import GRADER_VERSION

    top.update_manifest(grader_version=GRADER_VERSION)
