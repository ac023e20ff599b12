"""Datasets, file loading with clear errors, prompt templates."""

import pytest

from reasonlens.data import Problem, grader_kind, load_problems, render_prompt
from reasonlens.errors import UserError


@pytest.mark.parametrize(
    "name,count,first_answer",
    [("gsm8k", 1319, "18"), ("math500", 500, None), ("aime24", 30, "204"), ("aime25", 30, "70")],
)
def test_bundled_datasets(name, count, first_answer):
    problems = load_problems(name)
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    assert all(p.question.strip() and p.answer.strip() for p in problems)
    if first_answer:
        assert problems[0].answer == first_answer


def test_slicing_and_graders():
    assert [p.id for p in load_problems("gsm8k", n=2, offset=3)] == ["gsm8k-test-3", "gsm8k-test-4"]
    assert grader_kind("gsm8k") == "numeric" and grader_kind("math500") == "math"
    with pytest.raises(UserError, match="--limit"):
        load_problems("gsm8k", n=0)


def test_local_files_with_field_map(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "1+1?", "a": 2, "k": "x"}\n\n{"q": "2+2?", "a": "4"}\n')
    problems = load_problems(str(path), field_map={"question": "q", "answer": "a"})
    assert [(p.question, p.answer, p.id) for p in problems] == [("1+1?", "2", "row-0"), ("2+2?", "4", "row-1")]
    csv = tmp_path / "d.csv"
    csv.write_text("question,answer\nWhat?,3\n")
    assert load_problems(str(csv))[0].answer == "3"


@pytest.mark.parametrize(
    "content,match",
    [
        (b'{"question": "a", "answer": "1"}\n{"question": "b", "answer"\n', r"d.jsonl:2: invalid JSON"),
        (b'{"answer": "1"}\n', r"d.jsonl:1: missing field 'question'"),
        (b'{"question": "  ", "answer": "1"}\n', r"d.jsonl:1: field 'question' is empty"),
        (b'{"question": ["x"], "answer": "1"}\n', r"d.jsonl:1: field 'question' must be a string"),
        (b'{"question": "q", "answer": "1"}\n\xff\xfe\n', r"d.jsonl:2: line is not valid UTF-8"),
        (b"[1, 2]\n", r"d.jsonl:1: expected a JSON object"),
        (b"", r"no rows"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, content, match):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_problems(str(path))


def test_unknown_dataset_and_template():
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        load_problems("nope")
    with pytest.raises(UserError, match="unknown --template"):
        render_prompt(Problem("i", "q", "", "1"), "fancy")


def test_templates(smollm2):
    p = Problem("i", "What is 2+3?", "", "5")
    assert render_prompt(p, "raw") == "What is 2+3?"
    assert render_prompt(p, "deepseek-math") == (
        "User: What is 2+3?\nPlease reason step by step, and put your final answer within \\boxed{}.\n\nAssistant:"
    )
    chat = render_prompt(p, "chat", smollm2.tokenizer, system="Be brief.")
    assert "Be brief." in chat and "What is 2+3?" in chat and chat.rstrip().endswith("assistant")


def test_dataset_info_resolves_a_variant_through_its_base_name():
    from reasonlens.data import dataset_info

    base = dataset_info("synthetic-reasoner")
    assert base is not None and dataset_info("synthetic-reasoner:1-6") is base
    assert dataset_info("no-such-dataset:1") is None


def test_a_variant_reaches_only_loaders_that_take_one_and_loader_errors_are_not_masked():
    from reasonlens.data import register_dataset

    with pytest.raises(UserError, match="dataset 'gsm8k' has no variants"):
        load_problems("gsm8k:easy")

    def broken(split: str, variant: str | None = None) -> list[Problem]:
        raise TypeError("a bug inside the loader")

    register_dataset("test-broken-variant", broken)
    with pytest.raises(TypeError, match="a bug inside the loader"):
        load_problems("test-broken-variant:1")
    assert [p.meta["level"] for p in load_problems("synthetic-hops:2", n=3)] == [2, 2, 2]
