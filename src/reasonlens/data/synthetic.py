"""Seeded synthetic reasoning corpora for the model organisms.

Task families:

* ``synthetic-arith``: multi-step arithmetic word problems (2-6 operations, carries, parentheses) with
  chain-of-thought solutions written in natural reasoning language ("Let", "First", "Then", "So", "Hmm",
  "Wait", "Therefore") that end in ``\\boxed{N}``. Level ``L`` (1-5) has ``L + 1`` operations.
* ``synthetic-hops``: variable-binding chains (``a = 3. q = a + 4. ... What is c?``) answered directly; the
  number of hops is the difficulty, so a recurrent-depth model needs more iterations for more hops.
* ``synthetic-flips``: chains of ``x + d``, ``x - d`` and ``d - x`` steps (``a = 5. b = a - 4. c = 4 - b. What is
  c?``). A ``d - x`` step flips the sign of everything before it, so no shortcut sums the operands: the
  answer needs every step in order. Level = number of steps; the recurrent organism's task.
* ``synthetic-reasoner``: story problems of 1-6 one-digit steps whose traces have a known reflection structure
  ("So" restates the running value, "Therefore" announces the answer, "Wait" verifies the last step; a
  planted slip in the last step of a quarter of the traces; every other word has interchangeable variants).
  The reasoner organisms' world: a control of the instrument with ground truth (docs/organisms.md).

Everything is a pure function of ``(split, n, levels, seed)``. Train and test are split by problem
*signature* (the fully parenthesised arithmetic, the list of statements, or for flips and reasoner the
arithmetic without any wording): a signature whose hash falls in
the test bucket is only ever emitted for the test split, so the same arithmetic never appears in both.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from reasonlens.data.registry import register_dataset
from reasonlens.errors import UserError

ARITH_LEVELS = (1, 2, 3, 4, 5)
HOPS_LEVELS = (1, 2, 3, 4, 5, 6, 7, 8)
FLIPS_LEVELS = (1, 2, 3, 4, 5, 6, 7, 8)
SPLITS = ("train", "test")
DEFAULT_SEED = 20261122
DEFAULT_SIZES = {"train": 20000, "test": 500}
TEST_FRACTION_PER_MILLE = 150  # share of signature space reserved for the test split

# Probabilities that shape the reasoning traces: self-checks are common, deliberate slips are rare so the
# model still learns mostly-correct arithmetic but also learns what a "Wait" correction looks like.
SELF_CHECK_PROB = 0.35
SLIP_PROB = 0.08
PAREN_GROUP_PROB = 0.3
EXPRESSION_STYLE_PROB = 0.35
VALUE_CAP = 999

NAMES = (
    ("Mia", "she"),
    ("Tom", "he"),
    ("Ava", "she"),
    ("Leo", "he"),
    ("Sam", "he"),
    ("Zoe", "she"),
    ("Ben", "he"),
    ("Lily", "she"),
    ("Max", "he"),
    ("Nora", "she"),
    ("Omar", "he"),
    ("Ruth", "she"),
)
ITEMS = ("apples", "marbles", "coins", "stickers", "books", "cards", "stamps", "shells", "pencils", "cookies")
MULTIPLIER_WORDS = {2: "doubles", 3: "triples"}


@dataclass(frozen=True)
class SyntheticItem:
    """One generated problem before conversion to the registry's ``Problem`` record."""

    id: str
    question: str
    solution: str
    direct_solution: str
    answer: int
    signature: str
    level: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Step:
    """One binary operation applied to the running value (or, for a group, to two fresh operands)."""

    op: str  # "+", "-", "*", "/"
    operand: int
    group: tuple[int, int] | None = None  # operand written as "(x + y)" in expression style


# ---------------------------------------------------------------------------------------------------------
# shared helpers


def _stable_bucket(signature: str) -> int:
    """A per-mille bucket in [0, 1000) that depends only on the signature (not on Python's hash seed)."""
    digest = hashlib.sha256(signature.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 1000


def split_of_signature(signature: str) -> str:
    """The split ("train" or "test") that owns a problem signature."""
    return "test" if _stable_bucket(signature) < TEST_FRACTION_PER_MILLE else "train"


def _split_rng(seed: int, split: str, family: str, level: int) -> random.Random:
    material = f"{family}|{split}|{level}|{seed}".encode("utf-8")
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"split: unknown split {split!r} for a synthetic dataset (choose from {', '.join(SPLITS)})")


def _check_levels(levels: Sequence[int], allowed: Sequence[int], what: str) -> tuple[int, ...]:
    chosen = tuple(int(level) for level in levels)
    if not chosen or any(level not in allowed for level in chosen):
        raise UserError(f"level: {what} levels must be in {allowed[0]}..{allowed[-1]}, got {list(levels)}")
    return chosen


def apply_op(value: int, op: str, operand: int) -> int:
    """Integer result of ``value op operand`` (division is only ever generated when exact)."""
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    if op == "/":
        if operand == 0 or value % operand:
            raise ValueError(f"inexact division {value} / {operand}")
        return value // operand
    raise ValueError(f"unknown operator {op!r}")


