"""Writes tests/grading/corpus.jsonl: the grader's own test corpus (run from the repository root).

Each case: gold (in the bundled datasets' own formats), completion (in a style models produce), kind
(the dataset's grader), expected verdict, category, style and why. Cases are written out by hand
below as (gold, right writings, wrong writings) per answer format plus hand-written cases for every
failure class of issue 18; the styles wrap an answer the way real completions do. real_outputs.jsonl adds
completions copied verbatim from the SmolLM2 and organism runs of docs/results.md. The expected
verdict is what a careful human grader says, not what any grader outputs.
Re-running this script rewrites the file identically (no randomness).
"""

from __future__ import annotations

import json
from pathlib import Path

REASONING = [
    "Let me work through this. First, 12 + 7 = 19 and 19 \\cdot 2 = 38, so we subtract 5 to get 33.\n\n",
    "We set up the equation and simplify. Multiplying both sides by 4 gives 4x = 20 - 8 = 12.\n\n",
    "Step 1: list the cases.\nStep 2: count them: there are 6 of them, and 3 are favourable.\n\n",
]

# Completion styles: (name, template). {a} is the answer in LaTeX; every style is one models produce.
STYLES = {
    "boxed": "{r}Therefore, the answer is $\\boxed{{{a}}}$.",
    "final-answer": "{r}Final Answer: The final answer is ${a}$. I hope it is correct.",
    "answer-bold": "{r}**Answer:** ${a}$",
    "markdown-bold": "{r}So the result is **${a}$**.",
    "prose": "{r}Putting it together, the value we want is ${a}$.",
    "answer-then-check": "{r}The answer is ${a}$.\n\nCheck: substituting back, 2 \\cdot 3 = 6 and 6 + 1 = 7, as required.",
    "display": "{r}Hence\n\\[\n{a}\n\\]",
}
UNBOXED_STYLES = [s for s in STYLES if s != "boxed"]

