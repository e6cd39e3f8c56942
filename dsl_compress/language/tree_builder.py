"""Syntax nodes from grammar rules: one action per rule, run by the LALR driver or over a Lark tree."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from lark import Token, Tree

from dsl_compress.diagnostics import Span
from dsl_compress.vocab import Mode
from dsl_compress.language.statement_split import Chunk
from dsl_compress.language.syntax import (
    Align,
    Comment,
    Compress,
    Exclude,
    Include,
    Let,
    ListValue,
    Literal,
    Path,
    Register,
    RegisterTarget,
    RuleFile,
    Segment,
    Selector,
    Setting,
)

_INTEGER = re.compile(r"[+-]?\d+$")
_MODES = {mode.value: mode for mode in Mode}

# An action gets the children Lark's tree would hold (tokens as str, sub-rules already
# built; '_' rules spliced in, '_' terminals left out) and, if spanned, the node's span.
SpannedAction = Callable[[list, Span], Any]
PlainAction = Callable[[list], Any]


def _let(kids: list, span: Span) -> Let:
    return Let(kids[1], kids[3], span)


def _include(kids: list, span: Span) -> Include:
    return Include(unquote(kids[1]), span)


def _compress(kids: list, span: Span) -> Compress:
    settings, excepts = _tail(kids[2:])
    return Compress(kids[0], kids[1], settings, excepts, span)


def _align(kids: list, span: Span) -> Align:
    settings, excepts = _tail(kids[4:])
    return Align(kids[1], kids[3], settings, excepts, span)


def _tail(kids: list) -> tuple[tuple, tuple]:
    """Settings, then the except clause's selectors (a tuple) if there is one."""
    if kids and type(kids[-1]) is tuple:
        return tuple(kids[:-1]), kids[-1]
    return tuple(kids), ()


def _exclude(kids: list, span: Span) -> Exclude:
    return Exclude(kids[1], kids[2] if len(kids) > 2 else None, span)


def _register(kids: list, span: Span) -> Register:
    return Register(kids[1], kids[2], tuple(kids[4:-1]), span)


def _register_target(kids: list, span: Span) -> RegisterTarget:
    return RegisterTarget(kids[0], tuple(kids[1:]), span)


def _selector(kids: list, span: Span) -> Selector:
    return Selector(kids[0], kids[1] if len(kids) > 1 else None, span)


def _regex_path(kids: list, span: Span) -> Path:
    return Path(tuple(kids[2::2]), unquote(kids[0][2:], keep_backslashes=True), span)


def _glob_path(kids: list, span: Span) -> Path:
    return Path(tuple(kids[::2]), None, span)


def _pattern_segment(kids: list, span: Span) -> Segment:
    return Segment((kids[0],), False, span)


def _set_segment(kids: list, span: Span) -> Segment:
    return Segment(tuple(dict.fromkeys(kids[1:-1:2])), True, span)


def _setting(kids: list, span: Span) -> Setting:
    return Setting(kids[0], kids[2], span)


def _number(kids: list, span: Span) -> Literal:
    text = kids[0]
    return Literal(int(text) if _INTEGER.match(text) else float(text), False, span)


def _string(kids: list, span: Span) -> Literal:
    return Literal(unquote(kids[0]), False, span)


def _name(kids: list, span: Span) -> Literal:
    return Literal(kids[0], True, span)


def _list(kids: list, span: Span) -> ListValue:
    return ListValue(tuple(kids[1:-1:2]), span)


SPANNED: dict[str, SpannedAction] = {
    "let_stmt": _let,
    "include_stmt": _include,
    "compress_stmt": _compress,
    "align_stmt": _align,
    "exclude_stmt": _exclude,
    "register_stmt": _register,
    "register_target": _register_target,
    "selector": _selector,
    "regex_path": _regex_path,
    "glob_path": _glob_path,
    "pattern_segment": _pattern_segment,
    "set_segment": _set_segment,
    "setting": _setting,
    "number": _number,
    "string": _string,
    "name": _name,
    "list": _list,
}

PLAIN: dict[str, PlainAction] = {
    "start": tuple,
    "compress_kind": lambda kids: _MODES[kids[0]],
    "register_kind": lambda kids: _MODES[kids[0]],
    "from_kind": lambda kids: _MODES[kids[0]],
    "from_clause": lambda kids: kids[1],
    "except_clause": lambda kids: tuple(kids[1::2]),
    "target_word": lambda kids: kids[0],
    "scope": lambda kids: kids[1],
}


class TreeBuilder:
    """Builds syntax nodes from a Lark tree; line/column give where the parsed text starts."""

    def __init__(self, path: str | None, line: int = 1, column: int = 1):
        self.path = path
        self.origin = Chunk("", line, column)

    def rule_file(self, tree: Tree, comments: Sequence[Comment]) -> RuleFile:
        return RuleFile(self.build(tree), self.path, tuple(comments))

    def shift(self, token: Token) -> Token:
        """A comment token moved to its file position."""
        line, column = self.origin.absolute(token.line, token.column)
        return Token(token.type, str(token), line=line, column=column)

    def span(self, tree: Tree) -> Span:
        meta = tree.meta
        line, column = self.origin.absolute(meta.line, meta.column)
        end_line, end_column = self.origin.absolute(meta.end_line, meta.end_column)
        return Span(self.path, line, column, end_line, end_column)

    def build(self, tree: Tree) -> Any:
        kids = [self.build(k) if isinstance(k, Tree) else str(k) for k in tree.children]
        plain = PLAIN.get(tree.data)
        return plain(kids) if plain else SPANNED[tree.data](kids, self.span(tree))


def unquote(text: str, keep_backslashes: bool = False) -> str:
    """The content of a "..." literal; a regex keeps its backslashes except before a quote."""
    inner = text[1:-1]
    if keep_backslashes:
        return inner.replace('\\"', '"')
    return re.sub(r"\\(.)", r"\1", inner)
