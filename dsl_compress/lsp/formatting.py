"""Formatting: the whole document replaced by what `fmt` prints; no edit for a file that
does not parse (fmt refuses it too)."""

from __future__ import annotations

from lsprotocol import types

from dsl_compress.diagnostics import CompressionError
from dsl_compress.language.format import format_rules
from dsl_compress.lsp.positions import split_lines, utf16_width


def format_edits(text: str, path: str | None) -> list[types.TextEdit]:
    try:
        formatted = format_rules(text, path)
    except CompressionError:
        return []
    if formatted == text:
        return []
    lines = split_lines(text)
    end = types.Position(line=len(lines) - 1, character=utf16_width(lines[-1]))
    return [types.TextEdit(range=types.Range(types.Position(0, 0), end), new_text=formatted)]
