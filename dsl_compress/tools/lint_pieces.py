"""Model-free lint of a file a piece at a time, so that its syntax tree is never alive whole.

Each statement is checked on its own against the file's context (its lets and register
blocks: resolve/check.RuleContext), which a first pass reads from the statements starting
with ``let`` or ``register``. A file that includes another, or whose pieces hold a let or
register block that first pass did not see, is linted whole (None). What is reported is what
the whole-file lint reports: every syntax error if there is one, else every error of the
checks if there is one, else every finding.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity
from dsl_compress.language import worker_pool
from dsl_compress.language.parse import parse_chunk, parse_rule_file
from dsl_compress.language.statement_split import Chunk, pieces_of, split_statements
from dsl_compress.language.syntax import Include, Let, Register, Statement
from dsl_compress.resolve.check import RuleContext, check_statements, rule_context

PIECE_STATEMENTS = 4096
# A statement that may set the context, or include a file: its first word.
_CONTEXT_WORD = re.compile(r"[ \t\f]*(?:let|register|include)(?![A-Za-z0-9_])")
_CONTEXT_KINDS = (Let, Register)


@dataclass(frozen=True)
class PieceFindings:
    """One piece linted: its syntax errors, or what checking its statements found."""

    syntax: tuple[Diagnostic, ...] = ()
    found: tuple[Diagnostic, ...] = ()


def lint_in_pieces(text: str, path: str | None, jobs: int = 1) -> list[Diagnostic] | None:
    """What the model-free lint of ``text`` reports, or None where the file must be linted
    whole (see the module); with ``jobs`` > 1, a megabyte or more is linted by that many
    worker processes."""
    context_chunks: list[Chunk] = []
    chunks = _noting_context(split_statements(text), context_chunks)
    pieces = list(pieces_of(text, chunks, PIECE_STATEMENTS))  # one pass over the text
    context_statements = _context_statements(context_chunks, path)
    if context_statements is None:
        return None
    context = rule_context(context_statements, None)
    seen = frozenset(_place(s) for s in context_statements)
    jobs = worker_pool.jobs_for(text, jobs)
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
        statements = parse_rule_file(piece.text, path, piece.line, piece.column).statements
    except CompressionError as exc:
        return PieceFindings(syntax=tuple(exc.diagnostics))
    for statement in statements:
        if isinstance(statement, Include):
            return None
        if isinstance(statement, _CONTEXT_KINDS) and _place(statement) not in seen:
            return None
    # The statements' file indices only order rules for a model: 0 serves here.
    _, _, found = check_statements(statements, context)
    return PieceFindings(found=_sharing_texts(found))


def _sharing_texts(found: list[Diagnostic]) -> tuple[Diagnostic, ...]:
    """The diagnostics with equal messages and hints as one string each, so that a worker's
    result pickles each once: 100,000 lines of one mistake held 100,000 copies of its hint."""
    texts: dict[str, str] = {}
    out = []
    for diag in found:
        message = texts.setdefault(diag.message, diag.message)
        hint = texts.setdefault(diag.hint, diag.hint) if diag.hint else diag.hint
        if message is not diag.message or hint is not diag.hint:
            diag = dataclasses.replace(diag, message=message, hint=hint)
        out.append(diag)
    return tuple(out)


def _noting_context(chunks: Iterable[Chunk], context: list[Chunk]) -> Iterator[Chunk]:
    """The chunks, each that starts with let, register or include also noted in ``context``."""
    for chunk in chunks:
        if _CONTEXT_WORD.match(chunk.text):
            context.append(chunk)
        yield chunk


def _context_statements(chunks: list[Chunk], path: str | None) -> list[Statement] | None:
    """The let and register statements of the chunks, each parsed alone; None for an include.
    A chunk that does not parse is left to its piece, which reports it."""
    statements: list[Statement] = []
    for chunk in chunks:
        for statement in parse_chunk(chunk, path).statements:
            if isinstance(statement, Include):
                return None
            if isinstance(statement, _CONTEXT_KINDS):
                statements.append(statement)
    return statements


def _place(statement: Statement) -> tuple[int, int]:
    return statement.span.line, statement.span.column