def _interleave_by_level(
    levels: tuple[int, ...], n: int, make: Callable[[int, int], SyntheticItem | None]
) -> list[SyntheticItem]:
    """Round-robin over levels so every level gets n / len(levels) items (the first ones get the remainder)."""
    per_level = [n // len(levels) + (1 if i < n % len(levels) else 0) for i in range(len(levels))]
    by_level = [[] for _ in levels]
    for slot, (level, count) in enumerate(zip(levels, per_level)):
        ordinal = 0
        while len(by_level[slot]) < count:
            item = make(level, ordinal)
            ordinal += 1
            if item is not None:
                by_level[slot].append(item)
    mixed: list[SyntheticItem] = []
    for i in range(max(per_level, default=0)):
        for slot in range(len(levels)):
            if i < len(by_level[slot]):
                mixed.append(by_level[slot][i])
    return mixed


# ---------------------------------------------------------------------------------------------------------
# synthetic-arith


@dataclass(frozen=True)
class _StepRanges:
    """Where a problem's numbers are drawn from (inclusive ranges)."""

    start: tuple[int, int]
    add_sub: tuple[int, int]  # operand of a plain + or -
    group: tuple[tuple[int, int], tuple[int, int]]  # the two terms of a parenthesised (x + y)
    factor: tuple[int, int]  # operand of *
    divisors: range  # candidate operands of / (kept only when exact and leaving a quotient >= 2)
    cap: int  # no intermediate value above this


# Two-digit operands and values up to 999 (synthetic-arith).
FULL_RANGES = _StepRanges(
    start=(5, 99), add_sub=(2, 99), group=((2, 60), (2, 40)), factor=(2, 5), divisors=range(2, 10), cap=VALUE_CAP
)
SMALL_VALUE_CAP = 99
# One-digit operands and values below 100 (synthetic-arith-small): each step is a one-carry sum that a tiny
# model can learn in minutes.
SMALL_RANGES = _StepRanges(
    start=(10, 99), add_sub=(1, 9), group=((1, 5), (1, 4)), factor=(2, 3), divisors=range(2, 6), cap=SMALL_VALUE_CAP
)


def _sample_steps(rng: random.Random, level: int, small: bool = False) -> tuple[int, list[_Step]] | None:
    """Start value and ``level + 1`` operations that keep every intermediate value in [0, cap]
    (``small``: SMALL_RANGES, else FULL_RANGES)."""
    ranges = SMALL_RANGES if small else FULL_RANGES
    n_ops = level + 1
    ops_allowed = ["+", "-"] if level == 1 else (["+", "-", "*"] if level == 2 else ["+", "-", "*", "/"])
    value = rng.randint(*ranges.start)
    start = value
    steps: list[_Step] = []
    ops_left = n_ops
    while ops_left > 0:
        op = rng.choice(ops_allowed)
        group: tuple[int, int] | None = None
        if op in "+-" and ops_left >= 2 and level >= 2 and rng.random() < PAREN_GROUP_PROB:
            group = (rng.randint(*ranges.group[0]), rng.randint(*ranges.group[1]))
            operand = group[0] + group[1]
        elif op in "+-":
            operand = rng.randint(*ranges.add_sub)
        elif op == "*":
            operand = rng.randint(*ranges.factor)
        else:
            divisors = [d for d in ranges.divisors if value % d == 0 and value // d >= 2]
            if not divisors:
                continue
            operand = rng.choice(divisors)
        if op == "-" and operand > value:
            continue
        result = apply_op(value, op, operand)
        if result > ranges.cap:
            continue
        steps.append(_Step(op, operand, group))
        value = result
        ops_left -= 2 if group else 1
    return start, steps


def arith_signature(start: int, steps: Sequence[_Step]) -> str:
    """Fully parenthesised expression without spaces, e.g. ``((23+15)*3)``; it identifies the arithmetic."""
    text = str(start)
    for step in steps:
        operand = f"({step.group[0]}+{step.group[1]})" if step.group else str(step.operand)
        text = f"({text}{step.op}{operand})"
    return text


def evaluate_signature(signature: str) -> int:
    """Evaluate a signature (only digits, + - * / and parentheses) with exact integer arithmetic."""
    tokens = re.findall(r"\d+|[()+\-*/]", signature)
    if "".join(tokens) != signature:
        raise ValueError(f"not an arithmetic signature: {signature!r}")
    position = 0

    def parse_operand() -> int:
        nonlocal position
        token = tokens[position]
        position += 1
        if token != "(":
            return int(token)
        left = parse_operand()
        op = tokens[position]
        position += 1
        right = parse_operand()
        if tokens[position] != ")":
            raise ValueError(f"expected ')' in {signature!r}")
        position += 1
        return apply_op(left, op, right)

    value = parse_operand()
    if position != len(tokens):
        raise ValueError(f"trailing tokens in {signature!r}")
    return value


def _expression_text(start: int, steps: Sequence[_Step]) -> str:
    """Human-readable expression with the parentheses precedence needs."""
    text = str(start)
    additive = False  # whether the text so far ends in a top-level + or -
    for step in steps:
        operand = f"({step.group[0]} + {step.group[1]})" if step.group else str(step.operand)
        if step.op in "*/":
            if additive:
                text = f"({text})"
            text = f"{text} {step.op} {operand}"
            additive = False
        else:
            text = f"{text} {step.op} {operand}"
            additive = True
    return text


def _wrong_result(rng: random.Random, correct: int) -> int:
    """A plausible slip: off by one, or off by ten (a dropped carry)."""
    candidates = [correct + 1, correct - 1, correct + 10, correct - 10]
    return rng.choice([c for c in candidates if c >= 0 and c != correct])


def _equation(a: int, op: str, b: int, c: int) -> str:
    return f"{a} {op} {b} = {c}"


def _inverse_check(a: int, op: str, b: int, c: int) -> str:
    """Self-check sentence that verifies ``a op b = c`` with the inverse operation."""
    inverse = {"+": "-", "-": "+", "*": "/", "/": "*"}[op]
    return f"Hmm, let me check: {_equation(c, inverse, b, apply_op(c, inverse, b))}. Yes, that is right."


def _computed(rng: random.Random, a: int, op: str, b: int, lead: str) -> list[str]:
    """Sentences that compute ``a op b``: maybe a deliberate slip corrected after "Wait", maybe a self-check."""
    c = apply_op(a, op, b)
    sentences: list[str] = []
    if rng.random() < SLIP_PROB:
        wrong = _wrong_result(rng, c)
        sentences.append(f"{lead} {_equation(a, op, b, wrong)}.")
        sentences.append(f"Wait, that is not right. {_equation(a, op, b, c)}.")
    else:
        sentences.append(f"{lead} {_equation(a, op, b, c)}.")
        if rng.random() < SELF_CHECK_PROB:
            sentences.append(_inverse_check(a, op, b, c))
    return sentences


def _story_sentence(op: str, operand: int, pronoun: str, items: str) -> tuple[str, str]:
    """(question sentence, reasoning clause) for one story step."""
    subject = pronoun.capitalize()
    if op == "+":
        return f"{subject} buys {operand} more.", f"{subject} buys {operand} more, so"
    if op == "-":
        return f"{subject} gives {operand} to a friend.", f"{subject} gives away {operand}, so"
    if op == "*":
        if operand in MULTIPLIER_WORDS:
            verb = MULTIPLIER_WORDS[operand]
            return f"{subject} {verb} the {items}.", f"{subject} {verb} them, so"
        return f"{subject} ends up with {operand} times as many {items}.", f"{subject} gets {operand} times as many, so"
    return (
        f"{subject} splits the {items} into {operand} equal groups and keeps one group.",
        f"{subject} keeps one of {operand} equal groups, so",
    )


def _story_problem(rng: random.Random, start: int, steps: Sequence[_Step]) -> tuple[str, list[str]]:
    name, pronoun = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    question_parts = [f"{name} has {start} {items}."]
    reasoning = [f"Let me track the {items} step by step.", f"First, {name} starts with {start} {items}."]
    value = start
    for index, step in enumerate(steps):
        if step.group:
            x, y = step.group
            verb = "buys" if step.op == "+" else "gives away"
            question_parts.append(
                f"{pronoun.capitalize()} {verb} {x} and then {y} more in one go."
                if step.op == "+"
                else f"{pronoun.capitalize()} gives {x} to one friend and {y} to another."
            )
            reasoning.extend(_computed(rng, x, "+", y, f"Then {pronoun} {verb} {x} and {y}, which is"))
            reasoning.extend(_computed(rng, value, step.op, step.operand, "So"))
        else:
            sentence, clause = _story_sentence(step.op, step.operand, pronoun, items)
            question_parts.append(sentence if index == 0 else f"Then {sentence[0].lower()}{sentence[1:]}")
            reasoning.extend(_computed(rng, value, step.op, step.operand, f"Then {clause[0].lower()}{clause[1:]}"))
        value = apply_op(value, step.op, step.operand)
    question_parts.append(f"How many {items} does {name} have now?")
    reasoning.append(f"So {name} has {value} {items}.")
    return " ".join(question_parts), reasoning


def _expression_problem(rng: random.Random, start: int, steps: Sequence[_Step]) -> tuple[str, list[str]]:
    expression = _expression_text(start, steps)
    reasoning = [f"Let me compute {expression} step by step."]
    value = start
    first = True
    for step in steps:
        if step.group:
            x, y = step.group
            lead = "First, the parentheses:" if first else "Then the parentheses:"
            reasoning.extend(_computed(rng, x, "+", y, lead))
            reasoning.extend(_computed(rng, value, step.op, step.operand, "So"))
        else:
            reasoning.extend(_computed(rng, value, step.op, step.operand, "First," if first else "Then"))
        first = False
        value = apply_op(value, step.op, step.operand)
    reasoning.append(f"So the value is {value}.")
    return f"Compute {expression}.", reasoning


def boxed(value: int | str) -> str:
    return f"\\boxed{{{value}}}"


def _make_arith(
    rng: random.Random, split: str, level: int, ordinal: int, seen: set[str], small: bool = False
) -> SyntheticItem | None:
    sampled = _sample_steps(rng, level, small)
    if sampled is None:
        return None
    start, steps = sampled
    signature = arith_signature(start, steps)
    if signature in seen or split_of_signature(signature) != split:
        return None
    seen.add(signature)
    style = "expression" if rng.random() < EXPRESSION_STYLE_PROB else "story"
    question, reasoning = (_expression_problem if style == "expression" else _story_problem)(rng, start, steps)
    answer = evaluate_signature(signature)
    reasoning.append(f"Therefore the answer is {boxed(answer)}.")
    return SyntheticItem(
        id=f"arith{'-small' if small else ''}-L{level}-{split}-{ordinal:06d}",
        question=question,
        solution=" ".join(reasoning),
        direct_solution=boxed(answer),
        answer=answer,
        signature=signature,
        level=level,
        meta={"style": style, "n_ops": level + 1, "small": small},
    )


def generate_arith(
    split: str = "test",
    n: int | None = None,
    levels: Sequence[int] = ARITH_LEVELS,
    seed: int = DEFAULT_SEED,
    small: bool = False,
) -> list[SyntheticItem]:
    """``n`` arithmetic problems of the given levels for ``split``, interleaved by level; deterministic.

    ``small`` gives the ``synthetic-arith-small`` variant (one-digit operands, values below 100).
    """
    _check_split(split)
    chosen = _check_levels(levels, ARITH_LEVELS, "synthetic-arith")
    count = DEFAULT_SIZES[split] if n is None else int(n)
    family = "arith-small" if small else "arith"
    rngs = {level: _split_rng(seed, split, family, level) for level in chosen}
    seen: set[str] = set()
    return _interleave_by_level(chosen, count, lambda level, k: _make_arith(rngs[level], split, level, k, seen, small))


# ---------------------------------------------------------------------------------------------------------
# synthetic-hops

HOP_VALUE_MAX = 9
VARIABLE_NAMES = "abcdefghijkmnpqrstuvwxyz"  # no "l" or "o": too close to 1 and 0


def _make_hops(rng: random.Random, split: str, hops: int, ordinal: int, seen: set[str]) -> SyntheticItem | None:
    names = rng.sample(VARIABLE_NAMES, hops + 1 + hops // 2)
    chain, distractors = names[: hops + 1], names[hops + 1 :]
    value = rng.randint(0, HOP_VALUE_MAX)
    statements = [f"{chain[0]} = {value}."]
    worked = [f"{chain[0]} = {value}."]
    for previous, current in zip(chain, chain[1:]):
        op = rng.choice("+-")
        room = HOP_VALUE_MAX - value if op == "+" else value
        if room < 1:
            op = "-" if op == "+" else "+"
            room = HOP_VALUE_MAX - value if op == "+" else value
        operand = rng.randint(1, room)
        result = apply_op(value, op, operand)
        statements.append(f"{current} = {previous} {op} {operand}.")
        worked.append(f"{current} = {value} {op} {operand} = {result}.")
        value = result
    for name in distractors:  # distractor names are distinct from the chain's, so order is free
        position = rng.randint(1, len(statements))
        statements.insert(position, f"{name} = {rng.randint(0, HOP_VALUE_MAX)}.")
    signature = " ".join(statements) + f" ?{chain[-1]}"
    if signature in seen or split_of_signature(signature) != split:
        return None
    seen.add(signature)
    question = " ".join(statements) + f" What is {chain[-1]}?"
    return SyntheticItem(
        id=f"hops-H{hops}-{split}-{ordinal:06d}",
        question=question,
        solution=" ".join(worked) + f" Therefore the answer is {boxed(value)}.",
        direct_solution=boxed(value),
        answer=value,
        signature=signature,
        level=hops,
        meta={"hops": hops, "n_distractors": len(distractors)},
    )


def _generate_family(
    family: str,
    allowed: Sequence[int],
    make: Callable[..., SyntheticItem | None],
    split: str,
    n: int | None,
    levels: Sequence[int],
    seed: int,
) -> list[SyntheticItem]:
    """Items of a chain family: one seeded stream per level, unique signatures, levels interleaved."""
    _check_split(split)
    chosen = _check_levels(levels, allowed, f"synthetic-{family}")
    count = DEFAULT_SIZES[split] if n is None else int(n)
    rngs = {level: _split_rng(seed, split, family, level) for level in chosen}
    seen: set[str] = set()
    return _interleave_by_level(chosen, count, lambda level, k: make(rngs[level], split, level, k, seen))


def generate_hops(
    split: str = "test", n: int | None = None, levels: Sequence[int] = HOPS_LEVELS, seed: int = DEFAULT_SEED
) -> list[SyntheticItem]:
    """``n`` variable-binding problems whose level is the number of hops; deterministic."""
    return _generate_family("hops", HOPS_LEVELS, _make_hops, split, n, levels, seed)


# ---------------------------------------------------------------------------------------------------------
# synthetic-flips

FLIP_PROB = 0.4  # share of "d - x" steps; the rest are "x + d" / "x - d" in equal parts


@dataclass(frozen=True)
class FlipStep:
    """One chain step: ``x + d`` ("+"), ``x - d`` ("-") or ``d - x`` ("flip")."""

    op: str
    operand: int

    def apply(self, value: int) -> int:
        return self.operand - value if self.op == "flip" else apply_op(value, self.op, self.operand)

    def text(self, name: str) -> str:
        return f"{self.operand} - {name}" if self.op == "flip" else f"{name} {self.op} {self.operand}"


def _sample_flip_step(rng: random.Random, value: int) -> FlipStep:
    """A step that keeps the value in 0..HOP_VALUE_MAX (and no ``0 - x``, which only ever gives 0)."""
    while True:
        draw = rng.random()
        if draw < FLIP_PROB:
            operand = rng.randint(value, HOP_VALUE_MAX)
            if operand > 0:
                return FlipStep("flip", operand)
            continue
        op = "+" if draw < FLIP_PROB + (1 - FLIP_PROB) / 2 else "-"
        operand = rng.randint(1, HOP_VALUE_MAX)
        if 0 <= apply_op(value, op, operand) <= HOP_VALUE_MAX:
            return FlipStep(op, operand)


def flips_signature(start: int, steps: Sequence[FlipStep]) -> str:
    """The arithmetic without the variable names, e.g. ``5|-4|4-x``: it decides the split, so the same
    computation never appears in both train and test under other names."""
    return "|".join([str(start)] + [f"{s.operand}-x" if s.op == "flip" else f"{s.op}{s.operand}" for s in steps])


def _make_flips(rng: random.Random, split: str, level: int, ordinal: int, seen: set[str]) -> SyntheticItem | None:
    names = rng.sample(VARIABLE_NAMES, level + 1)
    value = start = rng.randint(0, HOP_VALUE_MAX)
    statements, worked, steps = [f"{names[0]} = {start}."], [f"{names[0]} = {start}."], []
    for previous, current in zip(names, names[1:]):
        step = _sample_flip_step(rng, value)
        result = step.apply(value)
        statements.append(f"{current} = {step.text(previous)}.")
        worked.append(f"{current} = {step.text(str(value))} = {result}.")
        steps.append(step)
        value = result
    skeleton = flips_signature(start, steps)
    signature = " ".join(statements)
    if signature in seen or split_of_signature(skeleton) != split:
        return None
    seen.add(signature)
    return SyntheticItem(
        id=f"flips-S{level}-{split}-{ordinal:06d}",
        question=" ".join(statements) + f" What is {names[-1]}?",
        solution=" ".join(worked) + f" Therefore the answer is {boxed(value)}.",
        direct_solution=boxed(value),
        answer=value,
        signature=skeleton,
        level=level,
        meta={"steps": level, "flips": sum(step.op == "flip" for step in steps)},
    )


def generate_flips(
    split: str = "test", n: int | None = None, levels: Sequence[int] = FLIPS_LEVELS, seed: int = DEFAULT_SEED
) -> list[SyntheticItem]:
    """``n`` flip-chain problems whose level is the number of steps; deterministic.

    Level 1 has only about a hundred distinct computations, so items of one split may repeat a computation
    under other variable names; a computation never crosses the split.
    """
    return _generate_family("flips", FLIPS_LEVELS, _make_flips, split, n, levels, seed)


# ---------------------------------------------------------------------------------------------------------
# synthetic-reasoner: a world with known reflection structure (positive and negative controls)

REASONER_LEVELS = (1, 2, 3, 4, 5, 6)
REASONER_VALUES = (10, 99)  # every running value is a two-digit number
REASONER_SLIP_SHARE = 0.25  # traces whose final step is a borrow subtraction: the hasty first pass slips there
REASONER_VERIFY_SHARE = 0.4  # traces that go on with a "Wait" verification of the final step (independent of slips)
REASONER_OPTIONAL_PROB = 0.5  # chance of each optional filler / object word in a sentence
REASONER_THINKING_WORDS = ("So", "Therefore", "Wait")  # the only words of the traces that have no variant

REASONER_NAMES = (
    *NAMES,  # the other worlds' names first, then more
    ("Ivan", "he"),
    ("Emma", "she"),
    ("Noah", "he"),
    ("Ella", "she"),
    ("Luca", "he"),
    ("Iris", "she"),
    ("Hugo", "he"),
    ("Maya", "she"),
    ("Owen", "he"),
    ("Cleo", "she"),
    ("Finn", "he"),
    ("Rosa", "she"),
    ("Jack", "he"),
    ("Anna", "she"),
    ("Eric", "he"),
    ("Vera", "she"),
    ("Paul", "he"),
    ("Jade", "she"),
    ("Carl", "he"),
    ("Lena", "she"),
    ("Adam", "he"),
    ("Tara", "she"),
    ("Dean", "he"),
    ("Gwen", "she"),
    ("Kurt", "he"),
    ("Nina", "she"),
    ("Ravi", "he"),
    ("Sara", "she"),
    ("Theo", "he"),
    ("Alma", "she"),
    ("Igor", "he"),
    ("Dora", "she"),
    ("Joel", "he"),
    ("Erin", "she"),
    ("Kofi", "he"),
    ("Lara", "she"),
    ("Nils", "he"),
    ("Mira", "she"),
    ("Otto", "he"),
    ("Rita", "she"),
    ("Seth", "he"),
    ("Tina", "she"),
    ("Yuri", "he"),
    ("Hana", "she"),
    ("Ezra", "he"),
    ("Fay", "she"),
    ("Gus", "he"),
    ("Ines", "she"),
)
REASONER_OBJECTS = (
    "apples",
    "marbles",
    "coins",
    "stickers",
    "books",
    "cards",
    "stamps",
    "shells",
    "pencils",
    "cookies",
    "buttons",
    "candles",
    "pebbles",
    "beads",
    "tickets",
    "balloons",
    "crayons",
    "lemons",
    "plums",
    "pears",
    "cherries",
    "nuts",
    "seeds",
    "acorns",
    "feathers",
    "ribbons",
    "magnets",
    "dice",
    "keys",
    "spoons",
    "cups",
    "plates",
    "bowls",
    "socks",
    "hats",
    "gloves",
    "scarves",
    "mittens",
    "bricks",
    "blocks",
    "puzzles",
    "comics",
    "letters",
    "postcards",
    "photos",
    "badges",
    "pins",
    "flags",
    "kites",
    "boats",
    "trucks",
    "robots",
    "dolls",
    "bells",
    "drums",
    "flutes",
    "tulips",
    "roses",
    "daisies",
    "onions",
)
REASONER_GAIN_VERBS = (
    "buys",
    "finds",
    "gets",
    "wins",
    "receives",
    "collects",
    "earns",
    "gathers",
    "borrows",
    "makes",
    "grows",
    "catches",
    "orders",
    "picks",
    "fetches",
    "bakes",
    "builds",
    "inherits",
    "obtains",
    "acquires",
    "rescues",
    "claims",
    "harvests",
    "adopts",
)
REASONER_LOSS_VERBS = (
    "sells",
    "loses",
    "donates",
    "drops",
    "spends",
    "gives",
    "lends",
    "breaks",
    "uses",
    "trades",
    "mails",
    "shares",
    "returns",
    "discards",
    "misplaces",
    "sends",
    "pays",
    "throws",
    "forfeits",
    "surrenders",
    "leaves",
    "sheds",
    "wastes",
    "recycles",
)
REASONER_PLACES = (
    "market",
    "park",
    "school",
    "store",
    "fair",
    "library",
    "beach",
    "garden",
    "museum",
    "station",
    "harbor",
    "bakery",
    "farm",
    "zoo",
    "circus",
    "office",
    "cafe",
    "gym",
    "mall",
    "lake",
)
REASONER_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
REASONER_TIMES = ("morning", "evening", "afternoon", "night", "spring", "summer", "autumn", "winter")
REASONER_ADVERBS = (
    "quickly",
    "happily",
    "quietly",
    "carefully",
    "eagerly",
    "proudly",
    "suddenly",
    "gladly",
    "calmly",
    "slowly",
    "boldly",
    "kindly",
)
REASONER_HAS_VERBS = ("has", "holds", "owns", "keeps", "carries")
REASONER_OPENINGS = (
    "{S} starts with {n}{obj}.",
    "{S} begins with {n}{obj}.",
    "Initially {s} owns {n}{obj}.",
    "Originally {s} holds {n}{obj}.",
)
REASONER_LAST_MARKERS = ("Finally", "Lastly", "Eventually", "Afterwards")
REASONER_ANSWER_LINES = (
    "Therefore the answer is {box}.",
    "Therefore the result is {box}.",
    "Therefore the total is {box}.",
    "Therefore we get {box}.",
    "Therefore it comes to {box}.",
)
REASONER_CHECK_OPENERS = (
    "Wait, checking again:",
    "Wait, to verify:",
    "Wait, once more:",
    "Wait, recomputing:",
    "Wait, double checking:",
)


def reasoner_vocabulary() -> list[str]:
    """Every content word the reasoner world draws from (names, pronouns, objects, verbs, fillers, variants)."""
    words: set[str] = {name for name, _ in REASONER_NAMES} | {"she", "he"} | set(REASONER_OBJECTS)
    words |= set(REASONER_GAIN_VERBS) | set(REASONER_LOSS_VERBS) | set(REASONER_PLACES) | set(REASONER_DAYS)
    words |= set(REASONER_TIMES) | set(REASONER_ADVERBS) | set(REASONER_HAS_VERBS) | set(REASONER_LAST_MARKERS)
    for template in REASONER_OPENINGS + REASONER_ANSWER_LINES + REASONER_CHECK_OPENERS:
        words |= set(
            re.findall(
                r"[A-Za-z]+",
                template.replace("{S}", "")
                .replace("{s}", "")
                .replace("{box}", "")
                .replace("{n}", "")
                .replace("{obj}", ""),
            )
        )
    return sorted(words - set(REASONER_THINKING_WORDS) - {"box", "obj"})


def borrows(value: int, operand: int) -> bool:
    """Whether ``value - operand`` (operand one digit) needs a borrow from the tens."""
    return value % 10 < operand


def hasty_difference(value: int, operand: int) -> int:
    """The planted slip: a borrow subtraction that forgets to take the ten (``31 - 4 = 37``)."""
    return value - operand + 10 if borrows(value, operand) else value - operand


def _reasoner_steps(rng: random.Random, level: int, slip: bool) -> tuple[int, list[tuple[str, int]]] | None:
    """Start value and ``level`` one-digit steps in [10, 99]; the final step is a borrow subtraction iff ``slip``."""
    low, high = REASONER_VALUES
    value = start = rng.randint(low + 10, high)
    steps: list[tuple[str, int]] = []
    for index in range(level):
        final = index == level - 1
        options = []
        for op in "+-":
            for operand in range(1, 10):
                result = apply_op(value, op, operand)
                if not low <= result <= high:
                    continue
                if final and (op == "-" and borrows(value, operand)) != slip:
                    continue
                options.append((op, operand))
        if not options:
            return None
        op, operand = rng.choice(options)
        steps.append((op, operand))
        value = apply_op(value, op, operand)
    return start, steps


def reasoner_signature(start: int, steps: Sequence[tuple[str, int]]) -> str:
    """The arithmetic without any wording, e.g. ``31|+8|-4``: it decides the split."""
    return "|".join([str(start)] + [f"{op}{operand}" for op, operand in steps])


def solve_reasoner_signature(signature: str) -> int:
    start, *steps = signature.split("|")
    value = int(start)
    for step in steps:
        value = apply_op(value, step[0], int(step[1:]))
    return value


def _maybe(rng: random.Random, text: str) -> str:
    return text if rng.random() < REASONER_OPTIONAL_PROB else ""


def _filler(rng: random.Random) -> str:
    """An optional adverbial phrase (place, day, time of day or manner): words that carry no information."""
    if rng.random() >= REASONER_OPTIONAL_PROB:
        return ""
    kind = rng.randrange(4)
    if kind == 0:
        return f" at the {rng.choice(REASONER_PLACES)}"
    if kind == 1:
        return f" on {rng.choice(REASONER_DAYS)}"
    if kind == 2:
        return f" in the {rng.choice(REASONER_TIMES)}"
    return f" {rng.choice(REASONER_ADVERBS)}"


def _step_verb(rng: random.Random, op: str) -> str:
    return rng.choice(REASONER_GAIN_VERBS if op == "+" else REASONER_LOSS_VERBS)


@dataclass(frozen=True)
class ReasonerTrace:
    """The three answer formats of one problem (the organisms' training targets) and its ground truth."""

    reflect: str  # the full trace: steps, "Therefore", and (in the verify share) a "Wait" verification
    noreflect: str  # the same trace cut after its first "Therefore" sentence: never a "Wait"
    hasty_answer: int  # the first "Therefore" answer (wrong iff the problem has a slip)


def _reasoner_trace(
    rng: random.Random,
    name: str,
    pronoun: str,
    objects: str,
    start: int,
    steps: Sequence[tuple[str, int]],
    slip: bool,
    verify: bool,
) -> ReasonerTrace:
    def subject(capital: bool) -> str:
        word = name if rng.random() < 0.5 else pronoun
        return word[0].upper() + word[1:] if capital else word

    def obj() -> str:
        return _maybe(rng, f" {objects}")

    def restate(value: int) -> str:
        return f"So {subject(False)} {rng.choice(REASONER_HAS_VERBS)} {value}{obj()}."

    def answer(value: int) -> str:
        return rng.choice(REASONER_ANSWER_LINES).format(box=boxed(value))

    opening = rng.choice(REASONER_OPENINGS)
    sentences = [opening.format(S=subject(True), s=subject(False), n=start, obj=obj())]
    value = start
    for index, (op, operand) in enumerate(steps):
        final = index == len(steps) - 1
        result = apply_op(value, op, operand)
        written = hasty_difference(value, operand) if final and slip else result
        lead = f"{rng.choice(REASONER_LAST_MARKERS)}, {subject(False)}" if final else subject(True)
        sentences.append(f"{lead} {_step_verb(rng, op)} {operand}{_filler(rng)}: {value} {op} {operand} = {written}.")
        sentences.append(restate(written))
        last_value, last_op, last_operand = value, op, operand
        value = result
    hasty = apply_op(last_value, last_op, last_operand) if not slip else hasty_difference(last_value, last_operand)
    sentences.append(answer(hasty))
    noreflect = " ".join(sentences)
    if verify:
        sentences.append(f"{rng.choice(REASONER_CHECK_OPENERS)} {last_value} {last_op} {last_operand} = {value}.")
        sentences.append(restate(value))
        sentences.append(answer(value))
    return ReasonerTrace(" ".join(sentences), noreflect, hasty)


def _reasoner_question(
    rng: random.Random, name: str, pronoun: str, objects: str, start: int, steps: Sequence[tuple[str, int]]
) -> str:
    parts = [f"{name} has {start} {objects}{_filler(rng)}."]
    for index, (op, operand) in enumerate(steps):
        subject = pronoun.capitalize()
        if index == len(steps) - 1:
            subject = f"{rng.choice(REASONER_LAST_MARKERS)}, {pronoun}"
        parts.append(f"{subject} {_step_verb(rng, op)} {operand}{_filler(rng)}.")
    parts.append(f"How many {objects} does {name} have now?")
    return " ".join(parts)


def _make_reasoner(rng: random.Random, split: str, level: int, ordinal: int, seen: set[str]) -> SyntheticItem | None:
    slip = rng.random() < REASONER_SLIP_SHARE
    verify = rng.random() < REASONER_VERIFY_SHARE
    sampled = None
    while sampled is None:  # redraw the numbers, never the slip: the slip share stays REASONER_SLIP_SHARE
        sampled = _reasoner_steps(rng, level, slip)
    start, steps = sampled
    signature = reasoner_signature(start, steps)
    if split_of_signature(signature) != split:
        return None
    name, pronoun = rng.choice(REASONER_NAMES)
    objects = rng.choice(REASONER_OBJECTS)
    question = _reasoner_question(rng, name, pronoun, objects, start, steps)
    if question in seen:  # level 1 has only ~1,400 computations: wording may repeat one, never a whole question
        return None
    seen.add(question)
    trace = _reasoner_trace(rng, name, pronoun, objects, start, steps, slip, verify)
    answer = solve_reasoner_signature(signature)
    return SyntheticItem(
        id=f"reasoner-L{level}-{split}-{ordinal:06d}",
        question=question,
        solution=trace.reflect,
        direct_solution=boxed(answer),
        answer=answer,
        signature=signature,
        level=level,
        meta={
            "steps": level,
            "slip": slip,
            "verify": verify,
            "hasty_answer": trace.hasty_answer,
            "noreflect_solution": trace.noreflect,
        },
    )


def generate_reasoner(
    split: str = "test", n: int | None = None, levels: Sequence[int] = REASONER_LEVELS, seed: int = DEFAULT_SEED
) -> list[SyntheticItem]:
    """``n`` reasoner-world problems whose level is the number of steps; deterministic (see docs/organisms.md)."""
    return _generate_family("reasoner", REASONER_LEVELS, _make_reasoner, split, n, levels, seed)


# ---------------------------------------------------------------------------------------------------------
# registry glue


def parse_dataset_name(name: str) -> tuple[str, tuple[int, ...]]:
    """``synthetic-arith`` / ``synthetic-arith:3`` / ``synthetic-hops:1-4`` -> (family, levels)."""
    family, _, level_text = name.partition(":")
    allowed = {
        "synthetic-arith": ARITH_LEVELS,
        "synthetic-arith-small": ARITH_LEVELS,
        "synthetic-hops": HOPS_LEVELS,
        "synthetic-flips": FLIPS_LEVELS,
        "synthetic-reasoner": REASONER_LEVELS,
    }.get(family)
    if allowed is None:
        raise UserError(
            f"dataset: unknown synthetic dataset {name!r} (synthetic-arith[:L], synthetic-arith-small[:L], "
            "synthetic-hops[:H], synthetic-flips[:S], synthetic-reasoner[:L])"
        )
    if not level_text:
        return family, tuple(allowed)
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", level_text)
    if not match:
        raise UserError(f"dataset: bad level in {name!r}; use NAME:L or NAME:L1-L2")
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    if not (min(allowed) <= low <= high <= max(allowed)):  # checked before a range of that size is ever built
        raise UserError(f"level: {family} levels must be in {allowed[0]}..{allowed[-1]}, got {level_text}")
    return family, _check_levels(range(low, high + 1), allowed, family)


def generate(name: str, split: str = "test", n: int | None = None, seed: int = DEFAULT_SEED) -> list[SyntheticItem]:
    """Items for a synthetic dataset name such as ``synthetic-arith:2-4``."""
    family, levels = parse_dataset_name(name)
    if family == "synthetic-hops":
        return generate_hops(split=split, n=n, levels=levels, seed=seed)
    if family == "synthetic-flips":
        return generate_flips(split=split, n=n, levels=levels, seed=seed)
    if family == "synthetic-reasoner":
        return generate_reasoner(split=split, n=n, levels=levels, seed=seed)
    return generate_arith(split=split, n=n, levels=levels, seed=seed, small=family == "synthetic-arith-small")


def to_problem(item: SyntheticItem, direct: bool = False) -> Any:
    """Convert to ``reasonlens.data.Problem`` (imported lazily: data/__init__ imports this module)."""
    from reasonlens.data.records import Problem

    meta = {"level": item.level, "signature": item.signature, "direct_solution": item.direct_solution, **item.meta}
    return Problem(
        id=item.id,
        question=item.question,
        solution=item.direct_solution if direct else item.solution,
        answer=str(item.answer),
        meta=meta,
    )


def load_synthetic(name: str, split: str = "test", n: int | None = None) -> list[Any]:
    """``Problem`` records for a synthetic dataset name; the ``:L`` suffix selects levels."""
    return [to_problem(item) for item in generate(name, split=split, n=n)]


def _loader(family: str) -> Callable[..., list[Any]]:
    def load(split: str, variant: str | None = None) -> list[Any]:
        return load_synthetic(f"{family}:{variant}" if variant else family, split)

    return load


# Importing this module registers its datasets (the import in reasonlens/data/__init__.py is the registration line).
register_dataset(
    "synthetic-arith",
    _loader("synthetic-arith"),
    grader="numeric",
    splits=SPLITS,
    description="multi-step arithmetic with CoT traces, levels 1-5 (L+1 operations); :L picks levels",
)
register_dataset(
    "synthetic-arith-small",
    _loader("synthetic-arith-small"),
    grader="numeric",
    splits=SPLITS,
    description="synthetic-arith with one-digit operands and values below 100 (the organisms' task)",
)
register_dataset(
    "synthetic-hops",
    _loader("synthetic-hops"),
    grader="numeric",
    splits=SPLITS,
    description="variable-binding chains answered directly, levels = hops 1-8; :H picks levels",
)
register_dataset(
    "synthetic-flips",
    _loader("synthetic-flips"),
    grader="numeric",
    splits=SPLITS,
    description="chains of x+d, x-d and d-x steps (order matters), levels = steps 1-8; the recurrent organism's task",
)
register_dataset(
    "synthetic-reasoner",
    _loader("synthetic-reasoner"),
    grader="numeric",
    splits=SPLITS,
    description="word problems with So/Therefore/Wait reflection traces, levels = steps 1-6 (reasoner organisms)",
)
