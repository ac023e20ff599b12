"""`word-arith`: the generated word problems SmolLM2-135M-Instruct is measured on (issue 16 part 4)."""

import re

import pytest

from reasonlens.data import grader_kind, load_problems, registered_datasets
from reasonlens.errors import UserError


def _evaluate(question: str) -> int:
    """Re-derive the answer from the question text alone (an independent check of the generator)."""
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    value = numbers[0] * numbers[1] if " in each." in question else numbers[0]
    for verb, amount in re.findall(r"(buys|finds|gets|gives away|loses|eats|sells) (\d+)", question):
        value = value + int(amount) if verb in ("buys", "finds", "gets") else value - int(amount)
    return value


def test_registered_numeric_and_deterministic():
    assert "word-arith" in registered_datasets() and grader_kind("word-arith") == "numeric"
    first = load_problems("word-arith", split="test", n=50)
    assert [p.to_dict() for p in first] == [p.to_dict() for p in load_problems("word-arith", split="test", n=50)]
    assert [p.meta["level"] for p in first[:10]] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]  # interleaved


def test_answers_follow_from_the_question_and_the_worked_solution():
    for split in ("train", "test"):
        for p in load_problems("word-arith", split=split):
            assert _evaluate(p.question) == int(p.answer) > 0, p.question
            assert p.solution.endswith(f"\\boxed{{{p.answer}}}.")


def test_train_and_test_never_share_arithmetic_and_levels_select():
    for level in (1, 2, 3, 4, 5):
        train = load_problems(f"word-arith:{level}", split="train")
        test = load_problems(f"word-arith:{level}", split="test")
        assert len(train) == 400 and len(test) == 300
        assert {p.meta["signature"] for p in train}.isdisjoint(p.meta["signature"] for p in test)
        assert {p.meta["level"] for p in test} == {level}
    assert {p.meta["level"] for p in load_problems("word-arith:1,2", split="test", n=10)} == {1, 2}
    with pytest.raises(UserError, match="levels must be among"):
        load_problems("word-arith:9")
    with pytest.raises(UserError, match="no split 'dev'"):
        load_problems("word-arith", split="dev")
