"""``word-arith``: short natural-language arithmetic word problems for small pretrained chat models.

GSM8K is out of reach of SmolLM2-135M-Instruct (~0% accuracy), so nothing can be lost by an intervention on
it. This set is easy enough that such a model solves part of it and hard enough that it fails part of it:

* level 1: one addition of one-digit numbers ("Mia has 7 apples. She buys 5 more apples. ...");
* level 2: one subtraction from a number below 20 ("Tom has 14 coins. He loses 6 coins. ...");
* level 3: two additions/subtractions in a row;
* level 4: one multiplication of one-digit numbers ("3 bags with 4 apples in each");
* level 5: a multiplication followed by an addition or subtraction.

Measured (docs/results.md): SmolLM2-135M-Instruct under ``--template chat-few-shot`` solves ~94% of level 1,
~34% of level 2 (so ~60% of ``word-arith:1,2``, the demo's set; 200 test problems), ~6% of level 3 and ~56% of
level 4 (16 train problems each); under the "reason step by step" chat template it is near 0% on every level.

Everything is a pure function of ``(split, level, seed)``; train and test are split by the problem's arithmetic
(its *signature*: start value and operations, without names and objects): a signature whose hash falls in the
test bucket only ever appears in the test split, so the same sum is never in both. ``word-arith:1,2`` selects
levels (problems interleaved level by level, so any prefix of the list is balanced).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable

from reasonlens.data.registry import register_dataset
from reasonlens.errors import UserError

LEVELS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test")
SEED = 20261202
SIZE_PER_LEVEL = {"train": 400, "test": 300}
TEST_SHARE_PER_MILLE = 300

NAMES = (
    ("Mia", "She"),
    ("Tom", "He"),
    ("Ava", "She"),
    ("Leo", "He"),
    ("Sam", "He"),
    ("Zoe", "She"),
    ("Ben", "He"),
    ("Lily", "She"),
    ("Max", "He"),
    ("Nora", "She"),
)
ITEMS = ("apples", "marbles", "coins", "stickers", "books", "cards", "pencils", "cookies")
CONTAINERS = ("bags", "boxes", "jars", "baskets")


@dataclass(frozen=True)
class WordProblem:
    id: str
    question: str
    solution: str
    answer: int
    level: int
    signature: str


def _in_test_bucket(signature: str) -> bool:
    digest = hashlib.sha256(signature.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < TEST_SHARE_PER_MILLE


def _add(rng: random.Random, value: int, pronoun: str, items: str) -> tuple[str, int, str]:
    amount = rng.randint(2, 9)
    verb = rng.choice(("buys", "finds", "gets"))
    return f"{pronoun} {verb} {amount} more {items}.", value + amount, f"+{amount}"


def _sub(rng: random.Random, value: int, pronoun: str, items: str) -> tuple[str, int, str]:
    amount = rng.randint(1, min(value - 1, 9))
    verb = rng.choice(("gives away", "loses", "eats" if items == "cookies" else "sells"))
    return f"{pronoun} {verb} {amount} {items}.", value - amount, f"-{amount}"


def _add_or_sub(rng: random.Random, value: int, pronoun: str, items: str) -> tuple[str, int, str]:
    """One +/- step on ``value`` (the result stays >= 1): sentence, new value, signature part."""
    return (_sub if value > 3 and rng.random() < 0.5 else _add)(rng, value, pronoun, items)


def _draw(rng: random.Random, level: int) -> tuple[str, int, str]:
    """A question, its answer and its signature at ``level``."""
    name, pronoun = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    ask = f"How many {items} does {name} have now?"
    if level in (1, 2, 3):
        value = rng.randint(2, 9) if level == 1 else rng.randint(5, 19)
        step = {1: _add, 2: _sub, 3: _add_or_sub}[level]
        sentences, signature = [f"{name} has {value} {items}."], [str(value)]
        for _ in range(2 if level == 3 else 1):
            text, value, part = step(rng, value, pronoun, items)
            sentences.append(text)
            signature.append(part)
        return " ".join(sentences + [ask]), value, " ".join(signature)
    groups, each = rng.randint(2, 9), rng.randint(2, 9)
    container = rng.choice(CONTAINERS)
    first = f"{name} has {groups} {container} with {each} {items} in each."
    value = groups * each
    if level == 4:
        return f"{first} {ask}", value, f"{groups}x{each}"
    text, value, part = _add_or_sub(rng, value, pronoun, items)
    return f"{first} {text} {ask}", value, f"{groups}x{each} {part}"


def worked_solution(signature: str) -> str:
    """The arithmetic of a signature written out ("7 x 3 = 21. 21 + 4 = 25. The answer is \\boxed{25}.")."""
    parts = signature.split()
    if "x" in parts[0]:
        groups, each = (int(x) for x in parts[0].split("x"))
        value, lines = groups * each, [f"{groups} x {each} = {groups * each}."]
    else:
        value, lines = int(parts[0]), []
    for part in parts[1:]:
        new = value + int(part)
        lines.append(f"{value} {part[0]} {part[1:]} = {new}.")
        value = new
    return " ".join(lines + [f"The answer is \\boxed{{{value}}}."])


def generate_level(split: str, level: int, n: int, seed: int = SEED) -> list[WordProblem]:
    """The first ``n`` problems of ``level`` in ``split`` (deterministic; never a signature of the other split)."""
    if split not in SPLITS:
        raise UserError(f"dataset 'word-arith' has no split '{split}' (available: {', '.join(SPLITS)})")
    if level not in LEVELS:
        raise UserError(f"dataset 'word-arith': level {level} is not one of {', '.join(map(str, LEVELS))}")
    rng = random.Random(f"word-arith|{split}|{level}|{seed}")
    out: list[WordProblem] = []
    seen: set[str] = set()
    for _ in range(n * 200):
        if len(out) == n:
            break
        question, answer, signature = _draw(rng, level)
        solution = worked_solution(signature)
        if _in_test_bucket(signature) != (split == "test") or question in seen:
            continue
        seen.add(question)
        out.append(
            WordProblem(f"word-arith-{split}-L{level}-{len(out):04d}", question, solution, answer, level, signature)
        )
    return out


def parse_levels(variant: str | None) -> tuple[int, ...]:
    if not variant:
        return LEVELS
    try:
        levels = tuple(int(part) for part in variant.split(",") if part.strip())
    except ValueError:
        raise UserError(f"dataset 'word-arith:{variant}': levels must be comma-separated integers") from None
    bad = [level for level in levels if level not in LEVELS]
    if not levels or bad:
        raise UserError(f"dataset 'word-arith:{variant}': levels must be among {', '.join(map(str, LEVELS))}")
    return levels


def generate(split: str, levels: tuple[int, ...] = LEVELS, seed: int = SEED) -> list[WordProblem]:
    """Problems of every level, interleaved (level 1, level 2, ..., level 1, ...)."""
    per_level = [generate_level(split, level, SIZE_PER_LEVEL[split], seed) for level in levels]
    return [items[i] for i in range(max(map(len, per_level))) for items in per_level if i < len(items)]


def _loader() -> Callable[..., list[Any]]:
    def load(split: str, variant: str | None = None) -> list[Any]:
        from reasonlens.data.records import Problem

        return [
            Problem(p.id, p.question, p.solution, str(p.answer), {"level": p.level, "signature": p.signature})
            for p in generate(split, parse_levels(variant))
        ]

    return load


# Importing this module registers its datasets (the import in reasonlens/data/__init__.py is the registration line).
register_dataset(
    "word-arith",
    _loader(),
    grader="numeric",
    splits=SPLITS,
    description="one/two-step arithmetic word problems, levels 1-5 (generated; 'word-arith:1,2')",
)
