"""Go to definition: a let name to its let statement, an include's path to the file."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lsprotocol import types

from dsl_compress.language.syntax import Include, Let
from dsl_compress.lsp.documents import uri_of
from dsl_compress.lsp.outline import Outline
from dsl_compress.lsp.positions import to_position
from dsl_compress.lsp.words import word_at

_FILE_START = types.Range(types.Position(0, 0), types.Position(0, 0))


def definition(
    outline: Outline, lines: Sequence[str], uri: str, path: Path | None, line: int, column: int
) -> types.Location | None:
    stmt = outline.statement_at(line, column)
    if isinstance(stmt, Include):
        folder = path.parent if path is not None else Path.cwd()
        return types.Location(uri=uri_of((folder / stmt.path).resolve()), range=_FILE_START)
    let = outline.lets().get(word_at(lines, line, column))
    if let is None or stmt is let and not _on_value(let, lines, line, column):
        return None
    return types.Location(uri=uri, range=_name_range(let, lines))


def _on_value(let: Let, lines: Sequence[str], line: int, column: int) -> bool:
    """Whether the cursor is on the let's value (`let b = a`: a is defined elsewhere)."""
    value = let.value.span
    return (line, column) >= (value.line, value.column)


def _name_range(let: Let, lines: Sequence[str]) -> types.Range:
    """The range of the let's name: the first occurrence after the `let` keyword."""
    text = lines[let.span.line - 1] if let.span.line <= len(lines) else ""
    start = text.find(let.name, let.span.column - 1 + len("let"))
    column = start + 1 if start >= 0 else let.span.column
    begin = to_position(lines, let.span.line, column)
    end = to_position(lines, let.span.line, column + len(let.name))
    return types.Range(begin, end)
