"""Turning Lark's parse tree into the frozen syntax tree, with spans shifted to file positions."""

from __future__ import annotations

import re
from typing import Sequence

from lark import Token, Tree

from dsl_compress.diagnostics import Span
from dsl_compress.modes import Mode
from dsl_compress.statement_split import Chunk
from dsl_compress.syntax import (
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
    Statement,
    Value,
)

_INTEGER = re.compile(r"[+-]?\d+$")


class TreeBuilder:
    """Builds syntax nodes from one parse; line/column give where the parsed text starts."""

    def __init__(self, path: str | None, line: int = 1, column: int = 1):
        self.path = path
        self.origin = Chunk("", line, column)

    def rule_file(self, tree: Tree, comments: Sequence[Comment]) -> RuleFile:
        statements = tuple(self.statement(child) for child in tree.children)
        return RuleFile(statements, self.path, tuple(comments))

    def shift(self, token: Token) -> Token:
        """A comment token moved to its file position."""
        line, column = self.origin.absolute(token.line, token.column)
        return Token(token.type, str(token), line=line, column=column)

    def span(self, node: Tree | Token) -> Span:
        meta = node if isinstance(node, Token) else node.meta
        line, column = self.origin.absolute(meta.line, meta.column)
        end_line, end_column = self.origin.absolute(meta.end_line, meta.end_column)
        return Span(self.path, line, column, end_line, end_column)

    def statement(self, tree: Tree) -> Statement:
        return getattr(self, "_" + tree.data)(tree, tree.children)

    def _let_stmt(self, tree: Tree, kids: list) -> Let:
        return Let(str(kids[1]), self.value(kids[3]), self.span(tree))

    def _include_stmt(self, tree: Tree, kids: list) -> Include:
        return Include(unquote(str(kids[1])), self.span(tree))

    def _compress_stmt(self, tree: Tree, kids: list) -> Compress:
        mode = Mode(str(kids[0].children[0]))
        settings, excepts = self._tail(kids[2:])
        return Compress(mode, self.selector(kids[1]), settings, excepts, self.span(tree))

    def _align_stmt(self, tree: Tree, kids: list) -> Align:
        settings, excepts = self._tail(kids[4:])
        return Align(
            self.selector(kids[1]), self.selector(kids[3]), settings, excepts, self.span(tree)
        )

    def _exclude_stmt(self, tree: Tree, kids: list) -> Exclude:
        mode = Mode(str(kids[2].children[1].children[0])) if len(kids) > 2 else None
        return Exclude(self.selector(kids[1]), mode, self.span(tree))

    def _register_stmt(self, tree: Tree, kids: list) -> Register:
        mode = Mode(str(kids[1].children[0]))
        targets = tuple(
            self._register_target(k)
            for k in kids
            if isinstance(k, Tree) and k.data == "register_target"
        )
        return Register(mode, str(kids[2]), targets, self.span(tree))

    def _register_target(self, tree: Tree) -> RegisterTarget:
        name = str(tree.children[0].children[0])
        settings = tuple(self.setting(k) for k in tree.children[1:])
        return RegisterTarget(name, settings, self.span(tree))

    def _tail(self, kids: list) -> tuple[tuple[Setting, ...], tuple[Selector, ...]]:
        settings = tuple(self.setting(k) for k in kids if k.data == "setting")
        excepts: tuple[Selector, ...] = ()
        for kid in kids:
            if kid.data == "except_clause":
                excepts = tuple(self.selector(s) for s in kid.children if isinstance(s, Tree))
        return settings, excepts

    def setting(self, tree: Tree) -> Setting:
        key, _, value = tree.children
        return Setting(str(key), self.value(value), self.span(tree))

    def value(self, node: Tree) -> Value:
        if node.data == "list":
            items = tuple(self.value(k) for k in node.children if isinstance(k, Tree))
            return ListValue(items, self.span(node))
        token = node.children[0]
        if node.data == "number":
            text = str(token)
            number = int(text) if _INTEGER.match(text) else float(text)
            return Literal(number, False, self.span(token))
        if node.data == "string":
            return Literal(unquote(str(token)), False, self.span(token))
        return Literal(str(token), True, self.span(token))

    def selector(self, tree: Tree) -> Selector:
        path = self.path_of(tree.children[0])
        scope = self.path_of(tree.children[1].children[1]) if len(tree.children) > 1 else None
        return Selector(path, scope, self.span(tree))

    def path_of(self, tree: Tree) -> Path:
        if tree.data == "regex_path":
            regex = unquote(str(tree.children[0])[2:], keep_backslashes=True)
            segments = tuple(self.segment(k) for k in tree.children[1:] if isinstance(k, Tree))
            return Path(segments, regex, self.span(tree))
        segments = tuple(self.segment(k) for k in tree.children if isinstance(k, Tree))
        return Path(segments, None, self.span(tree))

    def segment(self, tree: Tree) -> Segment:
        words = tuple(str(t) for t in tree.children if isinstance(t, Token) and t.type == "PATTERN")
        if tree.data == "pattern_segment":
            return Segment(words, False, self.span(tree))
        return Segment(tuple(dict.fromkeys(words)), True, self.span(tree))


def unquote(text: str, keep_backslashes: bool = False) -> str:
    """The content of a "..." literal; a regex keeps its backslashes except before a quote."""
    inner = text[1:-1]
    if keep_backslashes:
        return inner.replace('\\"', '"')
    return re.sub(r"\\(.)", r"\1", inner)
