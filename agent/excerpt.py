"""A bounded, printable excerpt of any value, for error messages.

An error message about a rejected value must not cost more than the value is worth: a
billion-laughs alias tree has a ``repr`` of gigabytes, and ``repr`` of an integer with
more than 4300 digits raises instead of printing. :func:`excerpt` never walks into
containers and never converts a huge integer to text.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["clip", "excerpt", "printable"]

#: How many characters of a string (or an expression) a message shows.
LIMIT = 60


def clip(text: str, limit: int = LIMIT) -> str:
    """``text`` cut to ``limit`` characters, with how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def excerpt(value: Any, limit: int = LIMIT) -> str:
    """A short description of ``value``: quoted strings, numbers, or what kind it is."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 64:
            digits = int(value.bit_length() * math.log10(2)) + 1
            return f"an integer of about {digits} digits"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(clip(value, limit))
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item(s)" if value else "an empty list"
    return type(value).__name__


def printable(text: str) -> str:
    """``text`` with control characters and line separators escaped (``\\x1b``, ``\\u2028``).

    A message may quote a key or value from a hostile file: raw, an escape sequence would
    drive the user's terminal, and NEL or U+2028 would split one error into several lines.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
        for ch in text
    )
