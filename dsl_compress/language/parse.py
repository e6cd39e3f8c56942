"""Parsing .rules text into a RuleFile, with syntax errors as Diagnostics (all of them, not the first)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path as FilePath

from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span
from dsl_compress.language.moved import moved
from dsl_compress.language.lark_parser import InputLimit, build_parser, grammar_path
from dsl_compress.language.statement_split import Chunk, split_statements
from dsl_compress.language.syntax import Comment, RuleFile, Selector, Statement
from dsl_compress.language.syntax_errors import KEYWORDS, syntax_diagnostic
from dsl_compress.language.tree_builder import SpanMaker, SyntaxBuilder, spans_in, spans_in_chunk

__all__ = [
    "KEYWORDS",
    "grammar_path",
    "load_rule_file",
    "parse_by_statement",
    "parse_rule_file",
    "parse_selector",
    "StatementCache",
]


class _Parser:
    """A Lark parser, with the builder it reduces with and the comments it met.

    One per thread (see _parser) because the builder holds the span maker of the parse under way.
    """

    def __init__(self) -> None:
        self.builder = SyntaxBuilder()
        self.comments: list[Token] = []
        self.lark: Lark = build_parser(self.builder, self._collect_comment)

    def parse(
        self, text: str, spans: SpanMaker, start: str = "start"
    ) -> tuple[tuple[Statement, ...] | Selector, list[Token]]:
        """The statements of ``text`` (or its one selector) and the comment tokens the lexer
        skipped."""
        self.builder.span = spans
        self.comments = []
        found = self.lark.parse(text, start=start)
        return (tuple(found) if start == "start" else found), self.comments

    def _collect_comment(self, token: Token) -> Token:
        if "#" in token.value:  # not a blank line
            self.comments.append(token)
        return token


_PER_THREAD = threading.local()


def _parser() -> _Parser:
    """This thread's parser, made on its first parse (not on import: ``--help`` needs none)."""
    parser = getattr(_PER_THREAD, "parser", None)
    if parser is None:
        parser = _PER_THREAD.parser = _Parser()
    return parser


def parse_rule_file(
    text: str, path: str | None = None, first_line: int = 1, first_column: int = 1
) -> RuleFile:
    """Parse a whole file, or a piece of one starting at ``first_line`` and ``first_column``
    (every span and comment then has the file's line and column; a piece starting inside a
    line starts after a ';'); raise one CompressionError with every syntax error."""
    at = Chunk(text, first_line, first_column)
    whole = (first_line, first_column) == (1, 1)  # a piece's tokens need moving; a file's not
    spans = spans_in(path) if whole else spans_in_chunk(path, at)
    try:
        statements, comments = _parser().parse(text, spans)
    except (UnexpectedInput, InputLimit):
        return parse_by_statement(text, path, first_line, first_column)
    return RuleFile(statements, path, _comments(comments, text, at))


def parse_selector(text: str, origin: str) -> Selector:
    """One selector written outside a file (``origin`` says where: ``--target``), as a statement
    reads it; raises CompressionError with the syntax error, located by column in ``origin``."""
    try:
        selector, _ = _parser().parse(text, spans_in(origin), start="selector")
    except UnexpectedInput as exc:
        found = syntax_diagnostic(exc, Chunk(text, 1, 1), origin, "selector")
        message = f"{found.message} at column {found.span.column} of {text!r}"
        raise CompressionError([replace(found, message=message, span=None)]) from None
    return selector


def parse_by_statement(
    text: str, path: str | None = None, first_line: int = 1, first_column: int = 1
) -> RuleFile:
    """The file parsed one statement at a time, so that one syntax error does not hide the next.

    What ``parse`` falls back to on a syntax error; on text without one it gives what
    ``parse`` gives.
    """
    rule_file, errors = parse_partially(
        text, path, first_line=first_line, first_column=first_column
    )
    if errors:
        raise CompressionError(errors)
    return rule_file


def parse_partially(
    text: str,
    path: str | None = None,
    cache: StatementCache | None = None,
    first_line: int = 1,
    first_column: int = 1,
) -> tuple[RuleFile, list[Diagnostic]]:
    """The statements that parse, and the syntax errors of the rest: a half-typed file in an
    editor still has its other statements to outline, hover and complete. With ``cache``,
    each statement whose text and place are unchanged since the cache's last parse is not
    parsed again. ``first_line`` and ``first_column`` as for :func:`parse_rule_file`."""
    statements, comments, errors = [], [], []
    parsed: dict[tuple, dict[int, ChunkParse]] = {}
    at = Chunk(text, first_line, first_column)
    for chunk in split_statements(text):
        if (first_line, first_column) != (1, 1):
            chunk = Chunk(chunk.text, *at.absolute(chunk.line, chunk.column))
        key = (path, chunk.text, chunk.column)  # not its line: a statement moved is re-used
        found = _known(chunk, key, parsed, cache) or parse_chunk(chunk, path)
        parsed.setdefault(key, {})[chunk.line] = found
        statements.extend(found.statements)
        comments.extend(found.comments)
        errors.extend(found.errors)
    if cache is not None:
        cache.keep(parsed)
    return RuleFile(tuple(statements), path, tuple(comments)), errors


