"""The word under the cursor on a line of rules text: a name, a dotted selector, or a code."""

from __future__ import annotations

import re
from typing import Sequence

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE = re.compile(r"\b[A-Z]\d{3}\b")


def word_at(lines: Sequence[str], line: int, column: int, pattern: re.Pattern = _NAME) -> str:
    """The match of ``pattern`` on 1-based ``line`` that holds ``column`` (or ends just
    before it), else ''."""
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    for found in pattern.finditer(text):
        if found.start() < column <= found.end() + 1:
            return found.group()
    return ""


def code_at(lines: Sequence[str], line: int, column: int) -> str:
    """A diagnostic code (E201) under the cursor in a comment, else ''."""
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    hash_at = text.find("#")
    if hash_at < 0 or column <= hash_at:
        return ""
    return word_at(lines, line, column, _CODE)
