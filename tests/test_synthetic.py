"""The synthetic corpora: determinism, correct arithmetic in every trace, split hygiene, registry names."""

from __future__ import annotations

import ast
import re
from fractions import Fraction

import pytest

from reasonlens.data import load_problems, synthetic
from reasonlens.errors import UserError

EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)(\.(?: Wait)?)")
THINKING_WORDS = ("Let", "First", "So", "Then", "Hmm", "Wait", "Therefore")


def exact(a: int, op: str, b: int) -> Fraction:
    return {"+": Fraction(a + b), "-": Fraction(a - b), "*": Fraction(a * b), "/": Fraction(a, b)}[op]


def evaluate_expression(text: str) -> Fraction:
    """Independent evaluator of '+ - * /' expressions with the usual precedence (ast, exact fractions)."""
    operators = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            left, right = walk(node.left), walk(node.right)
            op = operators[type(node.op)]
            return {"+": left + right, "-": left - right, "*": left * right, "/": left / right}[op]
        raise AssertionError(f"unexpected syntax in {text!r}")

    return walk(ast.parse(text, mode="eval"))


@pytest.fixture(scope="module")
def arith_test() -> list[synthetic.SyntheticItem]:
    return synthetic.generate_arith("test", n=500)


@pytest.fixture(scope="module")
def arith_train() -> list[synthetic.SyntheticItem]:
    return synthetic.generate_arith("train", n=4000)


@pytest.fixture(scope="module")
def small_test() -> list[synthetic.SyntheticItem]:
    return synthetic.generate("synthetic-arith-small", split="test", n=500)


def test_generators_are_deterministic_and_seeded():
    first = synthetic.generate_arith("train", n=60, levels=(1, 3, 5), seed=7)
    again = synthetic.generate_arith("train", n=60, levels=(1, 3, 5), seed=7)
    other = synthetic.generate_arith("train", n=60, levels=(1, 3, 5), seed=8)
    assert first == again
    assert [item.signature for item in first] != [item.signature for item in other]
    hops = synthetic.generate_hops("test", n=40, seed=3)
    assert hops == synthetic.generate_hops("test", n=40, seed=3)
    assert len({item.id for item in first}) == 60


def test_every_step_of_every_trace_is_correct_and_slips_are_corrected(arith_test, arith_train, small_test):
    n_slips = 0
    for item in arith_test + arith_train + small_test:
        equations = EQUATION.findall(item.solution)
        assert equations, item.solution
        for index, (a, op, b, c, tail) in enumerate(equations):
            value = exact(int(a), op, int(b))
            if tail.endswith("Wait"):
                n_slips += 1
                assert value != int(c), f"a slip must be wrong: {item.solution}"
                a2, op2, b2, c2, _ = equations[index + 1]
                assert (a2, op2, b2) == (a, op, b) and exact(int(a2), op2, int(b2)) == int(c2)
            else:
                assert value == int(c), f"wrong step {a} {op} {b} = {c} in {item.solution}"
        assert item.answer == synthetic.evaluate_signature(item.signature)
        assert item.solution.endswith(f"Therefore the answer is \\boxed{{{item.answer}}}.")
        assert item.direct_solution == f"\\boxed{{{item.answer}}}"
    assert n_slips > 0


def test_questions_state_the_arithmetic_of_their_signature(arith_test):
    styles = set()
    for item in arith_test:
        styles.add(item.meta["style"])
        if item.meta["style"] == "expression":
            expression = re.fullmatch(r"Compute (.+)\.", item.question).group(1)
            assert evaluate_expression(expression) == item.answer
        else:
            start = re.match(r"\w+ has (\d+) \w+\.", item.question).group(1)
            assert item.signature.lstrip("(").startswith(start)
        n_operators = len(re.findall(r"[-+*/]", item.signature))
        assert n_operators == item.level + 1
    assert styles == {"expression", "story"}
    assert any("(" in item.question for item in arith_test), "parenthesised groups must occur"


def test_levels_grow_harder_and_traces_use_thinking_words(arith_test):
    assert {item.level for item in arith_test} == set(synthetic.ARITH_LEVELS)
    for item in arith_test:
        assert item.solution.startswith("Let ")
    text = " ".join(item.solution for item in arith_test)
    for word in THINKING_WORDS:
        assert re.search(rf"\b{word}\b", text), word
    ops_by_level = {
        item.level: set(re.findall(r"[-+*/]", item.signature)) for item in arith_test if item.level in (1, 5)
    }
    assert ops_by_level[1] <= {"+", "-"}
    assert "/" in set().union(*(set(re.findall(r"[-+*/]", i.signature)) for i in arith_test if i.level == 5))
    carries = [item for item in arith_test if re.search(r"\b\d*[5-9] \+ \d*[5-9] = ", item.solution)]
    assert len(carries) > 50
    assert all(0 <= item.answer <= synthetic.VALUE_CAP for item in arith_test)


