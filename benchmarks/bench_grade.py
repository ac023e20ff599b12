"""Grading throughput and bounds: reasonlens Grader vs plain in-process math-verify, same run.

Measures the grading corpus (tests/grading/corpus.jsonl) split into boxed and unboxed completions:
cases/s, p50/p99 latency per call and agreement with the expected verdicts, for the Grader and for
bare math-verify ``parse(completion)`` + ``verify`` (the baseline, in-process, timeouts disabled);
then worker start-up, 500 MATH-500 predictions (the reference solutions, which mostly hit the
string path, and mismatched solutions, which all go to math-verify), GSM8K numeric grading, and the
wall time of each adversarial prediction. The baseline is math-verify's parse + verify called
directly in this process with its timeouts disabled (what a caller without a grader would run).

Usage: python benchmarks/bench_grade.py [--n 500]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import threading
import time
from pathlib import Path

from reasonlens.eval import Grader

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "grading" / "corpus.jsonl"
ADVERSARIAL = {
    "10^10^10": "\\boxed{10^10^10}",
    "9^9^9^9": "\\boxed{9^{9^{9^{9}}}}",
    "(10^100000)!": "\\boxed{(10^{100000})!}",
    "1 MB text": "lorem ipsum " * 83_000,
    "1 MB answer": "\\boxed{" + "x+" * 500_000 + "1}",
    "deep braces": "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}",
    "fullwidth digits": "\\boxed{\uff11\uff18}",
    "Arabic-Indic digits": "\\boxed{\u0661\u0668}",
}


def _rows(name: str, n: int) -> list[dict]:
    path = DATA / f"{name}_test.jsonl"
    if not path.exists():
        path = Path("/work/shared/data") / f"{name}_test.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle][:n]


def _baseline(predictions: list[str], golds: list[str]) -> tuple[float, int]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    started = time.perf_counter()
    correct = 0
    for prediction, gold in zip(predictions, golds):
        gold_parsed = parse(f"${gold}$", parsing_timeout=None)
        correct += bool(verify(gold_parsed, parse(prediction, parsing_timeout=None), timeout_seconds=None))
    return time.perf_counter() - started, correct


def _ours(grader: Grader, predictions: list[str], golds: list[str], kind: str) -> tuple[float, int]:
    started = time.perf_counter()
    grades = grader.grade_many(predictions, golds, kind=kind)
    return time.perf_counter() - started, sum(bool(g.correct) for g in grades)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _timed(grade_one, cases: list[dict]) -> tuple[float, list[float], int]:
    """Total seconds, per-call latencies and agreements with the expected verdicts."""
    latencies, agree = [], 0
    started = time.perf_counter()
    for case in cases:
        call = time.perf_counter()
        agree += grade_one(case) is case["expected"]
        latencies.append(time.perf_counter() - call)
    return time.perf_counter() - started, latencies, agree


def _bare_math_verify(case: dict) -> bool:
    from math_verify import parse, verify

    gold = parse(f"${case['gold']}$", parsing_timeout=None)
    return bool(verify(gold, parse(case["completion"], parsing_timeout=None), timeout_seconds=None))


def _corpus(grader: Grader) -> None:
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = [c for c in cases if c["kind"] == "math"]  # the kind bare math-verify grades
    print(f"grading corpus, math kind ({len(cases)} cases); baseline = bare math-verify parse(completion) + verify")
    for label, subset in (
        ("boxed", [c for c in cases if "\\boxed" in c["completion"]]),
        ("unboxed", [c for c in cases if "\\boxed" not in c["completion"]]),
    ):
        ours_s, ours_lat, ours_ok = _timed(
            lambda c: grader.grade(c["completion"], c["gold"], kind="math").correct, subset
        )
        base_s, base_lat, base_ok = _timed(_bare_math_verify, subset)
        print(
            f"  {label:8s} x{len(subset)}: reasonlens {len(subset) / ours_s:7.1f} cases/s, p50 "
            f"{1e3 * statistics.median(ours_lat):6.2f} ms, p99 {1e3 * _percentile(ours_lat, 0.99):7.2f} ms, "
            f"agreement {ours_ok}/{len(subset)} | math-verify {len(subset) / base_s:7.1f} cases/s, p50 "
            f"{1e3 * statistics.median(base_lat):6.2f} ms, p99 {1e3 * _percentile(base_lat, 0.99):7.2f} ms, "
            f"agreement {base_ok}/{len(subset)} | throughput reasonlens/math-verify {base_s / ours_s:.2f}x"
        )


def _bounded_from_a_thread(grader: Grader) -> None:
    """The timeout holds for a call made from a non-main thread (math-verify's SIGALRM cannot)."""
    result: dict = {}

    def work():
        started = time.perf_counter()
        result["grade"] = grader.grade("\\boxed{(10^{100000})!}", "18", kind="math", timeout=1.0)
        result["wall"] = time.perf_counter() - started

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    print(
        f"hanging sympy from a worker thread, budget 1 s: {result['wall']:.2f} s, {result['grade'].status}, "
        f"{result['grade'].reason}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()

    math_rows = _rows("math500", args.n)
    golds = [row["answer"] for row in math_rows]
    solutions = [row["solution"] for row in math_rows]
    mismatched = solutions[1:] + solutions[:1]
    gsm_rows = _rows("gsm8k", 1319)

    with Grader() as grader:
        started = time.perf_counter()
        grader.start()
        print(f"worker start-up: {time.perf_counter() - started:.2f} s")
        _corpus(grader)
        _bounded_from_a_thread(grader)

        for label, predictions in (("reference solutions", solutions), ("mismatched solutions", mismatched)):
            ours_s, ours_ok = _ours(grader, predictions, golds, "math")
            base_s, base_ok = _baseline(predictions, golds)
            print(
                f"MATH-500 x{len(golds)} {label}: reasonlens {ours_s:.2f} s ({ours_ok} correct), "
                f"in-process math-verify {base_s:.2f} s ({base_ok} correct), time ratio reasonlens/math-verify {ours_s / base_s:.2f}x"
            )

        gsm_s, gsm_ok = _ours(grader, [r["solution"] for r in gsm_rows], [r["answer"] for r in gsm_rows], "numeric")
        print(
            f"GSM8K x{len(gsm_rows)} numeric: {gsm_s:.3f} s ({gsm_ok} correct), {1e3 * gsm_s / len(gsm_rows):.3f} ms/sample"
        )

        print("adversarial predictions (gold '18', budget 5 s):")
        for kind in ("math", "numeric"):
            for name, prediction in ADVERSARIAL.items():
                started = time.perf_counter()
                result = grader.grade(prediction, "18", kind=kind, timeout=5.0)
                wall = time.perf_counter() - started
                print(
                    f"  {kind:7s} {name:20s} {wall:5.2f} s  {result.status:10s} correct={result.correct}  {result.reason or ''}"
                )
        print(f"worker restarts: {grader.restarts}")


if __name__ == "__main__":
    main()
