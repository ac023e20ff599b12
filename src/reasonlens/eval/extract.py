"""Final-answer extraction from model completions, and exact reading of a final number.

Three extractors, one per grading kind:

- :func:`extract_math_answer` (``math``: MATH-500, AIME) follows math-verify's own extraction order:
  the last box or a later "final answer is ..." phrase, then "answer: ..." phrases, then the last
  math item (a ``$...$``-style span, a formula-like ``**bold**`` span, a bare number or a bare
  formula on the last line); boxes listed in the final sentence come back together as ``parts``.
- :func:`extract_answer` (``numeric``: GSM8K, synthetic tasks): the last box or a later
  "final answer" phrase, else the last answer phrase of any kind, else the last number, whose
  value :func:`read_final_number` then reads exactly. Numbers in running text (signs, ``.4``,
  ``1,000``, ``1 000``, ``a/b``, ``\\frac13``, ``\\dfrac``, ``\\cfrac``) are found by one pattern whose
  every match :func:`read_number` reads.
- :func:`extract_letter` (``letter``: multiple-choice datasets): the chosen option A-E.

A box the completion was cut off inside (``\\boxed{4``) is not a box: the fallbacks read past it.

Everything here runs in time linear in the input (single left-to-right passes, regexes without
nested quantifiers), so megabyte-long or adversarially nested completions cannot stall a run.
Only ASCII digits are digits: Unicode look-alikes (fullwidth, Arabic-Indic, mathematical bold ...)
are not read as numbers, in agreement with math-verify, which leaves them as unequal strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "Extraction",
    "NumberReading",
    "extract_answer",
    "extract_answer_with_source",
    "extract_letter",
    "extract_math_answer",
    "last_boxed",
    "last_number",
    "phrase_answer",
    "read_final_number",
    "read_number",
]

AnswerSource = Literal["boxed", "phrase", "math", "number", "letter"]


@dataclass(frozen=True)
class Extraction:
    """An extracted final answer and which rule produced it.

    ``parts`` holds every answer stated together in the final sentence (``\\boxed{1}, \\boxed{2}``
    or "$1$ and $2$"); ``text`` is the last of them. Graders join the parts into one set/tuple
    answer only when the gold is one.
    """

    text: str
    source: AnswerSource
    parts: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# \boxed{...}

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_UNBRACED_BOX_STOP = re.compile(r"[\s$]")


_BRACE_EVENT = re.compile(r"\\.|[{}]", re.DOTALL)


def _brace_partners(text: str) -> dict[int, int]:
    """Map the index of every matched '{' to the index of its '}' in one pass.

    Escaped braces (``\\{``, ``\\}``) are literal characters in LaTeX and are skipped, as is
    whatever follows any backslash (so ``\\\\{`` still opens a group).
    """
    partners: dict[int, int] = {}
    open_stack: list[int] = []
    for event in _BRACE_EVENT.finditer(text):
        token = event.group()
        if token == "{":
            open_stack.append(event.start())
        elif token == "}" and open_stack:
            partners[open_stack.pop()] = event.start()
    return partners


def _skip_spaces(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    return i


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``.

    A box left unclosed (e.g. a completion cut off by the token budget) or an empty ``\\boxed{}``
    is skipped in favour of the previous one. ``\\boxed 42`` (no braces) yields ``"42"``.
    """
    starts = [m.end() for m in _BOX_COMMAND.finditer(text)]
    if not starts:
        return None
    partners: dict[int, int] | None = None
    for after_command in reversed(starts):
        i = _skip_spaces(text, after_command)
        if i < len(text) and text[i] == "{":
            if partners is None:
                partners = _brace_partners(text)
            close = partners.get(i)
            if close is None:
                continue
            content = text[i + 1 : close].strip()
        elif after_command < len(text) and text[after_command] in " \t":
            stop = _UNBRACED_BOX_STOP.search(text, i)
            content = text[i : stop.start() if stop else len(text)].rstrip(".,;")
        else:
            continue
        if content:
            return content
    return None


# ---------------------------------------------------------------------------------------------
# Several boxes in the final sentence: \boxed{1}, \boxed{2} and \boxed{3}

_MAX_BOX_GROUP = 10
_BOX_SEPARATOR_NOISE = re.compile(
    r"\\text\{\s*(?:and|or|,)?\s*\}|\\q?quad(?![A-Za-z])|\\[,;:! ]|(?<![A-Za-z])[A-Za-z]\s*=|[\s$,;]"
)


@dataclass(frozen=True)
class _Box:
    start: int
    end: int
    content: str


def _boxes(text: str) -> list[_Box]:
    """Every complete, non-empty box in ``text`` in order (one pass over the braces)."""
    starts = [m for m in _BOX_COMMAND.finditer(text)]
    if not starts:
        return []
    partners: dict[int, int] | None = None
    boxes: list[_Box] = []
    for command in starts:
        after_command = command.end()
        i = _skip_spaces(text, after_command)
        if i < len(text) and text[i] == "{":
            if partners is None:
                partners = _brace_partners(text)
            close = partners.get(i)
            if close is None:
                continue
            content, end = text[i + 1 : close].strip(), close + 1
        elif after_command < len(text) and text[after_command] in " \t":
            stop = _UNBRACED_BOX_STOP.search(text, i)
            end = stop.start() if stop else len(text)
            content = text[i:end].rstrip(".,;")
        else:
            continue
        if content:
            boxes.append(_Box(command.start(), end, content))
    return boxes


def _final_box_group(text: str, boxes: list[_Box]) -> list[_Box]:
    """The last box plus the boxes right before it that are only separated by commas, "and", "or"."""
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if len(group) >= _MAX_BOX_GROUP:
            break
        gap = text[box.end : group[-1].start]
        if len(gap) > 40 or _BOX_SEPARATOR_NOISE.sub("", gap) not in ("", "and", "or"):
            break
        group.append(box)
    return group[::-1]


# ---------------------------------------------------------------------------------------------
# "the answer is ..." / "final answer: ..."

# "final answer" then, within 100 characters, "is" or a colon: math-verify's strongest anchor.
_FINAL_PHRASE = re.compile(r"\bfinal\s+answer\b(?:\**\s*:|[^\n]{0,100}?\s(?:is|=)\b\s*:?)\**", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(r"\banswer\**\s*(?:is\b\s*:?|:|=)\**", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_PHRASE_MAX_CHARS = 2000
_PHRASE_WINDOW_CHARS = 400
_MAX_PHRASE_TRIES = 64


def _clean_phrase_capture(capture: str) -> str:
    capture = capture.strip().strip("*").strip()
    for opening, closing in _MATH_DELIMITERS:
        if capture.startswith(opening):
            end = capture.find(closing, len(opening))
            while end > 0 and closing == "$" and capture[end - 1] == "\\":
                end = capture.find(closing, end + 1)  # \$ is a dollar sign inside the math
            if end > 0:
                return capture[len(opening) : end].strip()
    sentence_end = _SENTENCE_END.search(capture)
    if sentence_end:
        capture = capture[: sentence_end.start()]
    return capture.strip().rstrip(".").strip("*$ ").strip()


def _phrase_capture(text: str, end: int) -> str:
    line_end = text.find("\n", end, end + _PHRASE_MAX_CHARS)
    return text[end : line_end if line_end >= 0 else end + _PHRASE_MAX_CHARS]


def phrase_answer(text: str) -> str | None:
    """Answer after the last "the answer is" / "final answer:" / "Answer =" phrase on its line.

    The capture stops at the end of the line or of the sentence; a leading ``$...$`` /
    ``\\(...\\)`` math span is unwrapped; markdown bold markers are removed.
    """
    ends = [m.end() for m in _ANSWER_PHRASE.finditer(text)]
    for end in reversed(ends[-_MAX_PHRASE_TRIES:]):
        cleaned = _clean_phrase_capture(_phrase_capture(text, end))
        if cleaned:
            return cleaned
    return None


# ---------------------------------------------------------------------------------------------
# Numbers in running text, read through read_number

_NUM = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]{1,3}(?: [0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+"
_FRAC_ARGUMENT = rf"\{{\s*-?(?:{_NUM})\s*\}}|[0-9]"
_NUMBER_SPAN = re.compile(
    r"(?<![A-Za-z0-9_.\\])(?P<sign>[-\u2212])?"
    rf"(?P<body>\\[dtc]?frac\s*(?:{_FRAC_ARGUMENT})\s*(?:{_FRAC_ARGUMENT})"
    rf"|(?:{_NUM})(?:\s*/\s*(?:{_NUM})(?![0-9]))?)"
)
_SIGN_BLOCKERS = frozenset("0123456789)]}")


_FRAC_ARGUMENTS = re.compile(rf"\{{\s*(-?(?:{_NUM}))\s*\}}|([0-9])")
_SEPARATORS = re.compile(r"[\s,]")


def _number_text(match: re.Match, text: str) -> str:
    """Plain form of a matched number: no separators, ``\\frac{a}{b}``, a sign only when unary."""
    body = match.group("body")
    if body.startswith("\\"):
        arguments = [a or b for a, b in _FRAC_ARGUMENTS.findall(body, body.index("frac") + 4)]
        numerator, denominator = (_SEPARATORS.sub("", a) for a in arguments[:2])
        number = f"\\frac{{{numerator}}}{{{denominator}}}"
    else:
        number = _SEPARATORS.sub("", body)
    if match.group("sign"):
        before = text[match.start() - 1] if match.start() > 0 else " "
        if not (before.isalpha() or before in _SIGN_BLOCKERS):
            number = "-" + number
    return number


def last_number(text: str) -> str | None:
    """The last number in ``text`` in plain form: ``"-1234.5"``, ``"3/4"``, ``"\\frac{3}{4}"``, ``".4"``.

    Thousands separators (``1,000``, ``1 000``) are removed; ``\\frac13``, ``\\dfrac``, ``\\cfrac``
    are fractions; a minus sign counts only when it is not a binary minus (not preceded by a
    digit, letter or closing bracket); U+2212 is a minus sign. A digit glued to a letter
    (``AZYUK2A``, ``x2``) is not a number. Every span is a valid :func:`read_number` input.
    """
    last = None
    for last in _NUMBER_SPAN.finditer(text):
        pass
    return None if last is None else _number_text(last, text)


# ---------------------------------------------------------------------------------------------
# Math-kind extraction (math-verify's order: boxed / "final answer is", "answer:", last math)

_MATH_EVENT = re.compile(r"\\[()\[\]]|\\.|\$\$|\$|\n", re.DOTALL)
_CLOSERS = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_BOLD = re.compile(r"\*\*(?![\s*])([^*\n]{1,1000}?)\*\*")
_MAX_ITEM_CHARS = 1_000
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_ANY_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_LEAD_NOISE = re.compile(r"^(?:[\s*:]|\\\[|\\\(|\$)*")
_JOINER = re.compile(r"^\s*(?:,|;)?\s*(?:and|or)?\s*$")
_MATHY = re.compile(r"[0-9\\<>=()\[\]^_{}]")
_CHECK = re.compile(
    r"\b(?:let(?:'s| us| me)?\s+(?:double[- ]?)?(?:check|verify)|(?:double[- ]?)?check(?:ing)?\s*:|verif(?:y|ication)\s*:"
    r"|sanity check)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Item:
    start: int
    end: int
    content: str
    kind: Literal["latex", "bold", "number"]


def _formula_like(text: str) -> bool:
    """Short and at most one English word (``x < 3``, ``(-\\infty, 3)``, ``Evelyn``), not prose."""
    return 0 < len(text) <= _MAX_ITEM_CHARS and len(_WORD.findall(text)) <= 1


def _math_items(text: str, start: int = 0, end: int | None = None) -> list[_Item]:
    """Math spans (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``), formula-like ``**bold**`` spans and
    bare numbers in ``text[start:end]``, in order. One left-to-right pass; inline spans end at a line."""
    end = len(text) if end is None else end
    items: list[_Item] = []
    open_token: str | None = None
    open_at = start
    plain_from = start

    def add_numbers(lo: int, hi: int) -> None:
        for match in _NUMBER_SPAN.finditer(text, lo, hi):
            items.append(_Item(match.start(), match.end(), _number_text(match, text), "number"))

    for event in _MATH_EVENT.finditer(text, start, end):
        token = event.group()
        if open_token is None:
            if token in _CLOSERS and token != "\\)" and token != "\\]":
                add_numbers(plain_from, event.start())
                open_token, open_at = token, event.start()
                plain_from = event.end()
            continue
        if token == "\n" and open_token in ("$", "\\("):
            add_numbers(plain_from, event.start())  # an inline span never crosses a line: not math
            open_token, plain_from = None, event.end()
            continue
        if token == _CLOSERS[open_token]:
            content = text[open_at + len(open_token) : event.start()].strip()
            if content and len(content) <= _MAX_ITEM_CHARS:
                items.append(_Item(open_at, event.end(), content, "latex"))
            open_token, plain_from = None, event.end()
    if open_token is not None:
        plain_from = min(plain_from, open_at + len(open_token))
    add_numbers(plain_from, end)
    return _with_bold_items(text, start, end, items)


def _with_bold_items(text: str, start: int, end: int, items: list[_Item]) -> list[_Item]:
    """Add formula-like ``**bold**`` spans (``**$x < 3$**``, ``**113**``) as items replacing what they hold."""
    bolds = []
    for match in _BOLD.finditer(text, start, end):
        content = match.group(1).strip().strip("$").strip()
        if _formula_like(content):
            bolds.append(_Item(match.start(), match.end(), content, "bold"))
    if not bolds:
        return items
    kept = []
    bold_index = 0
    for item in items:
        while bold_index < len(bolds) and bolds[bold_index].end <= item.start:
            bold_index += 1
        bold = bolds[bold_index] if bold_index < len(bolds) else None
        if bold is None or not (bold.start <= item.start and item.end <= bold.end):
            kept.append(item)
    return sorted(kept + bolds, key=lambda item: item.start)


def _sentence_end(text: str, start: int, items: list[_Item]) -> int:
    """End of the sentence that starts at ``start``: a full stop (or line end) outside math spans."""
    position = start
    for item in items + [None]:
        limit = item.start if item is not None else len(text)
        stop = _SENTENCE_END.search(text, position, limit)
        if stop is None:
            newline = text.find("\n", position, limit)
            if newline >= 0:
                return newline
        else:
            return stop.start()
        if item is None:
            return len(text)
        position = item.end
    return len(text)


def _strip_answer_text(text: str) -> str:
    text = text.strip().strip("*").strip()
    if text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text.rstrip(".,;:!").strip("*$ ").strip()


def _joined_items(capture: str, items: list[_Item], first: int) -> tuple[str, ...]:
    """The item at ``first`` plus following items joined by ``,``/``and``/``or`` (an answer list)."""
    parts = [items[first]]
    for item in items[first + 1 :]:
        if not _JOINER.match(capture[parts[-1].end : item.start]) or len(parts) >= _MAX_BOX_GROUP:
            break
        parts.append(item)
    return tuple(_unbox(p.content) for p in parts)


def _unbox(content: str) -> str:
    inner = last_boxed(content)
    return inner if inner is not None else content


def _answer_from_capture(capture: str) -> tuple[str, ...] | None:
    """The answer stated after an answer phrase, from the rest of its sentence."""
    items = _math_items(capture)
    lead = _LEAD_NOISE.match(capture).end()
    sentence_end = _sentence_end(capture, lead, items)
    items = [item for item in items if item.start < sentence_end]
    capture = capture[:sentence_end]
    if items and items[0].start <= lead + 2 and not capture[lead : items[0].start].strip("$ *"):
        return _joined_items(capture, items, 0)
    stated = _strip_answer_text(capture[lead:])
    if stated and _formula_like(stated) and (not items or _MATHY.search(stated) or len(_ANY_WORD.findall(stated)) == 1):
        if "\\boxed" in stated or "\\fbox" in stated:
            stated = _unbox(stated)
        return (stated,)
    if items:
        return (_unbox(items[-1].content),)
    return None


def _phrase_answers(text: str, pattern: re.Pattern) -> tuple[int, tuple[str, ...]] | None:
    """(start, answer parts) of the last phrase of ``pattern`` followed by a readable answer."""
    matches = list(pattern.finditer(text))
    for match in reversed(matches[-_MAX_PHRASE_TRIES:]):
        window_end = min(len(text), match.end() + _PHRASE_WINDOW_CHARS)
        parts = _answer_from_capture(text[match.end() : window_end])
        if parts:
            return match.start(), parts
    return None


def _last_line_formula(text: str) -> str | None:
    """The last non-blank line when it is a bare formula (``x \\in [-2, 7]``), not prose."""
    stripped = text.rstrip()
    line = stripped[stripped.rfind("\n") + 1 :][: _MAX_ITEM_CHARS + 1]
    line = _strip_answer_text(line.lstrip("-*#> ").strip())
    words = [word for word in _ANY_WORD.findall(line) if word not in ("or", "and")]
    if not line or len(line) > _MAX_ITEM_CHARS or words or not _MATHY.search(line):
        return None
    if "$" in line or "\\(" in line or "\\[" in line:
        return None  # math spans are items; the item rule reads them
    lhs, equals, rhs = line.rpartition("=")
    if equals and not re.search(r"[A-Za-z]", lhs) and rhs.strip():
        return rhs.strip()
    return line


_OPEN_END = re.compile(r"(?:[=+\-/\u00d7\u00f7(]|(?<!\*)\*|\\times|\\cdot|\\div)\s*$")  # not markdown's **


def _cut_mid_equation(text: str) -> bool:
    """Text ending in ``=`` or an operator was cut off mid-computation ("1200 * 6 = "): its last number is an
    operand, not an answer, so the fallbacks find none (a box or an answer phrase still counts)."""
    return _OPEN_END.search(text[-64:]) is not None


def extract_math_answer(text: str) -> Extraction | None:
    """The final answer of a completion for math-kind grading, in math-verify's order.

    1. The last boxed answer or the last "final answer is ..." / "Final Answer: ..." phrase, whichever
       comes later (an intermediate ``\\boxed{255}`` loses to a later "The final answer is $10,455$").
       Boxes in the final sentence separated only by commas, "and", "or" come back together as
       ``parts`` (``\\boxed{1}, \\boxed{2}, \\boxed{3}``).
    2. The last "answer is ..." / "Answer: ..." phrase.
    3. The last math item: a ``$...$``-style span, formula-like ``**bold**`` or bare number, or a last
       line that is a bare formula (``x < 3``).

    After a phrase the answer is the math item that opens the sentence (with the items listed after
    it), else the whole rest of the sentence when it is formula-like (``x < 3``, ``Evelyn``), else
    the sentence's last math item ("The largest $n$ is 34." -> ``34``). Linear time throughout.
    """
    boxes = _boxes(text)
    final = _phrase_answers(text, _FINAL_PHRASE)
    if boxes and (final is None or final[0] < boxes[-1].end):
        group = _final_box_group(text, boxes)
        return Extraction(group[-1].content, "boxed", tuple(box.content for box in group))
    if final is not None:
        return Extraction(final[1][-1], "phrase", final[1])
    phrase = _phrase_answers(text, _ANSWER_PHRASE)
    if phrase is not None:
        return Extraction(phrase[1][-1], "phrase", phrase[1])
    if _cut_mid_equation(text):
        return None
    items = _math_items(text)
    check = None
    for check in _CHECK.finditer(text):
        pass
    if check is not None and any(item.end <= check.start() for item in items):
        text = text[: check.start()]  # "x = 14/3. Let me verify: 3 * 14/3 = 14": the check is not the answer
        items = [item for item in items if item.end <= check.start()]
    last_line_start = text.rstrip().rfind("\n") + 1
    if not any(item.kind != "number" and item.end > last_line_start for item in items):
        line = _last_line_formula(text)
        if line is not None:
            return Extraction(line, "math", (line,))
    if not items:
        return None
    group = [items[-1]]
    for item in reversed(items[:-1]):
        if (
            len(group) >= _MAX_BOX_GROUP
            or item.kind != group[-1].kind
            or not _JOINER.match(text[item.end : group[-1].start])
        ):
            break
        group.append(item)
    parts = tuple(_unbox(item.content) for item in reversed(group))
    return Extraction(parts[-1], "number" if group[0].kind == "number" else "math", parts)


def extract_answer_with_source(text: str) -> Extraction | None:
    """Like :func:`extract_answer`, also telling which rule matched.

    A "final answer" phrase after the last box overrides it; without a box the last answer phrase of
    any kind counts ("the answer is" after an earlier "the final answer is" is the later statement).
    """
    boxes = _boxes(text)
    if boxes:
        final_matches = [m for m in _FINAL_PHRASE.finditer(text, boxes[-1].end)][-_MAX_PHRASE_TRIES:]
        for match in reversed(final_matches):
            cleaned = _clean_phrase_capture(_phrase_capture(text, match.end()))
            if cleaned and _LAST_DIGIT_RUN.search(cleaned):
                return Extraction(cleaned, "phrase", (cleaned,))
        return Extraction(boxes[-1].content, "boxed", (boxes[-1].content,))
    phrase = phrase_answer(text)
    if phrase is not None:
        return Extraction(phrase, "phrase", (phrase,))
    number = None if _cut_mid_equation(text) else last_number(text)
    if number is not None:
        return Extraction(number, "number", (number,))
    return None


def extract_answer(text: str) -> str | None:
    """The final answer in a completion, or ``None`` when there is none (see module docstring)."""
    extraction = extract_answer_with_source(text)
    return extraction.text if extraction is not None else None


# ---------------------------------------------------------------------------------------------
# Multiple-choice letters

_CHOICE = r"\(?(?P<letter>[A-E])\)?"
_LETTER_IN_BOX = re.compile(rf"^\s*(?:\\text(?:bf)?\{{\s*)?{_CHOICE}(?![A-Za-z0-9])")
_LETTER_PHRASE = re.compile(
    rf"(?i:\banswer)\**\s*(?:(?i:is)\b|:|=)\s*(?:\**\s*)?(?:(?i:option|choice)\s+)?(?:\$?\\text(?:bf)?\{{)?\**{_CHOICE}(?![A-Za-z0-9])"
)
_PARENTHESISED_LETTER = re.compile(r"(?<![A-Za-z0-9])\((?P<letter>[A-E])\)")
_LONE_LETTER = re.compile(r"(?<![A-Za-z0-9'\\])(?P<letter>[B-E]|A(?!\s+[a-z]))(?![A-Za-z0-9'])")


def extract_letter(text: str) -> Extraction | None:
    """The chosen option (A-E) of a multiple-choice completion.

    Order: a boxed letter (``\\boxed{B}``, ``\\boxed{\\text{(B)}}``), the last "answer is (B)" /
    "Answer: B" phrase, the last parenthesised ``(B)``, the last capital A-E standing alone
    ("Because B is valid"; an "A" followed by a lower-case word is the article, not a choice).
    """
    for box in reversed(_boxes(text)):
        match = _LETTER_IN_BOX.match(box.content)
        if match:
            return Extraction(match.group("letter").upper(), "boxed", (match.group("letter").upper(),))
    for pattern, source in ((_LETTER_PHRASE, "phrase"), (_PARENTHESISED_LETTER, "letter"), (_LONE_LETTER, "letter")):
        last = None
        for last in pattern.finditer(text):
            pass
        if last is not None:
            letter = last.group("letter").upper()
            return Extraction(letter, source, (letter,))
    return None


# ---------------------------------------------------------------------------------------------
# Exact reading of the final number of an extracted answer (the "numeric" grader)

# Bound on exact arithmetic: values whose numerator/denominator would exceed this many bits are not
# computed. Golds are short strings, far inside the bound, so such a value cannot equal the gold.
MAX_EXACT_BITS = 20_000
_MAX_SIGNIFICANT_DIGITS = 4_000
_MAX_DECIMAL_EXPONENT = 10_000
_WINDOW_CHARS = 4_096
_MAX_EXPRESSION_DEPTH = 64


class _OutOfRange:
    """A well-defined number beyond :data:`MAX_EXACT_BITS`, deliberately left unevaluated."""

    def __repr__(self) -> str:
        return "OUT_OF_RANGE"


OUT_OF_RANGE = _OutOfRange()
Value = Fraction | _OutOfRange


class _Unreadable(Exception):
    pass


ReadingStatus = Literal["ok", "out_of_range", "no_number", "unreadable"]


@dataclass(frozen=True)
class NumberReading:
    """Result of :func:`read_final_number`.

    ``value`` is the exact value when ``status == "ok"``, else ``None``. ``"out_of_range"``: a
    well-defined number too large (or with too many digits, or too close to zero) to evaluate
    exactly, so it cannot equal a gold of ordinary size. ``"no_number"``: no ASCII digit at all.
    ``"unreadable"``: digits inside an expression this reader does not evaluate (``4^{1/2}``).
    ``reason`` says why there is no value.
    """

    value: Fraction | None
    status: ReadingStatus = "ok"
    reason: str | None = None


_TOKEN = re.compile(
    r"(?P<num>(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<shortfrac>\\frac\s*[0-9]\s*[0-9])"
    r"|(?P<frac>\\frac(?![A-Za-z]))"
    r"|(?P<times>\\times(?![A-Za-z])|\\cdot(?![A-Za-z])|\*)"
    r"|(?P<op>[-+^/{}()])"
    r"|(?P<space>\s+)"
    r"|(?P<other>\\[A-Za-z]+|.)",
    re.DOTALL,
)
_LAST_DIGIT_RUN = re.compile(r"[0-9]+")
_THIN_SPACES = re.compile(r"\\[!,;: ]")
_DECORATIONS = re.compile(r"\\[$%]|\\left(?![A-Za-z])|\\right(?![A-Za-z])|[$%]")
_MAX_EXPONENT_DIGITS = 6
_SPACE_GROUPED_THOUSANDS = re.compile(r"(?<![0-9.,])[0-9]{1,3}(?: [0-9]{3})+(?![0-9])")


def _decimal_value(literal: str) -> Value:
    """Exact value of a decimal literal such as ``1,234.50e-3`` without building huge integers."""
    literal = literal.replace(",", "")
    mantissa, _, exponent_text = literal.lower().partition("e")
    whole, _, fraction_digits = mantissa.partition(".")
    digits = (whole + fraction_digits).lstrip("0")
    if not digits:
        return Fraction(0)
    if len(exponent_text.lstrip("+-").lstrip("0")) > _MAX_EXPONENT_DIGITS:
        return OUT_OF_RANGE
    exponent = int(exponent_text) if exponent_text else 0
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped) - len(fraction_digits)
    if len(stripped) > _MAX_SIGNIFICANT_DIGITS or abs(exponent) > _MAX_DECIMAL_EXPONENT:
        return OUT_OF_RANGE
    value = Fraction(int(stripped)) * Fraction(10) ** exponent
    return _bounded(value)


def _bounded(value: Fraction) -> Value:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_EXACT_BITS:
        return OUT_OF_RANGE
    return value


def _power(base: Value, exponent: Value) -> Value:
    if isinstance(exponent, _OutOfRange):
        if base == 1:
            return Fraction(1)
        if base == 0:
            raise _Unreadable("zero to an unbounded power")
        if isinstance(base, _OutOfRange) or abs(base) != 1:
            return OUT_OF_RANGE
        raise _Unreadable("power of -1 with an unbounded exponent")
    if exponent.denominator != 1:
        raise _Unreadable("non-integer exponent")
    power = exponent.numerator
    if isinstance(base, _OutOfRange):
        if power == 0:
            return Fraction(1)
        return OUT_OF_RANGE
    if base == 0:
        if power < 0:
            raise _Unreadable("division by zero")
        return Fraction(0 if power else 1)
    if abs(base) == 1:
        return base**power
    base_bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if abs(power) * (base_bits - 1) > MAX_EXACT_BITS:
        return OUT_OF_RANGE
    return _bounded(base**power)


def _require_in_range(*values: Value) -> None:
    if any(isinstance(v, _OutOfRange) for v in values):
        raise _Unreadable("arithmetic on a number beyond the exact-arithmetic bound")


class _ExpressionParser:
    """Recursive descent over a short token list: + - * / ^, braces, parentheses, \\frac.

    Grammar: sum := product (('+'|'-') product)*; product := unary (('*'|'/') unary)*;
    unary := '-' unary | '+' unary | power; power := atom ('^' unary)?  (right-associative).
    """

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    def parse(self) -> Value:
        value = self._sum()
        if self.position != len(self.tokens):
            raise _Unreadable("trailing tokens")
        return value

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, text: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (text is not None and token[1] != text):
            raise _Unreadable(f"expected {text!r}")
        self.position += 1
        return token

    def _descend(self) -> None:
        self.depth += 1
        if self.depth > _MAX_EXPRESSION_DEPTH:
            raise _Unreadable("expression nested too deeply")

    def _sum(self) -> Value:
        value = self._product()
        while (token := self._peek()) is not None and token[1] in "+-":
            self._take()
            right = self._product()
            _require_in_range(value, right)
            value = _bounded(value + right if token[1] == "+" else value - right)
        return value

    def _product(self) -> Value:
        value = self._unary()
        value = self._mixed_number(value)
        while (token := self._peek()) is not None and (token[0] == "times" or token[1] == "/"):
            self._take()
            right = self._unary()
            _require_in_range(value, right)
            if token[1] == "/":
                if right == 0:
                    raise _Unreadable("division by zero")
                value = _bounded(value / right)
            else:
                value = _bounded(value * right)
        return value

    def _mixed_number(self, whole: Value) -> Value:
        """``2\\frac{1}{2}`` directly after a whole number reads as 2 1/2, the school notation."""
        token = self._peek()
        previous = self.tokens[self.position - 1] if self.position > 0 else None
        if token is None or token[0] not in ("frac", "shortfrac") or previous is None or previous[0] != "num":
            return whole
        if isinstance(whole, _OutOfRange) or whole.denominator != 1 or whole < 0:
            return whole
        part = self._atom()
        _require_in_range(part)
        if not 0 < part < 1:
            raise _Unreadable("number followed by a fraction")
        return whole + part

    def _unary(self) -> Value:
        token = self._peek()
        if token is not None and token[1] in "+-":
            self._take()
            self._descend()
            value = self._unary()
            self.depth -= 1
            return value if token[1] == "+" or isinstance(value, _OutOfRange) else -value
        return self._power()

    def _power(self) -> Value:
        base = self._atom()
        token = self._peek()
        if token is not None and token[1] == "^":
            self._take()
            self._descend()
            exponent = self._unary()
            self.depth -= 1
            return _power(base, exponent)
        return base

    def _group(self, opening: str, closing: str) -> Value:
        self._take(opening)
        self._descend()
        value = self._sum()
        self.depth -= 1
        self._take(closing)
        return value

    def _atom(self) -> Value:
        token = self._peek()
        if token is None:
            raise _Unreadable("unexpected end")
        kind, text = token
        if kind == "num":
            self._take()
            return _decimal_value(text)
        if kind == "shortfrac":
            self._take()
            digits = [c for c in text if c.isdigit()]
            if digits[1] == "0":
                raise _Unreadable("division by zero")
            return Fraction(int(digits[0]), int(digits[1]))
        if kind == "frac":
            self._take()
            numerator = self._group("{", "}")
            denominator = self._group("{", "}")
            _require_in_range(numerator, denominator)
            if denominator == 0:
                raise _Unreadable("division by zero")
            return _bounded(numerator / denominator)
        if text == "{":
            return self._group("{", "}")
        if text == "(":
            return self._group("(", ")")
        raise _Unreadable(f"unexpected {text!r}")


_EXPRESSION_KINDS = frozenset({"num", "shortfrac", "frac", "times", "op"})


def _expression_tokens(text: str) -> tuple[list[tuple[str, str]], int]:
    """Tokens of the numeric expression that contains the last number of ``text``.

    Returns the tokens and the index of the token holding the last number. The expression is the
    maximal run of numeric tokens (numbers, operators, braces, \\frac) around that number.
    """
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text) if m.lastgroup != "space"]
    last_number_index = max(i for i, (kind, _) in enumerate(tokens) if kind in ("num", "shortfrac"))
    start = last_number_index
    while start > 0 and tokens[start - 1][0] in _EXPRESSION_KINDS:
        start -= 1
    end = last_number_index + 1
    while end < len(tokens) and tokens[end][0] in _EXPRESSION_KINDS:
        end += 1
    return tokens[start:end], last_number_index - start


def _trim_to_balanced(tokens: list[tuple[str, str]], anchor: int) -> tuple[list[tuple[str, str]], int]:
    """Drop unmatched brackets at either end (e.g. from ``\\text{18 dollars}``) and binary
    operators left dangling at the edges, keeping the token at ``anchor``."""
    pairs = {"}": "{", ")": "("}
    stack: list[int] = []
    unmatched: set[int] = set()
    for i, (_, text) in enumerate(tokens):
        if text in "{(":
            stack.append(i)
        elif text in pairs:
            if stack and tokens[stack[-1]][1] == pairs[text]:
                stack.pop()
            else:
                unmatched.add(i)
    unmatched.update(stack)
    left = max((i for i in unmatched if i < anchor), default=-1) + 1
    right = min((i for i in unmatched if i > anchor), default=len(tokens))
    while right - 1 > anchor and (tokens[right - 1][1] in "+-^/{(" or tokens[right - 1][0] in ("times", "frac")):
        right -= 1
    while left < anchor and (tokens[left][1] in "+^/})" or tokens[left][0] == "times"):
        left += 1
    return tokens[left:right], anchor - left


_FALLBACK_REACH = 16


def _parse_nearest_subexpression(tokens: list[tuple[str, str]], anchor: int) -> Value:
    """Value of the widest parsable token span around the last number (the "final number" rule
    when the whole run is not one expression, e.g. ``3 (7)``)."""
    first = max(0, anchor - _FALLBACK_REACH)
    last = min(len(tokens), anchor + 1 + _FALLBACK_REACH)
    for start in range(first, anchor + 1):
        for end in range(last, anchor, -1):
            try:
                return _ExpressionParser(tokens[start:end]).parse()
            except _Unreadable:
                continue
    raise _Unreadable("no readable number")


def _clean_number_text(text: str) -> str:
    text = text.replace("\u2212", "-").replace("{,}", ",")
    text = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", text)
    text = _DECORATIONS.sub(" ", _THIN_SPACES.sub("", text))
    return _SPACE_GROUPED_THOUSANDS.sub(lambda m: m.group().replace(" ", ""), text)


_MAX_WHOLE_NUMBER_CHARS = 1_000


def read_number(text: str) -> NumberReading:
    """Exact value of ``text`` when the whole of it is one numeric expression (``"2^{10}"``,
    ``"-\\frac{3}{4}"``, ``"\\$1,080"``), else ``status="no_number"``. Same arithmetic and bounds as
    :func:`read_final_number`, but nothing besides the number may appear (so ``5\\sqrt{2}`` and
    ``x = 5`` are not numbers here)."""
    cleaned = _clean_number_text(text)
    if len(cleaned) > _MAX_WHOLE_NUMBER_CHARS:
        return NumberReading(None, "no_number", "text too long for a number")
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(cleaned) if m.lastgroup != "space"]
    if not tokens or any(kind not in _EXPRESSION_KINDS for kind, _ in tokens):
        return NumberReading(None, "no_number", "not a plain numeric expression")
    if not any(kind in ("num", "shortfrac") for kind, _ in tokens):
        return NumberReading(None, "no_number", "no number in the text")
    try:
        value = _ExpressionParser(tokens).parse()
    except _Unreadable as error:
        return NumberReading(None, "unreadable", f"cannot evaluate the number exactly: {error}")
    if isinstance(value, _OutOfRange):
        return NumberReading(None, "out_of_range", "number beyond the exact-arithmetic bound")
    return NumberReading(value)


def read_final_number(answer: str) -> NumberReading:
    """Exact value of the final number in an extracted answer (the "numeric" grader's reading).

    LaTeX decorations (``$``, ``\\$``, ``\\%``, ``\\left``, thin spaces, ``{,}``) and units are
    ignored. The number may be a decimal with thousands separators, ``a/b``, ``\\frac{a}{b}``,
    scientific notation (``1.5e3``, ``1.5 \\times 10^{3}``) or a small arithmetic expression with
    powers around it (``2^{10}``, ``-\\frac{3}{4}``). Powers are evaluated only within
    :data:`MAX_EXACT_BITS`; larger values (``10^{10^{10}}``) come back as ``out_of_range`` without
    being computed.
    """
    text = _clean_number_text(answer)
    last_digits = None
    for last_digits in _LAST_DIGIT_RUN.finditer(text):
        pass
    if last_digits is None:
        return NumberReading(None, "no_number", "no number in the answer")
    window_start = max(0, last_digits.start() - _WINDOW_CHARS)
    window_end = min(len(text), last_digits.end() + _WINDOW_CHARS)
    tokens, anchor = _expression_tokens(text[window_start:window_end])
    tokens, anchor = _trim_to_balanced(tokens, anchor)
    try:
        try:
            value = _ExpressionParser(tokens).parse()
        except _Unreadable:
            if any(text_ == "^" for _, text_ in tokens):
                raise
            value = _parse_nearest_subexpression(tokens, anchor)
    except _Unreadable as error:
        return NumberReading(None, "unreadable", f"cannot evaluate the final number exactly: {error}")
    if isinstance(value, _OutOfRange):
        return NumberReading(None, "out_of_range", "number beyond the exact-arithmetic bound")
    return NumberReading(value)
