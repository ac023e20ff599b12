"""Grading of model completions against gold answers, every call bounded in wall time.

Three kinds (the dataset registry names one per dataset):

- ``"numeric"`` (GSM8K, synthetic tasks): the final number of the extracted answer is compared
  exactly (``Fraction``) with the gold number. Nothing is ever evaluated beyond a fixed bit bound, so
  ``10^{10^{10}}`` is recognised as too large to equal the gold without being computed.
- ``"math"`` (MATH-500, AIME): the answer as math-verify's own extraction order finds it
  (:func:`~reasonlens.eval.extract.extract_math_answer`; boxes listed together become one set/tuple
  when the gold is one); then a normalised string comparison; unequal exact numbers are wrong before
  any float tolerance; word and choice golds are compared as words/letters; otherwise HF math-verify
  ``parse`` + ``verify`` with the gold parsed first.
- ``"letter"`` (multiple-choice datasets): the chosen option A-E against the gold letter.

math-verify's own timeouts use ``SIGALRM``, which only works in the main thread, and a long sympy
computation (``9^{9^{9^{9}}}``, ``(10^{100000})!``) can sit inside one C call that no signal
interrupts. So math-verify runs with its timeouts disabled in a persistent worker subprocess that
the :class:`Grader` owns, re-uses across calls, and kills and restarts when a call overruns its
timeout. The sample is then ``ungradable`` with the reason. This works from any thread.

The worker is a fresh interpreter started with :mod:`subprocess` rather than a multiprocessing
'spawn'/'forkserver' context: those re-import the parent's ``__main__`` module in the child (for
the ``reasonlens`` console script that is the whole CLI with torch), and their pipes pickle
messages. Here requests and replies are JSON lines on the worker's stdin/stdout.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from reasonlens.errors import UserError
from reasonlens.eval.extract import (
    Extraction,
    extract_answer_with_source,
    extract_letter,
    extract_math_answer,
    read_final_number,
    read_number,
)

__all__ = [
    "GRADE_KINDS",
    "GRADER_VERSION",
    "Grade",
    "GradeKind",
    "GradeStatus",
    "Grader",
    "GraderUnavailable",
    "grade",
    "normalize_latex",
    "shared_grader",
]

GradeKind = Literal["math", "numeric", "letter"]
GradeStatus = Literal["ok", "no_answer", "ungradable"]
GRADE_KINDS: tuple[str, ...] = ("math", "numeric", "letter")
# Recorded in run manifests by `reasonlens regrade`; bump whenever a verdict on some input can change.
GRADER_VERSION = "2"

# Answers longer than this, or nested deeper, are not handed to sympy: no real answer is this
# large, and parsing one would only burn the timeout and a worker restart.
MAX_SYMBOLIC_CHARS = 2_000
MAX_SYMBOLIC_DEPTH = 40
_KILL_MARGIN_SECONDS = 0.05
_MIN_WORKER_SECONDS = 0.05
# A worker whose parent died mid-request kills itself this long after the request's budget.
_ORPHAN_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Grade:
    """Verdict on one prediction.

    ``correct`` is ``None`` only when ``status == "ungradable"`` (timeout, gold unreadable, worker
    failure); a missing answer is ``status="no_answer"`` and ``correct=False``. ``reason`` explains
    every verdict that is not a plain comparison.
    """

    correct: bool | None
    extracted: str | None
    status: GradeStatus
    reason: str | None = None


class GraderUnavailable(RuntimeError):
    """The math-verify worker could not be started (e.g. math-verify is not installed)."""


# ---------------------------------------------------------------------------------------------
# Fast string path

_IGNORABLE_LATEX = re.compile(
    r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\displaystyle(?![A-Za-z])|\\[!,;: ]|\\mathrm(?![A-Za-z])|\s+|\$"
)


def normalize_latex(text: str) -> str:
    """Spacing- and presentation-insensitive form of a LaTeX answer, for the exact-match shortcut.

    It drops what MATH-style grading ignores: whitespace, ``$``, ``\\left``/``\\right``, thin
    spaces, ``\\displaystyle``, ``\\mathrm``, a trailing period and a degree sign (``^\\circ``), and
    maps ``\\dfrac``/``\\tfrac`` to ``\\frac``. Used only to declare a match, never a mismatch.
    """
    text = _IGNORABLE_LATEX.sub("", text)
    text = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", text)
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\u00b0", "").replace("\\degree", "")
    return text.rstrip(".")


def _max_brace_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth = max(0, depth - 1)
    return deepest


# ---------------------------------------------------------------------------------------------
# Worker side (runs in the subprocess)


def _worker_main() -> None:  # pragma: no cover - exercised through the subprocess
    """Serve ``{"id", "gold", "pred"}`` JSON lines on stdin with ``{"id", "correct"}`` replies."""
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol channel
    try:
        import logging

        from math_verify import parse, verify

        logging.getLogger("math_verify").setLevel(logging.CRITICAL)
        parse("$1$", parsing_timeout=None)  # warm the LaTeX parser before reporting ready
        memory_limit = int(os.environ.get("REASONLENS_GRADER_MEMORY_MB", "0"))
        if memory_limit > 0:
            import resource

            limit = memory_limit * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except Exception as error:  # report instead of dying silently
        protocol_out.write(json.dumps({"ready": False, "error": f"{type(error).__name__}: {error}"}) + "\n")
        return
    protocol_out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")

    # The parent kills us on overrun; this default-action alarm (which the kernel enforces even
    # while sympy sits in one C call) only matters if the parent died mid-request.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    gold_cache: dict[str, list] = {}
    for line in sys.stdin:
        request = json.loads(line)
        signal.alarm(int(request["hard_limit"]))
        reply: dict = {"id": request["id"]}
        try:
            gold = gold_cache.get(request["gold"])
            if gold is None:
                gold = parse(request["gold"], parsing_timeout=None)
                if len(gold_cache) > 4096:
                    gold_cache.clear()
                gold_cache[request["gold"]] = gold
            if not gold:
                reply["error"] = "math-verify could not parse the gold answer"
            else:
                prediction = parse(request["pred"], parsing_timeout=None)
                reply["parsed"] = bool(prediction)
                reply["correct"] = bool(prediction) and bool(verify(gold, prediction, timeout_seconds=None))
        except BaseException as error:  # MemoryError/RecursionError from sympy: a verdict, not a crash
            reply["error"] = f"math-verify failed: {type(error).__name__}"
        signal.alarm(0)
        protocol_out.write(json.dumps(reply) + "\n")


# ---------------------------------------------------------------------------------------------
# Parent side


class _WorkerTimeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


class _MathVerifyWorker:
    """One worker subprocess plus the JSON-lines channel to it; not thread-safe on its own."""

    def __init__(self, memory_limit_mb: int | None):
        package_parent = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([package_parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["REASONLENS_GRADER_MEMORY_MB"] = str(memory_limit_mb or 0)
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from reasonlens.eval.grade import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C in the terminal goes to the run, which closes us
        )
        self._finalizer = weakref.finalize(self, _kill, self.process)
        self._buffer = b""
        # poll, not select: select fails on descriptors >= 1024, common in big processes.
        self._poller = select.poll()
        self._poller.register(self.process.stdout.fileno(), select.POLLIN)
        self.ready = False
        self.startup_seconds: float | None = None
        self.requests_served = 0

    def wait_ready(self, timeout: float) -> None:
        if self.ready:
            return
        try:
            message = json.loads(self._read_line(timeout))
        except _WorkerTimeout:
            raise GraderUnavailable(f"math-verify worker did not start within {timeout:.0f}s") from None
        except _WorkerDied as error:
            raise GraderUnavailable(f"math-verify worker died while starting: {error}") from None
        if not message.get("ready"):
            raise GraderUnavailable(f"math-verify worker failed to start: {message.get('error')}")
        self.ready = True
        self.startup_seconds = time.perf_counter() - self.started_at

    def request(self, payload: dict, timeout: float) -> dict:
        try:
            self.process.stdin.write((json.dumps(payload) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise _WorkerDied(f"cannot write to worker: {error}") from None
        reply = json.loads(self._read_line(timeout))
        self.requests_served += 1
        return reply

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerTimeout()
            if not self._poller.poll(remaining * 1000):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self.process.wait()
                raise _WorkerDied(f"worker exited with code {code}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8")

    def kill(self) -> None:
        self._finalizer()


class Grader:
    """Grades predictions; owns the math-verify worker (context manager, thread-safe).

    ``timeout`` is the wall-time budget of one :meth:`grade` call (extraction plus math-verify
    parse + verify); when math-verify overruns it the worker is killed, the standby takes over, and
    the sample is ``ungradable``. Waiting for another thread's call or for a worker's cold start is
    not counted; ``startup_timeout`` bounds a start-up separately. ``memory_limit_mb`` caps the worker's
    address space so a runaway sympy computation fails instead of swapping the machine.
    ``recycle_after`` restarts the worker after that many requests to keep sympy caches bounded.
    With ``standby`` a second, idle worker is kept started, so the sample after a timeout does not
    wait for a cold start (about 1 s, longer on a busy machine) on top of its own budget.
    """

    def __init__(
        self,
        timeout: float = 5.0,
        startup_timeout: float = 60.0,
        memory_limit_mb: int | None = 4096,
        recycle_after: int = 5000,
        standby: bool = True,
    ):
        if timeout <= 0:
            raise UserError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.memory_limit_mb = memory_limit_mb
        self.recycle_after = recycle_after
        self.standby = standby
        self._worker: _MathVerifyWorker | None = None
        self._standby: _MathVerifyWorker | None = None
        self._lock = threading.Lock()
        self.restarts = 0
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker; a later call starts a new one."""
        with self._lock:
            for worker in (self._worker, self._standby):
                if worker is not None:
                    worker.kill()
            self._worker = self._standby = None

    def start(self) -> float:
        """Start the worker now (otherwise the first math call does) and return its start-up seconds."""
        with self._lock:
            return self._ready_worker().startup_seconds or 0.0

    def _ready_worker(self) -> _MathVerifyWorker:
        if self._worker is None:
            self._worker = _MathVerifyWorker(self.memory_limit_mb)
        try:
            self._worker.wait_ready(self.startup_timeout)
        except GraderUnavailable:
            self._worker.kill()
            self._worker = None
            raise
        if self.standby and self._standby is None:
            self._standby = _MathVerifyWorker(self.memory_limit_mb)
        return self._worker

    def _replace_worker(self) -> None:
        """Kill the current worker and promote the standby (its replacement starts on next use)."""
        if self._worker is not None:
            self._worker.kill()
        self._worker, self._standby = self._standby, None
        self.restarts += 1

    # -- grading -----------------------------------------------------------------------------

    def grade(self, prediction_text: str, gold: str, kind: GradeKind = "math", timeout: float | None = None) -> Grade:
        """Grade one completion against its gold answer (see the module docstring for the kinds)."""
        if kind not in GRADE_KINDS:
            raise UserError(f"grading kind must be one of {', '.join(GRADE_KINDS)}, got {kind!r}")
        if not isinstance(prediction_text, str) or not isinstance(gold, str):
            raise UserError("prediction_text and gold must be strings")
        started = time.monotonic()
        extract = {"numeric": extract_answer_with_source, "letter": extract_letter}.get(kind, extract_math_answer)
        extraction = extract(prediction_text)
        if extraction is None:
            return Grade(False, None, "no_answer", "no answer found in the completion")
        if kind == "numeric":
            return _grade_numeric(extraction.text, gold)
        if kind == "letter":
            return _grade_letter(extraction.text, gold)
        budget = self.timeout if timeout is None else timeout
        if budget <= 0:
            raise UserError(f"timeout must be positive, got {budget}")
        answer = _math_candidate(extraction, gold)
        decided = _decide_without_sympy(answer, gold)
        if decided is not None:
            return decided
        return self._grade_math(_as_interval_if_gold_is_one(answer, gold), gold, budget, started)

    def grade_many(
        self,
        predictions: Sequence[str],
        golds: Sequence[str],
        kind: GradeKind | Sequence[GradeKind] = "math",
        timeout: float | None = None,
        progress: bool = False,
    ) -> list[Grade]:
        """Grade aligned lists; ``kind`` is one kind for all or one per prediction."""
        if len(predictions) != len(golds):
            raise UserError(f"predictions ({len(predictions)}) and golds ({len(golds)}) differ in length")
        kinds = [kind] * len(predictions) if isinstance(kind, str) else list(kind)
        if len(kinds) != len(predictions):
            raise UserError(f"kind has {len(kinds)} entries for {len(predictions)} predictions")
        if not progress:
            return [self.grade(p, g, k, timeout) for p, g, k in zip(predictions, golds, kinds)]
        from rich.progress import Progress

        grades: list[Grade] = []
        with Progress(transient=True) as bar:
            task = bar.add_task("grading", total=len(predictions))
            for p, g, k in zip(predictions, golds, kinds):
                grades.append(self.grade(p, g, k, timeout))
                bar.advance(task)
        return grades

    def _grade_math(self, answer: str, gold: str, timeout: float, started: float) -> Grade:
        gold = gold.strip()
        if not gold:
            return Grade(None, answer, "ungradable", "gold answer is empty")
        if normalize_latex(answer) == normalize_latex(gold):
            return Grade(True, answer, "ok", None)
        exact = _compare_plain_numbers(answer, gold)
        if exact is not None:
            return exact
        if len(answer) > MAX_SYMBOLIC_CHARS:
            return Grade(None, answer, "ungradable", f"answer too long for symbolic grading ({len(answer)} chars)")
        if (depth := _max_brace_depth(answer)) > MAX_SYMBOLIC_DEPTH:
            return Grade(None, answer, "ungradable", f"answer nested too deeply for symbolic grading (depth {depth})")
        if len(gold) > MAX_SYMBOLIC_CHARS:
            return Grade(None, answer, "ungradable", f"gold answer too long ({len(gold)} chars)")
        payload = {"gold": _as_math(gold), "pred": "\\boxed{" + answer.replace("\\$", "") + "}"}
        # The budget covers the whole call (extraction included), less a margin for killing an
        # overrunning worker; waiting for the lock or for a worker's cold start is not counted.
        worker_budget = max(_MIN_WORKER_SECONDS, timeout - (time.monotonic() - started) - _KILL_MARGIN_SECONDS)
        reply = self._ask_worker(payload, worker_budget, timeout)
        if "timeout" in reply or "died" in reply:
            return Grade(None, answer, "ungradable", reply.get("timeout") or reply.get("died"))
        if "error" in reply:
            return Grade(None, answer, "ungradable", reply["error"])
        if not reply.get("parsed"):
            return Grade(False, answer, "ok", "math-verify could not parse the answer")
        return Grade(bool(reply["correct"]), answer, "ok", None)

    def _ask_worker(self, payload: dict, timeout: float, reported_timeout: float) -> dict:
        with self._lock:
            worker = self._ready_worker()
            if worker.requests_served >= self.recycle_after:
                self._replace_worker()
                worker = self._ready_worker()
            hard_limit = math.ceil(timeout) + _ORPHAN_GRACE_SECONDS
            payload = {"id": worker.requests_served, "hard_limit": hard_limit, **payload}
            try:
                return worker.request(payload, timeout)
            except _WorkerTimeout:
                self._replace_worker()
                return {"timeout": f"math-verify timed out (grading budget {reported_timeout:g}s)"}
            except _WorkerDied as error:
                self._replace_worker()
                return {"died": f"math-verify worker died: {error}"}


