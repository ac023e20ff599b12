"""Answer extraction and exact reading of final numbers (reasonlens.eval.extract)."""

from fractions import Fraction

import pytest

from reasonlens.eval import (
    extract_answer,
    extract_answer_with_source,
    extract_letter,
    extract_math_answer,
    last_boxed,
    last_number,
    phrase_answer,
    read_final_number,
    read_number,
)

MEGABYTE = 1_000_000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the result is \\boxed{\\frac{14}{3}}.", "\\frac{14}{3}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("nested \\boxed{\\frac{\\sqrt{2}}{2}} done", "\\frac{\\sqrt{2}}{2}"),
        ("set \\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed 42.", "42"),
        ("$\\boxed 7$ is it", "7"),
        ("x \\fbox{7} y", "7"),
        ("spaced \\boxed  {5}", "5"),
    ],
)
def test_last_boxed_reads_braced_and_unbraced_boxes(text, expected):
    assert last_boxed(text) == expected


def test_unclosed_or_empty_box_falls_back_to_the_previous_box():
    assert last_boxed("\\boxed{1/2} and finally \\boxed{3") == "1/2"
    assert last_boxed("\\boxed{9} I will write \\boxed{} later") == "9"
    assert last_boxed("\\boxed{3") is None
    assert last_boxed("\\boxedx{3}") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Final Answer: The final answer is $42$. I hope it is correct.", "42"),
        ("So the answer is 17 apples.", "17 apples"),
        ("**Answer:** 17", "17"),
        ("The answer is: \\(x^2\\)", "x^2"),
        ("answer = 3.5.", "3.5"),
        ("The answer is 3.\nNext line 99", "3"),
    ],
)
def test_phrase_answer(text, expected):
    assert phrase_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("we get 1,234 and then 5,678,901", "5678901"),
        ("it costs -3.50 in total", "-3.50"),
        ("5-3", "3"),
        ("temperature \u22127 degrees", "-7"),
        ("about \\frac{3}{4} of it", "\\frac{3}{4}"),
        ("3/4 cups", "3/4"),
        ("year 2024.", "2024"),
        ("no digits here", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_text_cut_off_mid_equation_has_no_fallback_answer():
    assert extract_answer("she walked 1200 * 6 = ") is None
    assert extract_answer("we get 3 + ") is None
    assert extract_answer("The answer is 6. Check: 1200 * 6 =") == "6"


def test_extraction_priority_is_boxed_then_phrase_then_number():
    text = "The answer is 5. Actually \\boxed{6}. Then 7."
    assert extract_answer_with_source(text).source == "boxed"
    assert extract_answer(text) == "6"
    assert extract_answer_with_source("The answer is 5. Then 7.").text == "5"
    assert extract_answer_with_source("Then 7 and 8").source == "number"
    assert extract_answer("nothing at all") is None


def test_unicode_lookalike_digits_are_not_numbers():
    assert last_number("total: \uff11\uff18") is None  # fullwidth 18
    assert last_number("total: \u0661\u0668") is None  # Arabic-Indic 18
    assert extract_answer("\\boxed{\uff11\uff18}") == "\uff11\uff18"
    assert read_final_number("\uff11\uff18").status == "no_number"
    assert read_final_number("\U0001d7cf\U0001d7d6").status == "no_number"  # mathematical bold 18


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text, expected",
    [
        ("1" * MEGABYTE, "1" * MEGABYTE),
        ("\\boxed{" * (MEGABYTE // 7), None),
        (
            "\\boxed{" + "{" * (MEGABYTE // 2) + "7" + "}" * (MEGABYTE // 2) + "}",
            "{" * (MEGABYTE // 2) + "7" + "}" * (MEGABYTE // 2),
        ),
        ("{" * MEGABYTE + "4", "4"),
        ("answer" + " " * MEGABYTE, None),
        ("the answer is " * (MEGABYTE // 14), "the answer is"),
        ("-" * MEGABYTE + "5", "-5"),
        ("1," * (MEGABYTE // 2), "1"),
        ("\\" * MEGABYTE, None),
        ("9^{" * (MEGABYTE // 3) + "9" + "}" * (MEGABYTE // 3), "9"),
    ],
    ids=[
        "digits",
        "unclosed-boxes",
        "nested-box",
        "open-braces",
        "spaces",
        "phrases",
        "minuses",
        "commas",
        "backslashes",
        "tower",
    ],
)
def test_megabyte_adversarial_inputs_extract_without_stalling(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("18", Fraction(18)),
        ("\\$18.00", Fraction(18)),
        ("18 dollars", Fraction(18)),
        ("\\text{18 dollars}", Fraction(18)),
        ("1,000", Fraction(1000)),
        ("1{,}000", Fraction(1000)),
        ("1\\,000", Fraction(1000)),
        ("1 000", Fraction(1000)),
        ("x = -7", Fraction(-7)),
        ("\u22127", Fraction(-7)),
        ("-\\frac{3}{4}", Fraction(-3, 4)),
        ("\\dfrac12", Fraction(1, 2)),
        ("2\\frac{1}{2}", Fraction(5, 2)),
        ("2^{10}", Fraction(1024)),
        ("2^{-10}", Fraction(1, 1024)),
        ("(-2)^3", Fraction(-8)),
        ("-2^2", Fraction(-4)),
        ("1.5 \\times 10^{3}", Fraction(1500)),
        ("1.5e3", Fraction(1500)),
        ("50\\%", Fraction(50)),
        ("0.1", Fraction(1, 10)),
        ("(1, 2)", Fraction(2)),
    ],
)
def test_read_final_number_is_exact(answer, expected):
    reading = read_final_number(answer)
    assert reading.status == "ok"
    assert reading.value == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "answer",
    [
        "10^10^10",
        "10^{10^{10}}",
        "9^{9^{9^{9}}}",
        "1e99999999999",
        "7" * 5000,
        "1." + "3" * MEGABYTE,
        "2^{2^{2^{2^{2^{2}}}}}",
    ],
    ids=["tower", "braced-tower", "nines", "huge-exponent", "many-digits", "megabyte-decimal", "twos"],
)
def test_huge_numbers_are_out_of_range_without_being_computed(answer):
    reading = read_final_number(answer)
    assert reading.status == "out_of_range"
    assert reading.value is None


def test_trailing_zeros_do_not_count_as_digits():
    assert read_final_number("18." + "0" * MEGABYTE).value == Fraction(18)


@pytest.mark.parametrize("answer", ["0^{-1}", "4^{1/2}", "(-1)^{10^{10^{10}}}"])
def test_unevaluable_expressions_are_unreadable(answer):
    assert read_final_number(answer).status == "unreadable"


def test_read_number_requires_the_whole_text_to_be_a_number():
    assert read_number("\\$1,080").value == Fraction(1080)
    assert read_number("2^{10}").value == Fraction(1024)
    assert read_number("5\\sqrt{2}").status == "no_number"
    assert read_number("x = 5").status == "no_number"
    assert read_number("9^{9^{9^{9}}}").status == "out_of_range"


@pytest.mark.timeout(60)
def test_deep_nesting_in_numbers_is_bounded():
    deep = "{" * 10_000 + "5" + "}" * 10_000
    assert read_final_number(deep).status in ("ok", "unreadable")
    assert read_number(deep).status in ("no_number", "unreadable")


def test_powers_of_one_and_unparsable_runs():
    assert read_final_number("1^{10^{10^{10}}}").value == Fraction(1)
    assert read_final_number("0^{10^{10^{10}}}").status == "unreadable"
    assert read_final_number("3 (7)").value == Fraction(7)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so x = -\\frac{10}{9}", "-\\frac{10}{9}"),
        ("the probability is 2/3.", "2/3"),
        ("we keep .4", ".4"),
        ("they collected 1 000", "1000"),
        ("each gets \\frac13", "\\frac{1}{3}"),
        ("each gets \\cfrac{1}{3} of it", "\\frac{1}{3}"),
        ("each gets \\dfrac{2}{5}", "\\frac{2}{5}"),
        ("the code is AZYUK2A", None),
    ],
)
def test_last_number_reads_what_read_number_reads(text, expected):
    assert last_number(text) == expected
    if expected is not None:
        assert read_number(expected).status == "ok"


@pytest.mark.parametrize(
    "text, answer, parts",
    [
        ("We first find $\\boxed{255}$ terms. Summing them, the final answer is $10,455$.", "10,455", ("10,455",)),
        ("Final Answer: The largest $n$ is 34.", "34", ("34",)),
        ("The solutions are $\\boxed{1}, \\boxed{2}$ and $\\boxed{3}$.", "3", ("1", "2", "3")),
        ("So $x = \\boxed{-2}$ or $x = \\boxed{1}$.", "1", ("-2", "1")),
        ("The answer is x < 3.", "x < 3", ("x < 3",)),
        ("Hence the solution set is\n\nx \\in [-2, 7]", "x \\in [-2, 7]", ("x \\in [-2, 7]",)),
        ("The answer is Evelyn.", "Evelyn", ("Evelyn",)),
        ("**Answer:** $\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}$", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", None),
        ("So the result is **$2\\pi$**.", "2\\pi", None),
        ("Hence\n\\[\n3\\sqrt{13}\n\\]", "3\\sqrt{13}", None),
        ("so $x = \\frac{14}{3}$.\n\nLet me double-check: $3 \\cdot \\frac{14}{3} = 14$.", "x = \\frac{14}{3}", None),
        ("The roots are $1$, $2$, and $3$.", "3", ("1", "2", "3")),
        ("We need the sum, which is \\boxed{2", "2", None),
        ("The code is AZYUK2A", None, None),
        ("so she walked 1200 * 6 = ", None, None),
        ("**113**", "113", None),
    ],
)
def test_math_extraction_follows_math_verify_order(text, answer, parts):
    extraction = extract_math_answer(text)
    assert (extraction.text if extraction else None) == answer
    if parts is not None:
        assert extraction.parts == parts


@pytest.mark.parametrize(
    "text, letter",
    [
        ("Because B is valid", "B"),
        ("The answer is (C).", "C"),
        ("Option A fails. Therefore the answer is D", "D"),
        ("A quick check shows only (E) works.", "E"),
        ("$\\boxed{\\text{(A)}}$", "A"),
        ("a train leaves at noon", None),
    ],
)
def test_letter_extraction(text, letter):
    extraction = extract_letter(text)
    assert (extraction.text if extraction else None) == letter


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "text",
    [
        "$" * MEGABYTE,
        "**" * (MEGABYTE // 2),
        "\\(" * (MEGABYTE // 2),
        "1 " * (MEGABYTE // 2),
        "$a$, " * (MEGABYTE // 5),
        "\\boxed{1}, " * (MEGABYTE // 11),
        "x<3\n" * (MEGABYTE // 4),
        "final answer " * (MEGABYTE // 13),
        "Let me check: 1 " * (MEGABYTE // 16),
        "B " * (MEGABYTE // 2),
    ],
    ids=["dollars", "bold", "parens", "spaced-digits", "items", "boxes", "lines", "final-phrases", "checks", "letters"],
)
def test_megabyte_inputs_for_math_and_letter_extraction(text):
    extraction = extract_math_answer(text)
    assert extraction is None or len(extraction.parts) <= 10
    extract_letter(text)