def test_small_variant_keeps_operands_to_one_digit_and_values_below_100(small_test):
    assert {item.level for item in small_test} == set(synthetic.ARITH_LEVELS)
    for item in small_test:
        operands = [int(x) for x in re.findall(r"[-+*/](\d+)", item.signature)]
        assert all(1 <= x <= 9 for x in operands), item.signature
        results = [int(c) for a, op, b, c, tail in EQUATION.findall(item.solution) if not tail.endswith("Wait")]
        assert max(results) <= synthetic.SMALL_VALUE_CAP
        assert 0 <= item.answer <= synthetic.SMALL_VALUE_CAP
        assert item.meta["small"] is True
    train = {i.signature for i in synthetic.generate("synthetic-arith-small:1-3", split="train", n=3000)}
    assert not train & {item.signature for item in small_test}


def test_train_and_test_never_share_a_signature(arith_test, arith_train):
    train_signatures = {item.signature for item in arith_train}
    test_signatures = {item.signature for item in arith_test}
    assert len(test_signatures) == len(arith_test)
    assert not train_signatures & test_signatures
    assert all(synthetic.split_of_signature(s) == "test" for s in test_signatures)
    hops_train = {item.signature for item in synthetic.generate_hops("train", n=3000)}
    hops_test = {item.signature for item in synthetic.generate_hops("test", n=400)}
    assert not hops_train & hops_test


def test_hops_chains_bind_correctly_and_level_counts_hops():
    items = synthetic.generate_hops("test", n=240)
    assert {item.level for item in items} == set(synthetic.HOPS_LEVELS)
    for item in items:
        statements = re.findall(r"(\w) = (\w)(?: ([-+]) (\d+))?\.", item.question)
        env: dict[str, int] = {}
        for name, source, op, operand in statements:
            assert name not in env, "each variable is bound once"
            base = int(source) if source.isdigit() else env[source]
            env[name] = base if not op else base + int(operand) * (1 if op == "+" else -1)
            assert 0 <= env[name] <= synthetic.HOP_VALUE_MAX
        asked = re.search(r"What is (\w)\?$", item.question).group(1)
        assert env[asked] == item.answer
        assert item.direct_solution == f"\\boxed{{{item.answer}}}"
        derived = [s for s in statements if s[2]]
        assert len(derived) == item.level == item.meta["hops"]


def test_registry_names_levels_and_errors():
    problems = load_problems("synthetic-arith:2", split="test", n=5)
    assert len(problems) == 5 and all(p.meta["level"] == 2 for p in problems)
    assert problems[0].answer == str(synthetic.evaluate_signature(problems[0].meta["signature"]))
    mixed = load_problems("synthetic-hops:1-3", split="train", n=9)
    assert {p.meta["level"] for p in mixed} == {1, 2, 3}
    assert synthetic.parse_dataset_name("synthetic-arith") == ("synthetic-arith", synthetic.ARITH_LEVELS)
    with pytest.raises(UserError, match="level"):
        synthetic.parse_dataset_name("synthetic-arith:9")
    with pytest.raises(UserError, match="level"):
        synthetic.parse_dataset_name("synthetic-hops:x")
    with pytest.raises(UserError, match="split"):
        synthetic.generate_arith("validation", n=3)


FLIP_STATEMENT = re.compile(r"(\w) = (?:(\d)|(\w) ([-+]) (\d)|(\d) - (\w))\.")


def _solve_flips(question: str) -> tuple[dict[str, int], list[str], str]:
    """Independent reading of a flips question: the value of every variable, the step kinds, the asked name."""
    env: dict[str, int] = {}
    kinds: list[str] = []
    body, asked = re.fullmatch(r"(.*) What is (\w)\?", question).groups()
    for statement in re.findall(r"\w = [^.]+\.", body):
        name, start, source, op, operand, minuend, flipped = FLIP_STATEMENT.fullmatch(statement).groups()
        assert name not in env, "each variable is bound once"
        if start is not None:
            assert not env, "only the first statement is a literal"
            env[name] = int(start)
            continue
        if flipped is not None:
            assert flipped == list(env)[-1], "each step reads the variable bound just before it"
            env[name] = int(minuend) - env[flipped]
            kinds.append("flip")
        else:
            assert source == list(env)[-1]
            env[name] = env[source] + int(operand) * (1 if op == "+" else -1)
            kinds.append(op)
        assert 0 <= env[name] <= synthetic.HOP_VALUE_MAX
    return env, kinds, asked