def _compare_plain_numbers(answer: str, gold: str) -> Grade | None:
    """Exact verdict when both sides are plain numeric expressions, else ``None`` (ask math-verify).

    Equal values are correct; an answer beyond the exact-arithmetic bound (``9^{9^{9^{9}}}``) is
    wrong without sympy ever trying to expand it; unequal exact values (integers, fractions, powers)
    are wrong before any float tolerance. Only an unequal *decimal* answer goes on to math-verify,
    which accepts rounded decimals (``0.333333`` for ``\\frac{1}{3}``).
    """
    gold_reading = read_number(gold)
    if gold_reading.value is None:
        return None
    reading = read_number(answer)
    if ("%" in gold) != ("%" in answer):
        # read_number drops a percent sign: 12.5\% is read as 12.5; the answer may say 12.5 or 0.125
        if reading.value is not None and (
            reading.value == gold_reading.value
            or reading.value * 100 == gold_reading.value
            or reading.value == gold_reading.value * 100
        ):
            return Grade(True, answer, "ok", None)
        return None
    if reading.status == "out_of_range":
        return Grade(False, answer, "ok", f"{reading.reason}; cannot equal the gold")
    if reading.value is None:
        return None
    if reading.value == gold_reading.value:
        return Grade(True, answer, "ok", None)
    if "." not in answer:
        # Both exact and unequal: math-verify would compare them as rounded floats (1/2^99 = 1/2^98).
        return Grade(False, answer, "ok", "exact values differ")
    return None