def _known(
    chunk: Chunk, key: tuple, parsed: dict, cache: StatementCache | None
) -> ChunkParse | None:
    """A parse of the same text at this line (the file's last parse), else at another line
    (this parse's or the last, moved here), else None."""
    earlier = cache.get(key) if cache is not None else None
    if earlier and chunk.line in earlier:
        return earlier[chunk.line]
    for known in (parsed.get(key), earlier):
        if known:
            return next(iter(known.values())).at_line(chunk.line)
    return None


@dataclass(frozen=True)
class ChunkParse:
    """One statement chunk parsed: its statements, its comments placed in the file, and its
    syntax error if it has one."""

    line: int
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = ()
    errors: tuple[Diagnostic, ...] = ()

    def at_line(self, line: int) -> ChunkParse:
        """The same parse for the chunk starting at ``line`` (moved there by an edit above)."""
        lines = line - self.line
        if lines == 0:
            return self
        comments = tuple(Comment(c.text, c.line + lines, c.trailing) for c in self.comments)
        moved_ = moved((self.statements, self.errors), lines)
        return ChunkParse(line, moved_[0], comments, moved_[1])


def parse_chunk(chunk: Chunk, path: str | None) -> ChunkParse:
    """One statement chunk parsed where it stands in the file."""
    try:
        found, chunk_comments = _parser().parse(chunk.text, spans_in_chunk(path, chunk))
    except UnexpectedInput as exc:
        return ChunkParse(chunk.line, (), (), (syntax_diagnostic(exc, chunk, path),))
    except InputLimit as exc:
        return ChunkParse(chunk.line, (), (), (_limit_diagnostic(exc, chunk, path),))
    return ChunkParse(chunk.line, tuple(found), _comments(chunk_comments, chunk.text, chunk))


class StatementCache:
    """The statements of one document's last parse, by their text and column, for an editor: a
    keystroke parses its own statement again, not the file, and statements a line break moved
    are moved, not parsed (:func:`parse_partially`)."""

    def __init__(self) -> None:
        self._parsed: dict[tuple, dict[int, ChunkParse]] = {}

    def get(self, key: tuple) -> dict[int, ChunkParse] | None:
        """The last parse of a statement text, by the line it stood at (a text may repeat)."""
        return self._parsed.get(key)

    def keep(self, parsed: dict[tuple, dict[int, ChunkParse]]) -> None:
        """The last parse's statements replace the ones kept before (no unbounded growth)."""
        self._parsed = parsed

    def parse(self, text: str, path: str | None = None) -> RuleFile:
        """What :func:`parse_rule_file` gives ``text``, reusing unchanged statements; raises
        CompressionError with every syntax error."""
        rule_file, errors = parse_partially(text, path, self)
        if errors:
            raise CompressionError(errors)
        return rule_file


def _limit_diagnostic(exc: InputLimit, chunk: Chunk, path: str | None) -> Diagnostic:
    """E104 at the token that went beyond a limit (its first character: it may be huge)."""
    line, column = chunk.absolute(exc.token.line, exc.token.column)
    span = Span(path, line, column, line, column + 1)
    return Diagnostic("E104", Severity.ERROR, exc.message, span=span, hint=exc.hint)


def _comments(tokens: list[Token], text: str, at: Chunk) -> tuple[Comment, ...]:
    """The comment tokens the lexer met in ``text`` (a file, or the piece or statement of one
    starting at ``at``) as the file's comments, each trailing when code stands before it on
    its line."""
    out = []
    for token in tokens:
        start = token.start_pos
        if token.line == 1 and at.column > 1:  # the text's first line: a ';' stands before it
            trailing = True
        else:  # the lexer counts lines at "\n" alone (a "\r" ends the line before)
            trailing = bool(text[text.rfind("\n", 0, start) + 1 : start].strip())
        comment = token.value.strip()  # a blank line's token holds blanks and a line break
        out.append(Comment(comment, at.line + token.line - 1, trailing))
    return tuple(out)


def load_rule_file(path: str | FilePath) -> RuleFile:
    """Parse a .rules file from disk."""
    file = FilePath(path)
    return parse_rule_file(file.read_text(encoding="utf-8"), str(path))
