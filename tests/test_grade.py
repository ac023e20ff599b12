"""Grading with hard timeouts (reasonlens.eval.grade): numeric and math-verify kinds, adversarial
predictions, worker restarts, grading from other threads."""

import threading

import pytest

from reasonlens.errors import UserError
from reasonlens.eval import Grade, Grader, grade, shared_grader

MEGABYTE = 1_000_000
# An answer whose sympy evaluation never finishes in time and is not a plain number, so it must
# reach the worker and be stopped by the timeout.
HANGING_FACTORIAL = "\\boxed{(10^{100000})!}"


@pytest.fixture(scope="module")
def grader():
    """One grader (worker start-up paid once) for the module; the module-level grade() shares it."""
    shared = shared_grader()
    shared.start()
    yield shared
    shared.close()


# ------------------------------------------------------------------------------------------ numeric


@pytest.mark.parametrize(
    "prediction, gold, correct",
    [
        ("So she pays \\boxed{18} dollars.", "18", True),
        ("The answer is \\$1,080.00.", "1080", True),
        ("#### 18.0", "18", True),
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("\\boxed{0.5}", "1/2", True),
        ("The temperature drops to \\boxed{-3}", "-3", True),
        ("\\boxed{2^{10}}", "1024", True),
        ("\\boxed{17}", "18", False),
        ("\\boxed{18.000001}", "18", False),
        ("\\boxed{\\text{eighteen}}", "18", False),
    ],
)
def test_numeric_grading_is_exact(prediction, gold, correct):
    result = grade(prediction, gold, kind="numeric")
    assert result.status == "ok"
    assert result.correct is correct


def test_numeric_no_answer_and_unreadable_gold():
    assert grade("I do not know.", "18", kind="numeric") == Grade(
        False, None, "no_answer", "no answer found in the completion"
    )
    unreadable = grade("\\boxed{5}", "five", kind="numeric")
    assert unreadable.status == "ungradable"
    assert unreadable.correct is None
    assert "five" in unreadable.reason


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "prediction, status, correct",
    [
        ("\\boxed{10^10^10}", "ok", False),
        ("\\boxed{9^{9^{9^{9}}}}", "ok", False),
        ("The answer is 10^{10^{10}}.", "ok", False),
        ("7" * MEGABYTE, "ok", False),
        ("\\boxed{" + "{" * (MEGABYTE // 2) + "18" + "}" * (MEGABYTE // 2) + "}", "ok", True),
        ("\\boxed{\uff11\uff18}", "ok", False),
        ("\u0661\u0668", "no_answer", False),
        ("\\boxed{4^{1/2}}", "ungradable", None),
    ],
    ids=["tower", "nines", "phrase-tower", "megabyte-digits", "deep-braces", "fullwidth", "arabic-indic", "root"],
)
def test_numeric_adversarial_predictions(prediction, status, correct):
    result = grade(prediction, "18", kind="numeric")
    assert (result.status, result.correct) == (status, correct)
    if correct is not True:
        assert result.reason


# --------------------------------------------------------------------------------------------- math


def test_string_equal_answers_never_start_a_worker():
    fresh = Grader()
    try:
        assert fresh.grade("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}").correct is True
        assert (
            fresh.grade("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left(3,\\frac{\\pi}{2}\\right)").correct
            is True
        )
        assert fresh.grade("\\boxed{90}", "90^\\circ").correct is True
        assert fresh.grade("\\boxed{2^{10}}", "1024").correct is True
        assert fresh._worker is None
    finally:
        fresh.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "prediction, gold, correct",
    [
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("so \\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("\\boxed{C}", "\\text{(C)}", True),
        ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
        ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", True),
        ("The final answer is $\\frac{\\sqrt{3}}{2}$.", "\\frac{\\sqrt3}{2}", True),
        ("\\boxed{4.6667}", "\\frac{14}{3}", False),
        ("\\boxed{p+q}", "p - q", False),
        ("\\boxed{2\\sqrt{3}}", "2\\sqrt{2}", False),
    ],
)
def test_math_grading_with_math_verify(grader, prediction, gold, correct):
    result = grader.grade(prediction, gold, kind="math")
    assert result.status == "ok"
    assert result.correct is correct


@pytest.mark.timeout(60)
def test_math_no_answer(grader):
    result = grader.grade("I could not solve it.", "5")
    assert (result.status, result.correct, result.extracted) == ("no_answer", False, None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "prediction, status, correct, reason_part",
    [
        ("\\boxed{10^10^10}", "ok", False, "bound"),
        ("\\boxed{9^{9^{9^{9}}}}", "ok", False, "bound"),
        ("x" * MEGABYTE, "no_answer", False, "no answer"),
        ("\\boxed{" + "x+" * MEGABYTE + "1}", "ungradable", None, "too long"),
        ("\\boxed{" + "{" * 500 + "1" + "}" * 500 + "}", "ungradable", None, "nested"),
        ("\\boxed{\uff11\uff18}", "ok", False, None),
        ("\\boxed{\u0661\u0668}", "ok", False, None),
    ],
    ids=["tower", "nines", "megabyte-text", "megabyte-answer", "deep-braces", "fullwidth", "arabic-indic"],
)
def test_math_adversarial_predictions(grader, prediction, status, correct, reason_part):
    result = grader.grade(prediction, "18", kind="math", timeout=5.0)
    assert (result.status, result.correct) == (status, correct)
    if reason_part is not None:
        assert reason_part in result.reason


@pytest.mark.timeout(120)
def test_hanging_sympy_is_cut_off_and_the_worker_restarted(grader):
    restarts = grader.restarts
    result = grader.grade(HANGING_FACTORIAL, "3", timeout=2.0)
    assert result.status == "ungradable"
    assert result.correct is None
    assert "timed out" in result.reason
    assert grader.restarts == restarts + 1
    assert grader.grade("\\boxed{0.5}", "\\frac{1}{2}").correct is True


@pytest.mark.timeout(120)
def test_grading_from_a_non_main_thread_including_a_timeout(grader):
    results: dict[str, Grade] = {}

    def work():
        results["verify"] = grader.grade("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")
        results["hang"] = grader.grade(HANGING_FACTORIAL, "3", timeout=1.0)
        results["after"] = grade("\\boxed{1/3}", "\\frac{1}{3}")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=100)
    assert not thread.is_alive()
    assert results["verify"].correct is True
    assert results["hang"].status == "ungradable"
    assert results["after"].correct is True