_TEXT_GOLD = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{\s*([A-Za-z][A-Za-z ]*)\s*\}$")
_CHOICE_GOLD = re.compile(r"^(?:\\(?:text|textbf|mathrm)\{\s*)?\(?([A-E])\)?\s*\}?$")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf)\{([^{}]*)\}")


def _plain_words(text: str) -> str:
    """``\\text{ East }.`` -> ``east``: a word answer without LaTeX wrappers, case or punctuation."""
    text = _TEXT_WRAPPER.sub(r"\1", text)
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def _decide_without_sympy(answer: str, gold: str) -> Grade | None:
    """Verdicts for golds that are words or a choice, which sympy would read as products of symbols
    (``even`` would equal ``neve``): compared as words, case and LaTeX wrappers ignored."""
    gold = gold.strip()
    choice = _CHOICE_GOLD.match(gold)
    if choice and len(gold) > 1:  # "\text{(C)}", "(C)"; a bare "C" may be a variable
        letter = extract_letter(answer)
        return Grade(letter is not None and letter.text == choice.group(1), answer, "ok", None)
    text_gold = _TEXT_GOLD.match(gold)
    if text_gold:
        return Grade(_plain_words(answer) == _plain_words(gold), answer, "ok", None)
    return None


def _top_level_commas(text: str) -> int:
    depth = commas = 0
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            commas += 1
    return commas


