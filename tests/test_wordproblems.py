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


def test_few_shot_examples_are_right_and_never_a_problem_of_the_set():
    from reasonlens.data.templates import FEW_SHOT_EXAMPLES

    problems = [p for s in ("train", "test") for p in load_problems("word-arith", split=s)]
    signatures = {p.meta["signature"] for p in problems}
    for question, answer in FEW_SHOT_EXAMPLES:
        value = _evaluate(question)
        assert answer.endswith(f"= {value}. The answer is {value}."), (question, answer)
        start, amount = (int(n) for n in re.findall(r"\d+", question))
        signature = f"{start} {'+' if value > start else '-'}{amount}"
        assert signature not in signatures and question not in {p.question for p in problems}
    assert "7 +5" in signatures  # the signature format the check above relies on


def test_few_shot_templates_show_the_examples_then_the_question(smollm2):
    from reasonlens.data import Problem, render_prompt
    from reasonlens.data.templates import FEW_SHOT_EXAMPLES

    p = load_problems("word-arith:1", split="test", n=1)[0]
    plain = render_prompt(p, "few-shot")
    assert plain.endswith(f"Question: {p.question}\nAnswer:")
    assert plain.count("Question: ") == len(FEW_SHOT_EXAMPLES) + 1 and plain.count("The answer is") == 3
    chat = render_prompt(p, "chat-few-shot", smollm2.tokenizer, system="Be brief.")
    assert chat.index("Be brief.") < chat.index(FEW_SHOT_EXAMPLES[0][0]) < chat.index(FEW_SHOT_EXAMPLES[-1][1])
    assert chat.index(FEW_SHOT_EXAMPLES[-1][1]) < chat.index(p.question)
    assert chat.count("<|im_start|>assistant") == len(FEW_SHOT_EXAMPLES) + 1
    assert chat.rstrip().endswith("<|im_start|>assistant")
    with pytest.raises(UserError, match="no chat template"):
        render_prompt(Problem("i", "q", "", "1"), "chat-few-shot", None)