def test_flips_chains_compute_correctly_level_counts_steps_and_every_kind_occurs():
    items = synthetic.generate_flips("test", n=400)
    assert {item.level for item in items} == set(synthetic.FLIPS_LEVELS)
    all_kinds = set()
    for item in items:
        env, kinds, asked = _solve_flips(item.question)
        assert env[asked] == item.answer and asked == list(env)[-1]
        assert len(kinds) == item.level == item.meta["steps"] and kinds.count("flip") == item.meta["flips"]
        assert item.direct_solution == f"\\boxed{{{item.answer}}}"
        assert item.solution.endswith(f"Therefore the answer is \\boxed{{{item.answer}}}.")
        for equation in re.findall(r"= (\d) ([-+]) (\d) = (\d)\.", item.solution):  # the worked steps are right
            a, op, b, c = equation
            assert int(a) + int(b) * (1 if op == "+" else -1) == int(c)
        all_kinds |= set(kinds)
    assert all_kinds == {"+", "-", "flip"}


def test_flips_are_deterministic_and_no_computation_crosses_the_split():
    first = synthetic.generate("synthetic-flips:1-8", split="train", n=300)
    assert [i.question for i in first] == [i.question for i in synthetic.generate("synthetic-flips:1-8", "train", 300)]
    assert [i.question for i in first] != [i.question for i in synthetic.generate_flips("train", 300, seed=7)]
    train = {item.signature for item in synthetic.generate_flips("train", n=4000)}
    test_items = synthetic.generate_flips("test", n=800)
    assert all(synthetic.split_of_signature(item.signature) == "test" for item in test_items)
    assert not train & {item.signature for item in test_items}  # not even under other variable names
    assert len({item.question for item in test_items}) == len(test_items)


def test_a_flip_makes_step_order_matter():
    """The property that defeats a shallow sum of the operands: reordering the steps changes the answer."""
    add, flip = synthetic.FlipStep("+", 3), synthetic.FlipStep("flip", 9)
    assert flip.apply(add.apply(2)) == 4 and add.apply(flip.apply(2)) == 10
    assert flip.text("a") == "9 - a" and add.text("a") == "a + 3"
    problems = load_problems("synthetic-flips:2-3", split="test", n=6)
    assert [p.meta["level"] for p in problems] == [2, 3, 2, 3, 2, 3]
    env, _, asked = _solve_flips(problems[0].question)
    assert problems[0].answer == str(env[asked])
    with pytest.raises(UserError, match="synthetic-flips levels"):
        synthetic.parse_dataset_name("synthetic-flips:9")


# ---------------------------------------------------------------------------------------------------------
# synthetic-reasoner: the controlled world of the reasoner organisms


@pytest.fixture(scope="module")
def reasoner_test() -> list[synthetic.SyntheticItem]:
    return synthetic.generate("synthetic-reasoner", split="test", n=600)


@pytest.fixture(scope="module")
def reasoner_train() -> list[synthetic.SyntheticItem]:
    return synthetic.generate("synthetic-reasoner", split="train", n=2000)


def _solve_reasoner_question(question: str) -> int:
    """Independent reading: start value, then one signed operand per sentence, the sign from the verb lists."""
    sentences = re.findall(r"[^.?]+[.?]", question)
    value = int(re.match(r"\w+ has (\d+) ", sentences[0]).group(1))
    for sentence in sentences[1:-1]:
        verb, operand = re.search(r"(?:he|she|He|She) (\w+) (\d)\b", sentence).groups()
        assert (verb in synthetic.REASONER_GAIN_VERBS) != (verb in synthetic.REASONER_LOSS_VERBS), verb
        value += int(operand) if verb in synthetic.REASONER_GAIN_VERBS else -int(operand)
        assert 10 <= value <= 99
    assert sentences[-1].startswith(" How many")
    return value


TRACE_EQUATION = re.compile(r"(\d+) ([-+]) (\d) = (\d+)\.")


def test_reasoner_answers_match_an_independent_solver_and_levels_count_steps(reasoner_test):
    assert {item.level for item in reasoner_test} == set(synthetic.REASONER_LEVELS)
    for item in reasoner_test:
        assert _solve_reasoner_question(item.question) == item.answer
        assert item.answer == synthetic.solve_reasoner_signature(item.signature)
        assert item.question.count(".") == item.level + 1 == item.meta["steps"] + 1
        assert item.direct_solution == f"\\boxed{{{item.answer}}}"