# (category, kind, gold, right writings, wrong writings)
FORMATS: list[tuple[str, str, str, list[str], list[str]]] = [
    ("interval", "math", "(-\\infty, 3)", ["(-\\infty, 3)", "x < 3"], ["(-\\infty, 3]", "x > 3"]),
    ("interval", "math", "(3,4]", ["(3, 4]", "3 < x \\le 4"], ["[3,4]"]),
    ("interval", "math", "(2,\\infty)", ["(2,\\infty)", "x > 2"], ["[2,\\infty)"]),
    ("interval", "math", "(-\\infty, 0]", ["(-\\infty,0]", "x \\leq 0"], ["(-\\infty, 0)"]),
    ("interval", "math", "(0,9) \\cup (9,36)", ["(0, 9) \\cup (9, 36)"], ["(0,36)"]),
    ("interval", "math", "(-\\infty, 2) \\cup (3, \\infty)", ["(-\\infty,2)\\cup(3,\\infty)"], ["(2,3)"]),
    ("interval", "math", "x \\in [-2,7]", ["[-2,7]", "-2 \\le x \\le 7"], ["[-2,8]"]),
    (
        "interval",
        "math",
        "\\left(\\frac{3}{5},\\frac{8}{3}\\right]",
        ["\\left(\\frac35, \\frac83\\right]"],
        ["\\left[\\frac{3}{5},\\frac{8}{3}\\right]"],
    ),
    ("set", "math", "1,-2", ["-2, 1", "1, -2"], ["1, 2"]),
    ("set", "math", "3, 5, 7", ["3, 5, 7", "\\{3, 5, 7\\}"], ["3, 5"]),
    ("set", "math", "1 \\pm \\sqrt{19}", ["1+\\sqrt{19}, 1-\\sqrt{19}", "1 \\pm \\sqrt{19}"], ["1 \\pm \\sqrt{17}"]),
    ("set", "math", "\\{1\\pm\\sqrt{5},-2\\}", ["-2, 1+\\sqrt{5}, 1-\\sqrt{5}"], ["-2, 1+\\sqrt{5}"]),
    ("set", "math", "(6,31,-1)", ["(6, 31, -1)"], ["(6, 31, 1)"]),
    ("set", "math", "\\left( 3, \\frac{\\pi}{2} \\right)", ["(3, \\pi/2)"], ["\\left(3, \\frac{\\pi}{3}\\right)"]),
    (
        "matrix",
        "math",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        ["\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\\\ \\frac{5}{3} \\end{pmatrix}"],
        ["\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}"],
    ),
    (
        "matrix",
        "math",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        ["\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}"],
        ["\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}"],
    ),
    (
        "matrix",
        "math",
        "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}",
        ["\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}"],
        ["\\begin{pmatrix} -2 \\\\ 14 \\\\ -7 \\end{pmatrix}"],
    ),
    ("units", "math", "864 \\mbox{ inches}^2", ["864", "864 \\text{ inches}^2"], ["872"]),
    ("units", "math", "5.4 \\text{ cents}", ["5.4", "5.4 \\text{ cents}"], ["54"]),
    ("units", "math", "15\\mbox{ cm}^2", ["15", "15 \\text{ cm}^2"], ["16"]),
    ("units", "math", "\\$32,\\!348", ["32,348", "\\$32,348", "32348"], ["32,384"]),
    ("units", "math", "\\$18.90", ["18.90", "\\$18.90"], ["18.09"]),
    ("degrees", "math", "90^\\circ", ["90", "90^\\circ", "90^{\\circ}"], ["45^\\circ"]),
    ("degrees", "math", "145^\\circ", ["145^\\circ", "145"], ["135^\\circ"]),
    ("degrees", "math", "\\frac{270}7\\text{ degrees}", ["\\frac{270}{7}"], ["\\frac{270}{9}"]),
    ("percent", "math", "25\\%", ["25\\%", "25"], ["20\\%"]),
    ("percent", "math", "0.15", ["0.15", "15\\%"], ["0.16"]),
    ("percent", "math", "12.5\\%", ["12.5\\%", "12.5"], ["13\\%"]),
    ("text", "math", "\\text{Evelyn}", ["\\text{Evelyn}"], ["\\text{Navin}"]),
    ("text", "math", "\\text{east}", ["\\text{east}", "\\text{East}"], ["\\text{west}"]),
    ("text", "math", "\\text{even}", ["\\text{even}"], ["\\text{odd}", "\\text{neve}"]),
    ("text", "math", "\\text{(C)}", ["\\text{(C)}", "(C)", "C"], ["(B)"]),
    ("pi-sqrt", "math", "3\\sqrt{13}", ["3\\sqrt{13}", "\\sqrt{117}"], ["3\\sqrt{12}"]),
    ("pi-sqrt", "math", "\\pi", ["\\pi"], ["2\\pi"]),
    ("pi-sqrt", "math", "288 \\pi", ["288\\pi"], ["144\\pi"]),
    ("pi-sqrt", "math", "-\\frac{\\pi}{6}", ["-\\frac{\\pi}{6}", "-\\pi/6"], ["\\frac{\\pi}{6}"]),
    ("pi-sqrt", "math", "\\frac{3\\sqrt{3}}{4}", ["\\frac{3\\sqrt3}{4}"], ["\\frac{3\\sqrt{2}}{4}"]),
    ("pi-sqrt", "math", "18+2\\pi", ["2\\pi + 18"], ["18+\\pi"]),
    ("pi-sqrt", "math", "\\frac{20000}{\\pi}", ["\\frac{20000}{\\pi}"], ["20000\\pi"]),
    ("equation", "math", "x=5", ["x = 5", "5"], ["x = 6"]),
    ("equation", "math", "y = 2x + 3", ["y=2x+3", "2x + 3"], ["y = 2x - 3"]),
    ("equation", "math", "5x - 7y + 11z + 4 = 0", ["5x-7y+11z+4=0"], ["5x - 7y + 11z - 4 = 0"]),
    ("equation", "math", "y = -2x", ["y=-2x"], ["y = 2x"]),
    ("expression", "math", "x^3+3x-6", ["x^3 + 3x - 6"], ["x^3+3x+6"]),
    ("expression", "math", "6 - 5i", ["6-5i"], ["6+5i"]),
    ("expression", "math", "p - q", ["p-q"], ["p+q"]),
    ("expression", "math", "52_8", ["52_8"], ["53_8"]),
    ("fraction", "math", "\\frac{14}{3}", ["\\dfrac{14}{3}", "14/3"], ["4.67", "\\frac{13}{3}"]),
    ("fraction", "math", "\\frac 59", ["\\frac{5}{9}"], ["\\frac{5}{8}"]),
    ("fraction", "math", "1\\frac{4}{5}", ["\\frac{9}{5}", "1.8"], ["\\frac{4}{5}"]),
    ("fraction", "math", ".0000672", ["0.0000672"], ["0.000672"]),
    ("fraction", "math", "10,\\!080", ["10080", "10,080"], ["10800"]),
]

