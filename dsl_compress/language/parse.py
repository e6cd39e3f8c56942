"""Parsing .rules text into a RuleFile, with syntax errors as Diagnostics (all of them, not the first)."""

from __future__ import annotations

import functools
import threading
from pathlib import Path as FilePath
from typing import Iterator

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span, did_you_mean
from dsl_compress.language.lalr_driver import drive
from dsl_compress.language.lalr_tables import BracketNewlines, ParseTables, build_tables
from dsl_compress.language.statement_split import Chunk, split_statements
from dsl_compress.language.syntax import Comment, RuleFile
from dsl_compress.language.tree_builder import TreeBuilder

GRAMMAR_NAME = "rules.lark"

# How terminals are named in error messages: words a user recognises, never __ANON_0.
TERMINAL_WORDS = {
    "NAME": "a name",
    "PATTERN": "a module name, type or pattern",
    "NUMBER": "a number",
    "STRING": 'a string ("...")',
    "REGEX": 'a regex (re"...")',
    "EQUALS": "'='",
    "DOT": "'.'",
    "COMMA": "','",
    "_SEMICOLON": "';'",
    "_NEWLINE": "a new line",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LBRACKET": "'['",
    "RBRACKET": "']'",
    "$END": "the end of the file",
}
STATEMENT_KEYWORDS = ("let", "include", "prune", "quantize", "distill", "align", "exclude")
STATEMENT_KEYWORDS += ("register",)
KEYWORDS = STATEMENT_KEYWORDS + ("with", "from", "except", "in")


def grammar_path() -> FilePath:
    """The grammar inside the installed package, or the top-level grammar/ of a source tree."""
    package = FilePath(__file__).resolve().parent.parent
    for candidate in (
        package / "grammar" / GRAMMAR_NAME,
        package.parent / "grammar" / GRAMMAR_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the {GRAMMAR_NAME} grammar is missing from {package}")


BRACKETS = BracketNewlines("LBRACKET", "RBRACKET", "_NEWLINE")


class _BracketNewlines:
    """Post-lexer: newlines inside [...] do not end a statement."""

    always_accept = (BRACKETS.newline,)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for token in stream:
            if token.type == BRACKETS.open:
                depth += 1
            elif token.type == BRACKETS.close:
                depth = max(0, depth - 1)
            elif token.type == BRACKETS.newline and depth:
                continue
            yield token


# Comments seen by the lexer during the current parse (per thread).
_COLLECTED = threading.local()


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        strict=True,
        postlex=_BracketNewlines(),
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _collect_comment},
    )


@functools.lru_cache(maxsize=1)
def _tables() -> ParseTables:
    """Lark's tables for the fast path, made once per process (in memory only)."""
    return build_tables(_lark(), BRACKETS)


def parse(text: str, path: str | None = None) -> RuleFile:
    """Parse a whole file; raise one CompressionError with every syntax error found."""
    try:
        return fast_parse(text, path)
    except Exception:  # any failure, even a bug there: Lark's parse is the reference
        pass
    try:
        return lark_parse(text, path)
    except UnexpectedInput:
        pass
    statements, comments, errors = [], [], []
    for chunk in split_statements(text):
        try:
            tree, found = _parse_tree(chunk.text)
        except UnexpectedInput as exc:
            errors.append(syntax_diagnostic(exc, chunk, path))
            continue
        builder = TreeBuilder(path, chunk.line, chunk.column)
        statements.extend(builder.rule_file(tree, []).statements)
        comments.extend(builder.shift(c) for c in found)
    if errors:
        raise CompressionError(errors)
    return RuleFile(tuple(statements), path, _comments(_positions(comments), text))


def fast_parse(text: str, path: str | None = None) -> RuleFile:
    """The file as Lark's parse would give it, from Lark's tables driven in one loop.

    Raises FastPathError on any text Lark's parser rejects (and UnsupportedGrammar if the
    grammar uses what the driver does not reproduce); ``parse`` then asks Lark.
    """
    tables = _tables()
    statements, comments = drive(text, tables, path)
    return RuleFile(statements, path, _comments(comments, text))


def lark_parse(text: str, path: str | None = None) -> RuleFile:
    """The file from Lark's own parse tree; raises Lark's UnexpectedInput on a syntax error."""
    tree, comments = _parse_tree(text)
    return TreeBuilder(path).rule_file(tree, _comments(_positions(comments), text))


