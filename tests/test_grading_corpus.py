"""The grader's own corpus (tests/grading/corpus.jsonl): agreement with hand-written verdicts by category.

Every case is graded exactly as a run grades it (``Grader().grade(completion, gold, kind)``); a case agrees
when the verdict equals the expected one (an ``ungradable`` verdict never agrees). Agreement must be
>= 98% in every category and on the completions without a box. Misses are listed in
docs/reliability.md (grading section).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from reasonlens.eval import Grader

CORPUS = Path(__file__).parent / "grading" / "corpus.jsonl"
MIN_AGREEMENT = 0.98


def load_corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_corpus_is_well_formed():
    rows = load_corpus()
    assert len(rows) >= 200
    for row in rows:
        assert set(row) >= {"gold", "completion", "kind", "expected", "category", "style", "why"}
        assert row["kind"] in ("math", "numeric", "letter")
        assert isinstance(row["expected"], bool)
    unboxed = [row for row in rows if "\\boxed" not in row["completion"]]
    assert len(unboxed) >= 100
    assert {row["style"] for row in rows} >= {
        "boxed",
        "final-answer",
        "answer-bold",
        "markdown-bold",
        "prose",
        "answer-then-check",
        "truncated",
    }


@pytest.mark.timeout(600)
def test_agreement_by_category(capsys):
    rows = load_corpus()
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    with Grader() as grader:
        for row in rows:
            verdict = grader.grade(row["completion"], row["gold"], kind=row["kind"])
            agrees = verdict.correct is row["expected"]
            groups = [row["category"], "unboxed" if "\\boxed" not in row["completion"] else "boxed", "all"]
            for group in groups:
                tallies[group][0] += agrees
                tallies[group][1] += 1
            if not agrees:
                misses.append(f"{row['category']}/{row['style']}: gold {row['gold']!r} -> {verdict}")
    report = "\n".join(
        f"{group:12s} {agree:4d}/{total:<4d} {agree / total:.1%}" for group, (agree, total) in sorted(tallies.items())
    )
    with capsys.disabled():
        print("\ngrading corpus agreement\n" + report + ("\nmisses:\n" + "\n".join(misses) if misses else ""))
    low = {group: agree / total for group, (agree, total) in tallies.items() if agree / total < MIN_AGREEMENT}
    assert not low, f"agreement below {MIN_AGREEMENT:.0%}: {low}\n" + "\n".join(misses)