GSM8K = [
    ("18", ["18", "\\$18", "18 dollars"], ["17"]),
    ("70000", ["70,000", "70 000", "\\$70,000"], ["7000"]),
    ("540", ["540"], ["504"]),
    ("1000", ["1,000", "1000.00"], ["100"]),
    ("3", ["3"], ["4"]),
]
AIME = [("204", ["204"], ["240"]), ("113", ["113"], ["131"]), ("25", ["025", "25"], ["52"]), ("809", ["809"], ["890"])]


def case(gold, completion, kind, expected, category, style, why, failure_class=None):
    row = {
        "gold": gold,
        "completion": completion,
        "kind": kind,
        "expected": expected,
        "category": category,
        "style": style,
        "why": why,
    }
    if failure_class:
        row["failure_class"] = failure_class
    return row


def styled_cases() -> list[dict]:
    rows = []
    for number, (category, kind, gold, rights, wrongs) in enumerate(FORMATS):
        for i, right in enumerate(rights):
            for j, style in enumerate(
                [
                    "boxed",
                    UNBOXED_STYLES[(number + i) % len(UNBOXED_STYLES)],
                    UNBOXED_STYLES[(number + i + 3) % len(UNBOXED_STYLES)],
                ]
            ):
                text = STYLES[style].format(r=REASONING[(number + j) % 3], a=right)
                rows.append(
                    case(
                        gold,
                        text,
                        kind,
                        True,
                        category,
                        style,
                        f"{right!r} is the gold {gold!r} written another way" if right != gold else "the gold itself",
                    )
                )
        for k, wrong in enumerate(wrongs):
            style = UNBOXED_STYLES[(number + k + 1) % len(UNBOXED_STYLES)] if k % 2 == 0 else "boxed"
            text = STYLES[style].format(r=REASONING[(number + k) % 3], a=wrong)
            rows.append(case(gold, text, kind, False, category, style, f"{wrong!r} differs from the gold {gold!r}"))
    for dataset, kind, items in (("gsm8k", "numeric", GSM8K), ("aime", "math", AIME)):
        for number, (gold, rights, wrongs) in enumerate(items):
            for i, right in enumerate(rights):
                for style in ("boxed", UNBOXED_STYLES[(number + i) % len(UNBOXED_STYLES)]):
                    text = STYLES[style].format(r=REASONING[number % 3], a=right)
                    rows.append(case(gold, text, kind, True, dataset, style, f"{right!r} is {gold}"))
            for wrong in wrongs:
                style = UNBOXED_STYLES[(number + 2) % len(UNBOXED_STYLES)]
                rows.append(
                    case(
                        gold,
                        STYLES[style].format(r=REASONING[number % 3], a=wrong),
                        kind,
                        False,
                        dataset,
                        style,
                        f"{wrong!r} is not {gold}",
                    )
                )
    return rows