def _math_candidate(extraction: Extraction, gold: str) -> str:
    """The extracted answer, or its parts joined into one set/tuple when the gold is one."""
    parts = extraction.parts
    if len(parts) < 2:
        return extraction.text
    gold = gold.strip()
    joined = ", ".join(parts)
    if gold.startswith("\\{") or gold.startswith("\\left\\{"):
        return f"\\{{{joined}\\}}"
    if gold.startswith("(") and gold.endswith(")") and _top_level_commas(gold[1:-1]) > 0:
        return f"({joined})"
    return joined  # a list of answers for one gold value, or a plain list for a list gold


_RELATION = r"(?P<{name}><|>|\\le(?:q)?|\\ge(?:q)?|\\lt|\\gt|\u2264|\u2265)"
_BOUND = r"(?P<{name}>[^<>=\s][^<>=]*?)"
_ONE_SIDED = re.compile(rf"^\s*[a-z]\s*{_RELATION.format(name='rel')}\s*{_BOUND.format(name='bound')}\s*$")
_TWO_SIDED = re.compile(
    rf"^\s*{_BOUND.format(name='low')}\s*{_RELATION.format(name='rel1')}\s*[a-z]\s*"
    rf"{_RELATION.format(name='rel2')}\s*{_BOUND.format(name='high')}\s*$"
)
_OR = re.compile(r"\\text\{\s*or\s*\}|\bor\b|\\cup|\\lor")


