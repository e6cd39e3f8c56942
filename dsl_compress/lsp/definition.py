"""Go to definition: a let name to its let statement, an include's path to the file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from lsprotocol import types

from dsl_compress.language.syntax import Include, Let
from dsl_compress.lsp.completion import in_comment_or_string
from dsl_compress.lsp.documents import uri_of
from dsl_compress.lsp.outline import Outline
from dsl_compress.lsp.positions import split_lines, to_position
from dsl_compress.lsp.words import word_at

_FILE_START = types.Range(types.Position(0, 0), types.Position(0, 0))


# Reads a file's text (an open buffer before disk); None when it cannot be read.
Read = Callable[[Path], "str | None"]


def definition(
    outline: Outline,
    lines: Sequence[str],
    uri: str,
    path: Path | None,
    position: tuple[int, int],
    read: Read,
) -> types.Location | None:
    """Where the word at ``position`` (1-based line, column) is defined: an include's file, or
    a let's name in this file or, as the language sees lets through includes, an included one."""
    line, column = position
    stmt = outline.statement_at(line, column)
    folder = path.parent if path is not None else Path.cwd()
    if isinstance(stmt, Include):
        return types.Location(uri=uri_of((folder / stmt.path).resolve()), range=_FILE_START)
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if in_comment_or_string(text[: column - 1]):
        return None  # a word of a comment or a string names no let
    name = word_at(lines, line, column)
    let = outline.lets().get(name)
    if stmt is not None and stmt is let and not _on_value(let, lines, line, column):
        return None
    if let is not None:
        return types.Location(uri=uri, range=_name_range(let, lines))
    return _included_let(outline, folder, name, read, {path})


def _included_let(
    outline: Outline, folder: Path, name: str | None, read: Read, seen: set
) -> types.Location | None:
    """The let ``name`` in the files ``outline`` includes (depth first, in order), if any."""
    for stmt in outline.statements:
        if not isinstance(stmt, Include) or name is None:
            continue
        target = (folder / stmt.path).resolve()
        text = None if target in seen else read(target)
        if text is None:
            continue
        seen.add(target)
        included = Outline.of(text, str(target))
        let = included.lets().get(name)
        if let is not None:
            return types.Location(uri=uri_of(target), range=_name_range(let, split_lines(text)))
        found = _included_let(included, target.parent, name, read, seen)
        if found is not None:
            return found
    return None


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