def test_reasoner_traces_have_the_documented_reflection_structure(reasoner_test, reasoner_train):
    counts = {"slip": 0, "verify": 0, "slip_verify": 0}
    for item in reasoner_test + reasoner_train:
        full, cut = item.solution, item.meta["noreflect_solution"]
        assert full.startswith(cut) and "Wait" not in cut and cut.count("Therefore") == 1
        steps = TRACE_EQUATION.findall(cut)
        assert len(steps) == item.level
        for index, (a, op, b, c) in enumerate(steps):
            true = int(a) + int(b) if op == "+" else int(a) - int(b)
            final = index == len(steps) - 1
            borrow = op == "-" and int(a) % 10 < int(b)
            if final and borrow:  # the planted slip: the borrow is forgotten, exactly ten too many
                assert int(c) == true + 10 and item.meta["slip"]
            else:
                assert int(c) == true
            # "So" restates the running value the step just wrote
            assert re.search(rf"{a} {re.escape(op)} {b} = {c}\. So \w+ \w+ {c}\b", cut)
        assert item.meta["slip"] == (steps[-1][1] == "-" and int(steps[-1][0]) % 10 < int(steps[-1][2]))
        hasty = int(steps[-1][3])
        assert item.meta["hasty_answer"] == hasty and cut.endswith(f"\\boxed{{{hasty}}}.")
        if item.meta["verify"]:
            rest = full[len(cut) :]
            assert rest.startswith(" Wait, ")
            ((a, op, b, c),) = TRACE_EQUATION.findall(rest)
            assert (a, op, b) == steps[-1][:3] and int(c) == item.answer
            assert rest.endswith(f"\\boxed{{{item.answer}}}.") and rest.count("Therefore") == 1
        else:
            assert full == cut
        counts["slip"] += item.meta["slip"]
        counts["verify"] += item.meta["verify"]
        counts["slip_verify"] += item.meta["slip"] and item.meta["verify"]
    n = len(reasoner_test) + len(reasoner_train)
    assert abs(counts["slip"] / n - synthetic.REASONER_SLIP_SHARE) < 0.03
    assert abs(counts["verify"] / n - synthetic.REASONER_VERIFY_SHARE) < 0.03
    assert abs(counts["slip_verify"] / n - synthetic.REASONER_SLIP_SHARE * synthetic.REASONER_VERIFY_SHARE) < 0.02


def test_reasoner_vocabulary_is_large_and_only_thinking_words_are_fixed(reasoner_train):
    vocabulary = synthetic.reasoner_vocabulary()
    assert len(vocabulary) >= 200
    counts: dict[str, int] = {}
    for item in reasoner_train:
        for word in re.findall(r"[A-Za-z]+", item.solution):
            counts[word] = counts.get(word, 0) + 1
    n = len(reasoner_train)
    # every thinking word occurs at least once per trace; every other word of the traces is optional or has a
    # variant, so none is in every trace (a random control word can be banned without breaking the grammar)
    for word in synthetic.REASONER_THINKING_WORDS[:2]:
        assert all(re.search(rf"\b{word}\b", item.solution) for item in reasoner_train), word
    per_trace = {word: sum(bool(re.search(rf"\b{word}\b", i.solution)) for i in reasoner_train) / n for word in counts}
    fixed = {word for word, share in per_trace.items() if share > 0.95}
    assert fixed <= set(synthetic.REASONER_THINKING_WORDS) | {"boxed"}, fixed
    used = {word for word in counts if word not in synthetic.REASONER_THINKING_WORDS}
    assert len(used & set(vocabulary)) >= 200


def test_reasoner_is_deterministic_split_disjoint_and_rejects_bad_levels(reasoner_test, reasoner_train):
    again = synthetic.generate("synthetic-reasoner", split="test", n=600)
    assert again == reasoner_test
    assert synthetic.generate_reasoner("test", n=50, seed=5) != reasoner_test[:50]
    assert not {i.signature for i in reasoner_train} & {i.signature for i in reasoner_test}
    assert all(synthetic.split_of_signature(item.signature) == "test" for item in reasoner_test)
    assert len({item.question for item in reasoner_test}) == len(reasoner_test)
    problems = load_problems("synthetic-reasoner:2-3", split="test", n=4)
    assert [p.meta["level"] for p in problems] == [2, 3, 2, 3]
    with pytest.raises(UserError, match="synthetic-reasoner levels"):
        synthetic.parse_dataset_name("synthetic-reasoner:7")
    with pytest.raises(UserError, match="split"):
        synthetic.generate_reasoner("dev", n=3)