def _relation_interval(text: str) -> str | None:
    """``x \\le 4`` -> ``(-\\infty, 4]``; ``3 < x \\le 4`` -> ``(3, 4]``; ``x \\in [1, 2]`` -> ``[1, 2]``."""
    text = text.strip()
    membership = re.match(r"^[a-z]\s*\\in\s*(.+)$", text)
    if membership:
        return membership.group(1)
    strict = lambda rel: rel in ("<", ">", "\\lt", "\\gt")  # noqa: E731
    less = lambda rel: rel in ("<", "\\lt", "\\le", "\\leq", "\u2264")  # noqa: E731
    two = _TWO_SIDED.match(text)
    if two and less(two["rel1"]) and less(two["rel2"]):
        return f"{'(' if strict(two['rel1']) else '['}{two['low']}, {two['high']}{')' if strict(two['rel2']) else ']'}"
    one = _ONE_SIDED.match(text)
    if one:
        rel, bound = one["rel"], one["bound"]
        if less(rel):
            return f"(-\\infty, {bound}{')' if strict(rel) else ']'}"
        return f"{'(' if strict(rel) else '['}{bound}, \\infty)"
    return None


def _as_interval_if_gold_is_one(answer: str, gold: str) -> str:
    """An inequality answer written as the interval the gold is (math-verify does not equate them)."""
    if not (
        "\\infty" in gold
        or "\\cup" in gold
        or re.match(r"^[a-z]\s*\\in\s", gold)
        or re.match(r"^\s*(?:\\left)?[(\[].*,.*[)\]]\s*$", gold)
    ):
        return answer
    pieces = [piece for piece in _OR.split(answer) if piece.strip()]
    intervals = [_relation_interval(piece) for piece in pieces]
    if not intervals or any(interval is None for interval in intervals):
        return answer
    return " \\cup ".join(intervals)