# Hand-written cases: every failure class of issue 18 and the plain-text styles of small models.
HAND: list[tuple] = [
    # gold, completion, kind, expected, category, style, why, failure class
    (
        "-\\frac{10}{9}",
        "Solving, we get x = -\\frac{10}{9}",
        "math",
        True,
        "fraction",
        "prose",
        "a bare negative LaTeX fraction keeps its sign",
        "last-number sign",
    ),
    (
        "\\frac{10}{9}",
        "Solving, we get x = -\\frac{10}{9}",
        "math",
        False,
        "fraction",
        "prose",
        "the sign makes it a different number",
        "last-number sign",
    ),
    (
        "-10/9",
        "The slope works out to -10/9",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "a signed a/b fraction",
        "last-number sign",
    ),
    (
        "\\frac{2}{3}",
        "So the probability is 2/3.",
        "math",
        True,
        "fraction",
        "prose",
        "the full stop ends the sentence, not the fraction",
        "full stop after a/b",
    ),
    (
        "\\frac{2}{3}",
        "Therefore the fraction of red marbles is 2/3.",
        "math",
        True,
        "fraction",
        "prose",
        "a/b before a full stop",
        "full stop after a/b",
    ),
    (
        "0.4",
        "The chance of rain on both days is .4",
        "math",
        True,
        "fraction",
        "prose",
        "a decimal with a leading point",
        "leading-point decimal",
    ),
    (
        "0.4",
        "She keeps .4 of the cake",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "a decimal with a leading point",
        "leading-point decimal",
    ),
    (
        "1000",
        "In total they collected 1 000",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "a space is a thousands separator",
        "space thousands",
    ),
    (
        "1000",
        "The total number of apples is 1 000.",
        "math",
        True,
        "aime",
        "prose",
        "a space is a thousands separator",
        "space thousands",
    ),
    (
        "\\frac{1}{3}",
        "Each person gets \\frac13",
        "math",
        True,
        "fraction",
        "prose",
        "\\frac13 is one third",
        "\\frac13",
    ),
    (
        "\\frac{1}{3}",
        "Each person gets \\frac13 of the pizza",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "\\frac13 is one third",
        "\\frac13",
    ),
    (
        "\\frac{1}{3}",
        "The ratio simplifies to \\cfrac{1}{3}",
        "math",
        True,
        "fraction",
        "prose",
        "\\cfrac is a fraction",
        "\\cfrac",
    ),
    (
        "0.5",
        "The ratio simplifies to \\cfrac{1}{2}",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "\\cfrac is a fraction",
        "\\cfrac",
    ),
    (
        "-3",
        "The temperature at night is -3 degrees",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "a negative GSM8K answer with a unit",
        "last-number sign",
    ),
    (
        "34",
        "We check n = 35 fails.\n\nFinal Answer: The largest $n$ is 34.",
        "math",
        True,
        "aime",
        "final-answer",
        "the answer is the number the sentence states, not the sentence",
        "final-answer sentence",
    ),
    (
        "34",
        "Final Answer: The largest $n$ is 34.",
        "numeric",
        True,
        "gsm8k",
        "final-answer",
        "the number of the final sentence",
        "final-answer sentence",
    ),
    (
        "10455",
        "We first find $\\boxed{255}$ terms. Summing them, the final answer is $10,455$.",
        "math",
        True,
        "aime",
        "final-answer",
        "a later final answer overrides an intermediate box",
        "intermediate box",
    ),
    (
        "255",
        "We first find $\\boxed{255}$ terms. Summing them, the final answer is $10,455$.",
        "math",
        False,
        "aime",
        "final-answer",
        "the stated final answer is 10455, not the intermediate 255",
        "intermediate box",
    ),
    (
        "10455",
        "We first find \\boxed{255} terms. Summing them, the final answer is 10,455.",
        "numeric",
        True,
        "gsm8k",
        "final-answer",
        "a later final answer overrides an intermediate box",
        "intermediate box",
    ),
    (
        "1, 2, 3",
        "The solutions are $\\boxed{1}, \\boxed{2}, \\boxed{3}$.",
        "math",
        True,
        "set",
        "boxed",
        "three boxes in the final sentence are the set",
        "several boxes",
    ),
    (
        "1, 2, 3",
        "The solutions are $\\boxed{1}$, $\\boxed{2}$ and $\\boxed{3}$.",
        "math",
        True,
        "set",
        "boxed",
        "boxes joined by 'and' are the set",
        "several boxes",
    ),
    (
        "1, 2, 3",
        "The solutions are $\\boxed{1}, \\boxed{2}$.",
        "math",
        False,
        "set",
        "boxed",
        "a missing element",
        "several boxes",
    ),
    (
        "2",
        "The middle root is $\\boxed{1}, \\boxed{2}$",
        "math",
        False,
        "set",
        "boxed",
        "two boxed answers for a single-valued gold: the answer is a set, not the gold",
        "several boxes",
    ),
    (
        "-2, 1",
        "So $x = \\boxed{-2}$ or $x = \\boxed{1}$.",
        "math",
        True,
        "set",
        "boxed",
        "x = a or x = b with both boxed",
        "several boxes",
    ),
    (
        "(-\\infty, 3)",
        "Hence the solution set is all x with\n\nx < 3",
        "math",
        True,
        "interval",
        "prose",
        "an inequality is the interval",
        "non-numeric unboxed",
    ),
    (
        "(-\\infty, 3)",
        "The answer is x < 3.",
        "math",
        True,
        "interval",
        "answer-then-check",
        "an inequality is the interval",
        "non-numeric unboxed",
    ),
    (
        "(-\\infty, 3)",
        "The answer is x > 3.",
        "math",
        False,
        "interval",
        "answer-then-check",
        "wrong direction",
        "non-numeric unboxed",
    ),
    (
        "(-\\infty, 2) \\cup (3, \\infty)",
        "So the inequality holds when\nx<2 or x>3",
        "math",
        True,
        "interval",
        "prose",
        "a union of rays",
        "non-numeric unboxed",
    ),
    (
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        "Final answer: \\(\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}\\)",
        "math",
        True,
        "matrix",
        "final-answer",
        "an unboxed matrix",
        "non-numeric unboxed",
    ),
    (
        "\\text{(E)}",
        "Only option E satisfies all the conditions, so the answer is $E$.",
        "math",
        True,
        "text",
        "prose",
        "the choice letter in math",
        "non-numeric unboxed",
    ),
    (
        "\\text{Evelyn}",
        "Comparing the averages, the answer is Evelyn.",
        "math",
        True,
        "text",
        "prose",
        "a word answer",
        "non-numeric unboxed",
    ),
    (
        "\\text{Evelyn}",
        "Comparing the averages, the answer is Navin.",
        "math",
        False,
        "text",
        "prose",
        "another word",
        "non-numeric unboxed",
    ),
    (
        "2",
        "The code on the card is AZYUK2A",
        "math",
        False,
        "aime",
        "prose",
        "a digit inside a word is not an answer",
        "digit in a word",
    ),
    (
        "2",
        "The code on the card is AZYUK2A",
        "numeric",
        False,
        "gsm8k",
        "prose",
        "a digit inside a word is not an answer",
        "digit in a word",
    ),
    (
        "\\frac{1}{2^{99}}",
        "The probability is $\\boxed{\\frac{1}{2^{98}}}$.",
        "math",
        False,
        "fraction",
        "boxed",
        "1/2^98 is twice 1/2^99: exact values differ",
        "float tolerance",
    ),
    (
        "\\frac{1}{2^{99}}",
        "The probability is $\\boxed{\\frac{1}{2^{99}}}$.",
        "math",
        True,
        "fraction",
        "boxed",
        "the same power",
        "float tolerance",
    ),
    (
        "\\frac{1}{2^{99}}",
        "The probability is $\\boxed{2^{-99}}$.",
        "math",
        True,
        "fraction",
        "boxed",
        "the same value as a negative power",
        "float tolerance",
    ),
    (
        "1000000",
        "The answer is $\\boxed{1000001}$.",
        "math",
        False,
        "aime",
        "boxed",
        "off by one in a million is wrong",
        "float tolerance",
    ),
    (
        "\\frac{1}{3}",
        "The answer is $\\boxed{0.333333}$.",
        "math",
        True,
        "fraction",
        "boxed",
        "a decimal rounding of the fraction is accepted (math-verify's tolerance)",
        None,
    ),
    ("B", "Because B is valid", "letter", True, "letter", "prose", "the lone letter is the choice", "letter mode"),
    ("B", "The answer is (B).", "letter", True, "letter", "answer-then-check", "a parenthesised choice", "letter mode"),
    (
        "B",
        "Option A fails since the sum is odd. Therefore the answer is B",
        "letter",
        True,
        "letter",
        "prose",
        "the answer phrase wins over the earlier letter",
        "letter mode",
    ),
    ("C", "$\\boxed{C}$", "letter", True, "letter", "boxed", "a boxed letter", "letter mode"),
    ("C", "**Answer:** (D)", "letter", False, "letter", "answer-bold", "a different choice", "letter mode"),
    (
        "D",
        "A quick check of each option shows only (D) works.",
        "letter",
        True,
        "letter",
        "prose",
        "the article 'A' is not a choice",
        "letter mode",
    ),
    ("A", "Answer: A", "letter", True, "letter", "answer-bold", "choice A", "letter mode"),
    (
        "E",
        "I think it is (C), no wait, it is (E).",
        "letter",
        True,
        "letter",
        "prose",
        "the last stated choice",
        "letter mode",
    ),
    (
        "E",
        "The final answer is $\\boxed{\\text{(E)}}$",
        "letter",
        True,
        "letter",
        "boxed",
        "a boxed text choice",
        "letter mode",
    ),
    (
        "18",
        "Janet sells 16 - 3 - 4 = 9 eggs. She makes 9 * 2 = $18 every day.\n#### 18",
        "numeric",
        True,
        "gsm8k",
        "prose",
        "GSM8K's own #### format",
        None,
    ),
    (
        "18",
        "Janet sells 9 eggs at 2 dollars each, so she makes",
        "numeric",
        False,
        "gsm8k",
        "truncated",
        "cut off before the answer: the last number is an intermediate one",
        "truncated",
    ),
    (
        "204",
        "We need the sum of the roots, which is \\boxed{2",
        "math",
        False,
        "aime",
        "truncated",
        "the box is cut off: no answer",
        "truncated",
    ),
    (
        "204",
        "Let me compute the total: 12 \\cdot 17 = ",
        "math",
        False,
        "aime",
        "truncated",
        "cut off mid-computation",
        "truncated",
    ),
    (
        "\\frac{14}{3}",
        "We have $3x = 14$, so $x = \\frac{14}{3}$.\n\nLet me double-check: $3 \\cdot \\frac{14}{3} = 14$. Yes.",
        "math",
        True,
        "fraction",
        "answer-then-check",
        "the model answered 14/3 and then checked it; the check's last math span is 14",
        "answer followed by a check",
    ),
    ("113", "**113**", "math", True, "aime", "markdown-bold", "a bare bold answer", None),
    ("113", "The answer is **113**.", "math", True, "aime", "markdown-bold", "bold after the phrase", None),
    ("3", "Final answer: 3", "numeric", True, "gsm8k", "answer-bold", "plain final answer line", None),
    (
        "\\frac{3}{56}",
        "The answer is: $\\frac{3}{56}$",
        "math",
        True,
        "fraction",
        "final-answer",
        "phrase with colon",
        None,
    ),
    (
        "\\sqrt{51}",
        "### Final Answer\n$\\sqrt{51}$",
        "math",
        True,
        "pi-sqrt",
        "final-answer",
        "markdown heading then the answer",
        None,
    ),
    (
        "\\sqrt{51}",
        "### Final Answer\n$\\sqrt{52}$",
        "math",
        False,
        "pi-sqrt",
        "final-answer",
        "a different root",
        None,
    ),
    (
        "6+9i",
        "Multiplying out, we obtain $6 + 9i$.",
        "math",
        True,
        "expression",
        "prose",
        "complex number in prose",
        None,
    ),
    (
        "\\text{even}",
        "Since f(-x) = f(x), the function is $\\boxed{\\text{even}}$.",
        "math",
        True,
        "text",
        "boxed",
        "boxed word",
        None,
    ),
    (
        "\\text{even}",
        "Since f(-x) = -f(x), the function is $\\boxed{\\text{odd}}$.",
        "math",
        False,
        "text",
        "boxed",
        "another word",
        None,
    ),
    ("120^\\circ", "The angle measures $120^\\circ$.", "math", True, "degrees", "prose", "degrees in prose", None),
    ("120^\\circ", "So the angle is 120 degrees.", "math", True, "degrees", "prose", "degrees written as a word", None),
    ("30^\\circ", "So the angle is 60 degrees.", "math", False, "degrees", "prose", "another angle", None),
    (
        "5.4 \\text{ cents}",
        "Each pencil costs 5.4 cents.",
        "math",
        True,
        "units",
        "prose",
        "unit words after the number",
        None,
    ),
    (
        "58,500",
        "The population is 58,500 people.",
        "math",
        True,
        "units",
        "prose",
        "comma thousands with a unit word",
        None,
    ),
    ("58,500", "The population is 58,050 people.", "math", False, "units", "prose", "a different number", None),
]


def hand_cases() -> list[dict]:
    return [case(*row) for row in HAND]


def real_cases() -> list[dict]:
    """Completions copied verbatim from the runs of docs/results.md (real_outputs.jsonl), verdicts by reading them."""
    path = Path(__file__).with_name("real_outputs.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    rows = styled_cases() + hand_cases() + real_cases()
    path = Path(__file__).with_name("corpus.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} cases -> {path}")


if __name__ == "__main__":
    main()
