"""Document symbols: one per statement, named as the formatter prints its head."""

from __future__ import annotations

from typing import Sequence

from lsprotocol import types

from dsl_compress.language.format import render_statement
from dsl_compress.language.syntax import Align, Compress, Exclude, Include, Let, Register
from dsl_compress.language.syntax import Statement
from dsl_compress.lsp.outline import Outline
from dsl_compress.lsp.positions import to_range

KINDS = {
    Let: types.SymbolKind.Variable,
    Include: types.SymbolKind.File,
    Compress: types.SymbolKind.Function,
    Align: types.SymbolKind.Function,
    Exclude: types.SymbolKind.Event,
    Register: types.SymbolKind.Class,
}

# A symbol's name is one line of the editor's outline: long statements are cut.
NAME_WIDTH = 80


def document_symbols(outline: Outline, lines: Sequence[str]) -> list[types.DocumentSymbol]:
    return [_symbol(stmt, lines) for stmt in outline.statements]


def _symbol(stmt: Statement, lines: Sequence[str]) -> types.DocumentSymbol:
    text = render_statement(stmt).split("\n")[0]
    name = text if len(text) <= NAME_WIDTH else text[: NAME_WIDTH - 1] + "…"
    whole = to_range(lines, stmt.span)
    return types.DocumentSymbol(
        name=name,
        kind=KINDS[type(stmt)],
        range=whole,
        selection_range=types.Range(whole.start, whole.start),
        detail=type(stmt).__name__.lower(),
    )
