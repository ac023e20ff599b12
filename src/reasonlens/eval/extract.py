"""Final-answer extraction from model completions, and exact reading of a final number.

Extraction order (SPEC A8): the last brace-matched ``\\boxed{...}`` / ``\\fbox{...}`` (also
``\\boxed 42`` without braces), else the last "the answer is ..." / "final answer: ..." phrase,
else the last number in the text.

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
    "last_boxed",
    "last_number",
    "phrase_answer",
    "read_final_number",
    "read_number",
]

AnswerSource = Literal["boxed", "phrase", "number"]


@dataclass(frozen=True)
class Extraction:
    """An extracted final answer and which rule produced it."""

    text: str
    source: AnswerSource


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
# "the answer is ..." / "final answer: ..."

_ANSWER_PHRASE = re.compile(r"\banswer\**\s*(?:is\b\s*:?|:|=)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_PHRASE_MAX_CHARS = 2000


def _clean_phrase_capture(capture: str) -> str:
    capture = capture.strip().strip("*").strip()
    for opening, closing in _MATH_DELIMITERS:
        if capture.startswith(opening):
            end = capture.find(closing, len(opening))
            if end > 0:
                return capture[len(opening) : end].strip()
    sentence_end = _SENTENCE_END.search(capture)
    if sentence_end:
        capture = capture[: sentence_end.start()]
    return capture.strip().rstrip(".").strip("*$ ").strip()


def phrase_answer(text: str) -> str | None:
    """Answer after the last "the answer is" / "final answer:" / "Answer =" phrase on its line.

    The capture stops at the end of the line or of the sentence; a leading ``$...$`` /
    ``\\(...\\)`` math span is unwrapped; markdown bold markers are removed.
    """
    ends = [m.end() for m in _ANSWER_PHRASE.finditer(text)]
    for end in reversed(ends):
        line_end = text.find("\n", end, end + _PHRASE_MAX_CHARS)
        capture = text[end : line_end if line_end >= 0 else end + _PHRASE_MAX_CHARS]
        cleaned = _clean_phrase_capture(capture)
        if cleaned:
            return cleaned
    return None


# ---------------------------------------------------------------------------------------------
# last number

_DIGITS_WITH_GROUPS = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_LAST_NUMBER = re.compile(
    r"\\[dt]?frac\{\s*(?P<fnum>[-\u2212]?[0-9]+)\s*\}\{\s*(?P<fden>[-\u2212]?[0-9]+)\s*\}"
    rf"|(?P<sign>[-\u2212]?)(?P<num>{_DIGITS_WITH_GROUPS})(?:/(?P<den>[0-9]+)(?![0-9.]))?"
)
_SIGN_BLOCKERS = frozenset("0123456789)]}")


def last_number(text: str) -> str | None:
    """The last number in ``text`` in plain form: ``"-1234.5"``, ``"3/4"``, ``"\\frac{3}{4}"``.

    Thousands separators are removed; a minus sign counts only when it is not a binary minus
    (not preceded by a digit, letter or closing bracket); U+2212 is read as a minus sign.
    """
    last = None
    for last in _LAST_NUMBER.finditer(text):
        pass
    if last is None:
        return None
    if last.group("fnum") is not None:
        numerator = last.group("fnum").replace("\u2212", "-")
        denominator = last.group("fden").replace("\u2212", "-")
        return f"\\frac{{{numerator}}}{{{denominator}}}"
    number = last.group("num").replace(",", "")
    if last.group("den") is not None:
        number = f"{number}/{last.group('den')}"
    if last.group("sign"):
        before = text[last.start() - 1] if last.start() > 0 else " "
        if not (before.isalpha() or before in _SIGN_BLOCKERS):
            number = "-" + number
    return number


def extract_answer_with_source(text: str) -> Extraction | None:
    """Like :func:`extract_answer`, also telling which rule matched."""
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    phrase = phrase_answer(text)
    if phrase is not None:
        return Extraction(phrase, "phrase")
    number = last_number(text)
    if number is not None:
        return Extraction(number, "number")
    return None


def extract_answer(text: str) -> str | None:
    """The final answer in a completion, or ``None`` when there is none (see module docstring)."""
    extraction = extract_answer_with_source(text)
    return extraction.text if extraction is not None else None


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
    tokens = [
        (m.lastgroup, m.group())
        for m in _TOKEN.finditer(text)
        if m.lastgroup != "space"
    ]
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
    text = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", text)
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