def _grade_letter(answer: str, gold: str) -> Grade:
    choice = _CHOICE_GOLD.match(gold.strip())
    if not choice:
        return Grade(None, answer, "ungradable", f"gold answer {gold[:80]!r} is not a choice letter A-E")
    return Grade(answer == choice.group(1), answer, "ok", None)


def _as_math(gold: str) -> str:
    """Gold in the form math-verify's LaTeX extraction expects: boxed content or a ``$...$`` span."""
    gold = gold.replace("\\$", "")  # a currency sign would end math-verify's $...$ span
    if "\\boxed" in gold or "$" in gold:
        return gold
    return f"${gold}$"


def _grade_numeric(answer: str, gold: str) -> Grade:
    gold_reading = read_final_number(gold)
    if gold_reading.value is None:
        return Grade(None, answer, "ungradable", f"gold answer {gold[:80]!r} is not a readable number")
    reading = read_final_number(answer)
    if reading.status == "out_of_range":
        return Grade(False, answer, "ok", f"{reading.reason}; cannot equal the gold")
    if reading.status == "no_number":
        return Grade(False, answer, "ok", "the answer contains no number")
    if reading.value is None:
        return Grade(None, answer, "ungradable", reading.reason)
    return Grade(reading.value == gold_reading.value, answer, "ok", None)


# ---------------------------------------------------------------------------------------------
# Module-level convenience

_shared: Grader | None = None
_shared_lock = threading.Lock()


def shared_grader() -> Grader:
    """The process-wide :class:`Grader` used by :func:`grade`, created on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Grader()
            atexit.register(_shared.close)
        return _shared


def grade(prediction_text: str, gold: str, kind: GradeKind = "math", timeout: float = 5.0) -> Grade:
    """Grade one completion with the shared :class:`Grader` (see :meth:`Grader.grade`)."""
    return shared_grader().grade(prediction_text, gold, kind, timeout)
