"""The Lark LALR parser of grammar/rules.lark: its options, the bracket post-lexer, the grammar cache."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path as FilePath
from typing import Callable, Iterator

import lark
from lark import Lark, Token, Transformer

GRAMMAR_NAME = "rules.lark"
CACHE_DIR_VARIABLE = "DSL_COMPRESS_CACHE_DIR"


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


# Limits on what one token may cost later: every stage walks lists recursively (500 levels
# overflowed Python's stack), and int() refuses literals over 4,300 digits (a longer one
# overflows float() long before). No real rules file comes near either.
MAX_LIST_DEPTH = 32
MAX_NUMBER_LENGTH = 100


class InputLimit(Exception):
    """A token beyond the language's limits; the parser reports it as E104 at the token."""

    def __init__(self, token: Token, message: str, hint: str) -> None:
        super().__init__(message)
        self.token, self.message, self.hint = token, message, hint


class BracketNewlines:
    """Post-lexer: a newline inside [...] does not end a statement, so a list may span lines;
    lists nested too deep and number literals too long stop the parse (InputLimit)."""

    # The contextual lexer must lex a newline even in states where the parser cannot take one.
    always_accept = ("_NEWLINE",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for token in stream:
            kind = token.type
            if kind == "LBRACKET":
                depth += 1
                if depth > MAX_LIST_DEPTH:
                    message = f"lists nested deeper than {MAX_LIST_DEPTH} levels"
                    raise InputLimit(token, message, "write the list flatter")
            elif kind == "NUMBER" and len(token.value) > MAX_NUMBER_LENGTH:
                check_number(token)
            elif kind == "RBRACKET":
                depth = max(0, depth - 1)
            elif kind == "_NEWLINE" and depth:
                continue
            yield token


def check_number(token: Token) -> None:
    """InputLimit at a number literal too long: a NUMBER token as it is lexed, or the value of
    a SETTING token (``key=value``, on one line) as the parser takes it, which is where the
    NUMBER of the setting spelt apart would be lexed."""
    number = setting_parts(token)[1] if token.type == "SETTING" else token
    if number.type != "NUMBER" or len(number.value) <= MAX_NUMBER_LENGTH:
        return
    message = f"a number literal of {len(number.value)} characters (at most {MAX_NUMBER_LENGTH})"
    raise InputLimit(number, message, "write it shorter, with an exponent (1e30)")


def setting_parts(token: Token) -> tuple[Token, Token]:
    """A SETTING token's key and value as the tokens the setting spelt apart would lex to: a
    NAME, and a NUMBER, STRING or NAME (for errors; the builder splits the text itself)."""
    key, _, value = token.value.partition("=")
    first = value[0]
    kind = "STRING" if first == '"' else "NAME" if first.isalpha() or first == "_" else "NUMBER"
    return _part(token, "NAME", key, 0), _part(token, kind, value, len(key) + 1)


def _part(token: Token, kind: str, text: str, at: int) -> Token:
    """``text``, ``at`` characters into one-line ``token``, as a token of its own."""
    start, column = token.start_pos + at, token.column + at
    end_column, end = column + len(text), start + len(text)
    return Token(kind, text, start, token.line, column, token.line, end_column, end)


def build_parser(builder: Transformer, on_comment: Callable[[Token], Token]) -> Lark:
    """A parser that reduces with ``builder`` (Lark's inline transformer) and hands each comment
    (or line of blanks and perhaps a comment) to ``on_comment``; the grammar analysis is read
    from the cache folder when it is there."""
    grammar = grammar_path().read_text(encoding="utf-8")
    options = dict(
        # `selector` alone: how the command reads a selector given as an option (explain --target).
        start=["start", "selector"],
        parser="lalr",
        lexer="contextual",
        strict=True,
        maybe_placeholders=False,
        transformer=builder,
        postlex=BracketNewlines(),
        lexer_callbacks={"COMMENT": on_comment, "BLANK_LINE": on_comment},
    )
    cache = cache_path(grammar)
    if cache is None:
        return Lark(grammar, **options)
    # The cache holds the analysed grammar and lexer only: Lark takes the transformer, the
    # post-lexer and the lexer callbacks afresh on every load, so none of them is pickled.
    # Lark hashes the grammar, these options and its own version into the file's first line,
    # and rebuilds (rewriting the file) when that does not match or the file does not load: a
    # file half written by a concurrent process costs a rebuild, never a wrong parser.
    return Lark(grammar, cache=str(cache), **options)


def cache_path(grammar: str) -> FilePath | None:
    """Where the analysed grammar is cached, or None where no cache folder can be written.

    The folder is the user's (``$DSL_COMPRESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/dsl-compress``,
    else ``~/.cache/dsl-compress``), never the package (it may be installed read-only) nor the
    shared temporary folder that Lark's ``cache=True`` writes to (any user could plant a pickle
    there). The name holds a hash of the grammar, the Lark version and Python's, so a changed
    grammar or an upgrade never meets a stale file, and two environments never take turns
    rewriting one file.
    """
    try:
        folder = _cache_folder()
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    key = f"{grammar}\0{lark.__version__}\0{sys.version_info[:2]}"
    name = f"rules-{hashlib.sha256(key.encode()).hexdigest()[:20]}.lark-cache"
    path = folder / name
    if path.is_file() and os.access(path, os.R_OK):
        return path
    return path if os.access(folder, os.W_OK) else None


def _cache_folder() -> FilePath:
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen:
        return FilePath(chosen)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = FilePath(xdg) if xdg else FilePath.home() / ".cache"
    return base / "dsl-compress"
