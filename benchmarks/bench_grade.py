"""Grading throughput and bounds: reasonlens Grader vs plain in-process math-verify, same run.

Measures worker start-up, 500 MATH-500 predictions (the reference solutions, which mostly hit the
string path, and mismatched solutions, which all go to math-verify), GSM8K numeric grading, and the
wall time of each adversarial prediction. The baseline is math-verify's parse + verify called
directly in this process with its timeouts disabled (what a caller without a grader would run).

Usage: python benchmarks/bench_grade.py [--n 500]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from reasonlens.eval import Grader

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
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

        for label, predictions in (("reference solutions", solutions), ("mismatched solutions", mismatched)):
            ours_s, ours_ok = _ours(grader, predictions, golds, "math")
            base_s, base_ok = _baseline(predictions, golds)
            print(
                f"MATH-500 x{len(golds)} {label}: reasonlens {ours_s:.2f} s ({ours_ok} correct), "
                f"in-process math-verify {base_s:.2f} s ({base_ok} correct), ratio {ours_s / base_s:.2f}x"
            )

        gsm_s, gsm_ok = _ours(grader, [r["solution"] for r in gsm_rows], [r["answer"] for r in gsm_rows], "numeric")
        print(f"GSM8K x{len(gsm_rows)} numeric: {gsm_s:.3f} s ({gsm_ok} correct), {1e3 * gsm_s / len(gsm_rows):.3f} ms/sample")

        print("adversarial predictions (gold '18', budget 5 s):")
        for kind in ("math", "numeric"):
            for name, prediction in ADVERSARIAL.items():
                started = time.perf_counter()
                result = grader.grade(prediction, "18", kind=kind, timeout=5.0)
                wall = time.perf_counter() - started
                print(f"  {kind:7s} {name:20s} {wall:5.2f} s  {result.status:10s} correct={result.correct}  {result.reason or ''}")
        print(f"worker restarts: {grader.restarts}")


if __name__ == "__main__":
    main()
