"""Backslash escapes in command-line strings (`--stop '\\n'`), decoded without touching other characters."""

from __future__ import annotations

import re

from reasonlens.errors import UserError

_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0", "'": "'", '"': '"'}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.?)", re.DOTALL)


def parse_escapes(text: str, option: str) -> str:
    """`text` with \\n, \\t, \\r, \\\\, \\0, \\xHH, \\uHHHH and \\UHHHHHHHH decoded; every other character, UTF-8
    ones included, kept as typed (unlike Python's `unicode_escape`, which reads UTF-8 bytes as Latin-1).
    An unknown or incomplete escape is a UserError naming `option`."""

    def decode(match: re.Match) -> str:
        body = match.group(1)
        if body in _SIMPLE:
            return _SIMPLE[body]
        if body[:1] in ("x", "u", "U") and len(body) > 1:
            code = int(body[1:], 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise UserError(f"{option} {text!r}: escape \\{body} is not a Unicode character")
            return chr(code)
        shown = f"\\{body}" if body else "a trailing \\"
        raise UserError(f"{option} {text!r}: unknown or incomplete escape {shown} (use \\n, \\t, \\\\, \\xHH, \\uHHHH)")

    return _ESCAPE.sub(decode, text)