def _parse_tree(text: str) -> tuple[Tree, list[Token]]:
    """The Lark tree of ``text`` and the comment tokens the lexer skipped."""
    _COLLECTED.comments = []
    tree = _lark().parse(text)
    return tree, _COLLECTED.comments


def _collect_comment(token: Token) -> Token:
    _COLLECTED.comments.append(token)
    return token


def _positions(tokens: list[Token]) -> list[tuple[str, int, int]]:
    return [(str(token), token.line, token.column) for token in tokens]


def _comments(found: list[tuple[str, int, int]], text: str) -> tuple[Comment, ...]:
    """Comments from (text, line, column) triples."""
    lines = text.split("\n")  # as the lexer counts lines; splitlines() also splits at \f etc.
    out = []
    for comment, line, column in found:
        before = lines[line - 1][: column - 1] if line <= len(lines) else ""
        out.append(Comment(comment.rstrip(), line, bool(before.strip())))
    return tuple(out)


def syntax_diagnostic(exc: UnexpectedInput, chunk: Chunk, path: str | None) -> Diagnostic:
    """A syntax error in words: what was found, what was expected, where."""
    line, column = chunk.absolute(*_position(exc, chunk.text))
    expected = _expected(exc)
    hint = f"expected {_listed(expected)}" if expected else None
    if isinstance(exc, UnexpectedCharacters):
        code, message, width, hint = _bad_character(exc, chunk.text, hint)
    elif getattr(exc, "token", None) is None or exc.token.type == "$END":
        code, message, width = "E103", "the statement ends too early", 1
    else:
        token = exc.token
        code, message, width = "E101", f"unexpected {_describe(token)}", max(1, len(str(token)))
        hint = _keyword_hint(token, expected) or hint
    span = Span(path, line, column, line, column + width)
    return Diagnostic(code, Severity.ERROR, message, span=span, subject=path, hint=hint)


def _bad_character(exc: UnexpectedCharacters, text: str, hint: str | None):
    pos = exc.pos_in_stream
    char = text[pos] if pos < len(text) else "?"
    if char == '"':
        end = text.find("\n", pos)
        width = (len(text) if end < 0 else end) - pos
        return "E102", "unterminated string", width, "close it with '\"' on the same line"
    return "E102", f"unexpected character {char!r}", 1, hint


def _keyword_hint(token: Token, expected: set[str]) -> str | None:
    """A misspelt statement keyword ('quantise') gets a did-you-mean, not a list of tokens."""
    starts = {name.lower() for name in expected} & set(STATEMENT_KEYWORDS)
    if token.type in ("NAME", "PATTERN") and starts:
        return did_you_mean(str(token), sorted(starts))
    return None


def _position(exc: UnexpectedInput, text: str) -> tuple[int, int]:
    """Where to point: the offending token, or just past the last character at the end."""
    if exc.line > 0 and getattr(getattr(exc, "token", None), "type", None) != "$END":
        return exc.line, exc.column
    body = text.rstrip()
    line = body.count("\n") + 1
    return line, len(body) - (body.rfind("\n") + 1) + 1


def _describe(token: Token) -> str:
    if token.type == "_NEWLINE":
        return "end of line"
    if token.type in ("NAME", "PATTERN") and str(token) not in KEYWORDS:
        return f"'{token}'"
    return f"'{token}'" if token.type != "$END" else "end of file"


def _expected(exc: UnexpectedInput) -> set[str]:
    """Terminals the parser accepts at the error (exact, from the interactive parser)."""
    parser = getattr(exc, "interactive_parser", None)
    if parser is not None:
        return set(parser.accepts())
    return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


def _listed(names: set[str]) -> str:
    words = sorted({_word(name) for name in names})
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1] if words else ""


def _word(terminal: str) -> str:
    if terminal in TERMINAL_WORDS:
        return TERMINAL_WORDS[terminal]
    if terminal.lower() in KEYWORDS:
        return f"'{terminal.lower()}'"
    return terminal.lower()


def load(path: str | FilePath) -> RuleFile:
    """Parse a .rules file from disk."""
    file = FilePath(path)
    return parse(file.read_text(encoding="utf-8"), str(path))
