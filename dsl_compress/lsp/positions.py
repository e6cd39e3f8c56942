"""Between our spans (1-based line and column in characters, end exclusive) and LSP positions
(0-based line, character counted in UTF-16 code units, as LSP's default encoding counts)."""

from __future__ import annotations

from typing import Sequence

from lsprotocol import types

from dsl_compress.diagnostics import Span


def utf16_width(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def to_position(lines: Sequence[str], line: int, column: int) -> types.Position:
    """The LSP position of 1-based ``line`` and ``column`` (a character index)."""
    row = max(line - 1, 0)
    text = lines[row] if row < len(lines) else ""
    return types.Position(line=row, character=utf16_width(text[: max(column - 1, 0)]))


def to_range(lines: Sequence[str], span: Span | None) -> types.Range:
    """The LSP range of ``span``; without one, the start of the file."""
    if span is None or span.line <= 0:
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    start = to_position(lines, span.line, span.column)
    end = to_position(lines, span.end_line, span.end_column)
    return types.Range(start, end)


def from_position(lines: Sequence[str], position: types.Position) -> tuple[int, int]:
    """The 1-based line and column (character index) at an LSP position."""
    text = lines[position.line] if position.line < len(lines) else ""
    units = 0
    for index, char in enumerate(text):
        if units >= position.character:
            return position.line + 1, index + 1
        units += utf16_width(char)
    return position.line + 1, len(text) + 1


def contains(span: Span, line: int, column: int) -> bool:
    """Whether 1-based ``line``:``column`` lies in ``span`` (its end counted in, where a cursor
    just past a word still stands on it)."""
    after_start = (line, column) >= (span.line, span.column)
    before_end = (line, column) <= (span.end_line, span.end_column)
    return after_start and before_end


def split_lines(text: str) -> list[str]:
    """The lines of a text as our spans count them (a CR before the newline kept)."""
    return text.split("\n")