@pytest.mark.timeout(120)
def test_concurrent_threads_get_their_own_verdicts(grader):
    cases = [("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", True), ("\\boxed{0.25}", "\\frac{1}{3}", False)] * 4
    results: list[Grade | None] = [None] * len(cases)

    def work(i):
        results[i] = grader.grade(cases[i][0], cases[i][1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert [r.correct for r in results] == [c for _, _, c in cases]


@pytest.mark.timeout(120)
def test_a_killed_worker_is_replaced(grader):
    grader.grade("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")
    grader._worker.process.kill()
    died = grader.grade("\\boxed{\\sqrt{12}}", "2\\sqrt{3}")
    assert died.status == "ungradable"
    assert "died" in died.reason
    assert grader.grade("\\boxed{\\sqrt{12}}", "2\\sqrt{3}").correct is True


@pytest.mark.timeout(120)
def test_grade_many_aligns_predictions_golds_and_kinds(grader):
    grades = grader.grade_many(
        ["\\boxed{\\sqrt{8}}", "\\boxed{17}", "nothing", "\\boxed{1,000}"],
        ["2\\sqrt{2}", "18", "3", "1000"],
        kind=["math", "numeric", "math", "numeric"],
    )
    assert [g.correct for g in grades] == [True, False, False, True]
    assert [g.status for g in grades] == ["ok", "ok", "no_answer", "ok"]
    assert grader.grade_many(["\\boxed{2}"], ["2"], kind="numeric", progress=True)[0].correct is True


def test_bad_arguments_raise_user_errors():
    with pytest.raises(UserError, match="kind"):
        grade("\\boxed{1}", "1", kind="symbolic")
    with pytest.raises(UserError, match="length"):
        shared_grader().grade_many(["a", "b"], ["a"], kind="numeric")
    with pytest.raises(UserError, match="timeout"):
        Grader(timeout=0)


ORPHAN_SCRIPT = """
import importlib, sys, threading
grade_module = importlib.import_module("reasonlens.eval.grade")  # the package's `grade` is the function
grade_module._ORPHAN_GRACE_SECONDS = 1
grader = grade_module.Grader(standby=False)
grader.start()
print(grader._worker.process.pid, flush=True)
threading.Thread(target=grader.grade, args=(sys.argv[1], "3"), kwargs={"timeout": 3}).start()
threading.Event().wait()
"""


@pytest.mark.timeout(120)
def test_a_worker_orphaned_mid_request_exits_on_its_own():
    """If the grading process is SIGKILLed while sympy hangs, the worker must not live on."""
    import os
    import subprocess
    import sys
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, HANGING_FACTORIAL], stdout=subprocess.PIPE, text=True
    )
    worker_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # let the hanging request reach the worker
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60  # the dead parent cannot kill it: only the worker's own alarm (3 + 1 s) can
    alive = True
    while alive and time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
            with open(f"/proc/{worker_pid}/stat") as stat:
                alive = stat.read().split()[2] != "Z"
        except (ProcessLookupError, FileNotFoundError):
            alive = False
        time.sleep(0.2)
    assert not alive


def test_letter_mode_is_selected_by_the_dataset():
    from reasonlens.data import Problem, grader_kind
    from reasonlens.data.registry import register_dataset

    register_dataset("test-multiple-choice", lambda split: [Problem("q1", "Pick one", "", "B", {})], grader="letter")
    assert grader_kind("test-multiple-choice") == "letter"
    assert grade("Because B is valid", "B", kind=grader_kind("test-multiple-choice")).correct is True
    assert grade("The answer is (C).", "(B)", kind="letter").correct is False
    assert grade("no choice here", "B", kind="letter").status == "no_answer"
    assert grade("\\boxed{B}", "seven", kind="letter").status == "ungradable"
