"""Splitting .rules text into statement chunks, so one syntax error does not hide the next."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

_DEPTH = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass(frozen=True)
class Chunk:
    """A statement's text and where it starts in the file (1-based line and column; ``offset``,
    its first character's index, where the splitter made it)."""

    text: str
    line: int
    column: int
    offset: int = 0

    def absolute(self, line: int, column: int) -> tuple[int, int]:
        """A position inside the chunk as a position in the file."""
        return self.line + line - 1, column + (self.column - 1 if line == 1 else 0)


# The characters the splitter acts on; everything between them is skipped in one search.
_SPECIAL = re.compile(r'["#\\\n;\[\]{}]')


def split_statements(text: str) -> Iterator[Chunk]:
    """Chunks ending at ';' or a newline outside brackets, braces, strings and comments."""
    for start, end, line, column in statement_bounds(text):
        yield Chunk(text[start:end].removesuffix("\r"), line, column, start)


# Where a chunk's text holds more than blanks: its first character that is not one.
_NOT_BLANK = re.compile(r"\S")


def statement_bounds(text: str) -> Iterator[tuple[int, int, int, int]]:
    """Where each chunk of :func:`split_statements` is, without its text: its start and end
    offsets, its line and its column."""
    start, depth = 0, 0
    line, line_start = 1, 0
    start_line, start_column = 1, 1
    found = _SPECIAL.search(text)
    while found is not None:
        i, char = found.start(), found.group()
        if char == '"':
            found = _SPECIAL.search(text, string_end(text, i))
            continue
        if char == "#":
            found = _SPECIAL.search(text, _line_end(text, i))
            continue
        if char == "\\":  # a line continuation when a line break follows
            skip = _line_break_length(text, i + 1)
            if skip:
                line, line_start = line + 1, i + 1 + skip
            found = _SPECIAL.search(text, i + 1 + skip)
            continue
        depth = max(0, depth + _DEPTH.get(char, 0))
        if char == "\n":
            line, line_start = line + 1, i + 1
        if char in ";\n" and depth == 0:
            if _NOT_BLANK.search(text, start, i):
                yield start, i, start_line, start_column
            start = i + 1
            start_line, start_column = line, start - line_start + 1
        found = _SPECIAL.search(text, i + 1)
    if _NOT_BLANK.search(text, start):
        yield start, len(text), start_line, start_column


def _line_break_length(text: str, i: int) -> int:
    """2 for a CRLF at ``i``, 1 for a LF, else 0."""
    if text.startswith("\r\n", i):
        return 2
    return 1 if text.startswith("\n", i) else 0


def string_end(text: str, i: int) -> int:
    """Past the string opening at ``i``: its closing quote, or the line's end for one left
    open (a string never crosses a line, an escaped line break included, as the lexer reads
    it)."""
    i += 1
    while i < len(text) and text[i] not in '"\n':
        escaped = text[i] == "\\" and i + 1 < len(text) and text[i + 1] != "\n"
        i += 2 if escaped else 1
    return i + 1 if i < len(text) and text[i] == '"' else i


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def split_pieces(text: str, statements: int) -> Iterator[Chunk]:
    """The text in pieces of about ``statements`` statement chunks each, so that each piece
    parses and formats on its own: a piece starts where a statement starts outside any
    other, at the start of a line or after a ';' (a file of one long line is cut too), but
    never at a comment after a ';' (it belongs to the code before it)."""
    starts = ((start, line, column) for start, _, line, column in statement_bounds(text))
    return _pieces(text, starts, statements)


def pieces_of(text: str, chunks: Iterable[Chunk], statements: int) -> Iterator[Chunk]:
    """:func:`split_pieces` from the text's chunks (a caller may look at each on the way)."""
    starts = ((chunk.offset, chunk.line, chunk.column) for chunk in chunks)
    return _pieces(text, starts, statements)


# Blanks before a chunk's first word, on its line.
_LINE_BLANKS = re.compile(r"[ \t\f]*")


def _pieces(text: str, starts: Iterable[tuple[int, int, int]], statements: int) -> Iterator[Chunk]:
    """The pieces, from where each statement chunk starts: (offset, line, column)."""
    start, line, column, count = 0, 1, 1, 0
    for offset, chunk_line, chunk_column in starts:
        if count >= statements and _starts_a_piece(text, offset, chunk_column):
            yield Chunk(text[start:offset], line, column, start)
            start, line, column, count = offset, chunk_line, chunk_column, 0
        count += 1
    if start < len(text) or start == 0:
        yield Chunk(text[start:], line, column, start)


def _starts_a_piece(text: str, offset: int, column: int) -> bool:
    """A chunk may start a piece unless it is a comment after a ';' on its line."""
    return column == 1 or not text.startswith("#", _LINE_BLANKS.match(text, offset).end())
