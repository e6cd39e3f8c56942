"""Model-free lint of a file a piece at a time, so that its syntax tree is never alive whole.

Each statement is checked on its own against the file's context (its lets and register
blocks: resolve/check.RuleContext), which a first pass reads from the statements starting
with ``let`` or ``register``. A file that includes another, or whose pieces hold a let or
register block that first pass did not see, is linted whole (None). What is reported is what
the whole-file lint reports: every syntax error if there is one, else every error of the
checks if there is one, else every finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity
from dsl_compress.language import worker_pool
from dsl_compress.language.parse import parse_chunk, parse_rule_file
from dsl_compress.language.statement_split import Chunk, split_pieces, split_statements
from dsl_compress.language.syntax import Include, Let, Register, Statement
from dsl_compress.resolve.check import RuleContext, check_statements, rule_context

PIECE_STATEMENTS = 4096
# A statement that may set the context, or include a file: its first word.
_CONTEXT_WORD = re.compile(r"[ \t\f]*(?:let|register|include)(?![A-Za-z0-9_])")
_CONTEXT_KINDS = (Let, Register, Include)


@dataclass(frozen=True)
class PieceFindings:
    """One piece linted: its syntax errors, or what checking its statements found."""

    syntax: tuple[Diagnostic, ...] = ()
    found: tuple[Diagnostic, ...] = ()


def lint_in_pieces(text: str, path: str | None, jobs: int = 1) -> list[Diagnostic] | None:
    """What the model-free lint of ``text`` reports, or None where the file must be linted
    whole (see the module); with ``jobs`` > 1, a megabyte or more is linted by that many
    worker processes."""
    context_statements = _context_statements(text, path)
    if context_statements is None:
        return None
    context = rule_context(context_statements, None)
    seen = frozenset(_place(s) for s in context_statements)
    jobs = jobs if len(text) >= worker_pool.PARALLEL_CHARACTERS else 1
    pieces = split_pieces(text, PIECE_STATEMENTS)
    syntax: list[Diagnostic] = []
    found: list[Diagnostic] = list(context.diagnostics)
    for piece in worker_pool.mapped(lint_piece, pieces, jobs, path, context, seen):
        if piece is None:
            return None
        syntax.extend(piece.syntax)
        found.extend(piece.found)
    if syntax:
        return syntax
    errors = [d for d in found if d.severity is Severity.ERROR]
    return errors or found


def lint_piece(
    piece: Chunk, path: str | None, context: RuleContext, seen: frozenset
) -> PieceFindings | None:
    """A piece's syntax errors, or its statements' findings against ``context``; None when it
    holds an include, or a let or register block not in ``seen``."""
    try:
        statements = parse_rule_file(piece.text, path, piece.line).statements
    except CompressionError as exc:
        return PieceFindings(syntax=tuple(exc.diagnostics))
    for statement in statements:
        if isinstance(statement, Include):
            return None
        if isinstance(statement, (Let, Register)) and _place(statement) not in seen:
            return None
    # The statements' file indices only order rules for a model: 0 serves here.
    _, _, found = check_statements(statements, context)
    return PieceFindings(found=tuple(found))


def _context_statements(text: str, path: str | None) -> list[Statement] | None:
    """The let and register statements of the text, each parsed alone; None for an include.
    A chunk that does not parse is left to its piece, which reports it."""
    statements: list[Statement] = []
    for chunk in split_statements(text):
        if not _CONTEXT_WORD.match(chunk.text):
            continue
        for statement in parse_chunk(chunk, path).statements:
            if isinstance(statement, Include):
                return None
            if isinstance(statement, _CONTEXT_KINDS):
                statements.append(statement)
    return statements


def _place(statement: Statement) -> tuple[int, int]:
    return statement.span.line, statement.span.column
