"""`reasonlens regrade`: re-grading a finished run's completions in place, atomically and resumably."""

from __future__ import annotations

import json

import pytest

from reasonlens.cli import main
from reasonlens.eval.grade import GRADER_VERSION, Grader
from reasonlens.eval.regrade import WORK_FILE, regrade_run
from reasonlens.runs.rundir import RunDir

# (completion, gold, verdict the old grader recorded, verdict now)
CASES = [
    ("So x = -\\frac{10}{9}", "-10/9", False, True),  # the old fallback lost the minus sign
    ("The share is .4", "0.4", False, True),  # the old fallback read 4
    ("They collected 1 000", "1000", False, True),  # the old fallback read 000
    ("We first get \\boxed{255}. Summing, the final answer is 10,455.", "10455", False, True),
    ("\\boxed{18}", "18", True, True),
    ("The code is AZYUK2A", "2", True, False),  # a digit inside a word is no answer
]


def make_run(path) -> RunDir:
    run = RunDir(path)
    run.start(
        {
            "command": "eval",
            "model": "m",
            "dataset": "gsm8k",
            "split": "test",
            "n": len(CASES),
            "grader": "numeric",
            "method": {"name": "baseline"},
        }
    )
    with run.appender() as appender:
        appender.append(
            [
                {
                    "index": i,
                    "id": f"p{i}",
                    "completion": text,
                    "gold": gold,
                    "extracted": None,
                    "correct": old,
                    "status": "ok",
                    "error": None,
                    "n_tokens": 3,
                    "seconds": 0.1,
                }
                for i, (text, gold, old, _) in enumerate(CASES)
            ]
        )
    getattr(run, "release_lock", lambda: None)()  # the "generation" is over: its writer lock goes
    return run


def test_regrade_rewrites_verdicts_keeps_previous_and_records_the_version(tmp_path):
    run = make_run(tmp_path / "run")
    with Grader() as grader:
        (report,) = regrade_run(run.path, grader=grader)
    assert [r["correct"] for r in run.results()] == [new for *_, new in CASES]
    assert [r["previous"]["correct"] for r in run.results()] == [old for _, _, old, _ in CASES]
    assert len(report.changes) == sum(old != new for _, _, old, new in CASES)
    assert run.manifest["grader_version"] == GRADER_VERSION
    assert run.summary["n_correct"] == sum(new for *_, new in CASES)
    assert not (run.path / WORK_FILE).exists()


class _Interrupted(Exception):
    pass


class _StopAfter(Grader):
    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def grade(self, *args, **kwargs):
        if self.left == 0:
            raise _Interrupted()
        self.left -= 1
        return super().grade(*args, **kwargs)


def test_an_interrupted_regrade_leaves_results_untouched_and_resumes(tmp_path):
    run = make_run(tmp_path / "run")
    before = run.results_path.read_bytes()
    grader = _StopAfter(2)
    with pytest.raises(_Interrupted):
        regrade_run(run.path, grader=grader)
    grader.close()
    assert run.results_path.read_bytes() == before
    assert len((run.path / WORK_FILE).read_text().splitlines()) == 2
    counting = _StopAfter(len(CASES) - 2)  # only the samples not yet re-graded may be graded again
    regrade_run(run.path, grader=counting)
    counting.close()
    assert [r["correct"] for r in run.results()] == [new for *_, new in CASES]


def test_regrade_cli_reports_changes_and_is_idempotent(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    main(["regrade", str(run.path)])
    out = capsys.readouterr().out
    assert "5 verdicts changed" in out and "accuracy 0.333 -> 0.833" in out
    first = [r["correct"] for r in run.results()]
    main(["regrade", str(run.path)])
    assert [r["correct"] for r in run.results()] == first
    assert json.loads(run.manifest_path.read_text())["grader_version"] == GRADER_VERSION


def test_regrade_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["regrade", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "run directory not found" in capsys.readouterr().err


def test_an_unfinished_run_is_refused(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    run.update_manifest(n=len(CASES) + 5)
    with pytest.raises(SystemExit) as exit_info:
        main(["regrade", str(run.path)])
    assert exit_info.value.code == 2
    assert "not finished" in capsys.readouterr().err


def test_a_run_being_written_is_not_regraded(tmp_path):
    run = make_run(tmp_path / "run")
    writer = RunDir(run.path)
    if not hasattr(writer, "acquire_lock"):
        pytest.skip("this RunDir has no writer lock")
    writer.acquire_lock()
    try:
        before = run.results_path.read_bytes()
        with pytest.raises(Exception, match="another reasonlens process"):
            regrade_run(run.path)
        assert run.results_path.read_bytes() == before
    finally:
        writer.release_lock()
