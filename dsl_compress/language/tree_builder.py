"""Syntax nodes from grammar rules: Lark's inline transformer, one method per rule, spans from tokens.

Lark calls a method on each reduction with the rule's children: tokens (named terminals only;
'_' terminals are left out and '_' rules spliced in) and the nodes the sub-rules returned; a
method named after a terminal (SETTING), on each such token the parser takes. A
node's span runs from its first token to its last, as Lark's ``propagate_positions`` would
set it; Token and Span spell those positions alike (line, column, end_line, end_column).
"""

from __future__ import annotations

import re
from sys import intern
from typing import Callable, Union

from lark import Token, Transformer

from dsl_compress.diagnostics import Span
from dsl_compress.language.lark_parser import MAX_NUMBER_LENGTH, check_number
from dsl_compress.language.statement_split import Chunk
from dsl_compress.language.syntax import (
    Align,
    Compress,
    Exclude,
    Include,
    Let,
    ListValue,
    Literal,
    Path,
    Register,
    RegisterTarget,
    Segment,
    Selector,
    Setting,
)
from dsl_compress.vocab import Mode

_INTEGER = re.compile(r"[+-]?\d+$")
_MODES = {mode.value: mode for mode in Mode}

Position = Union[Token, Span]  # both hold line, column, end_line and end_column
SpanMaker = Callable[[Position, Position], Span]


def spans_in(path: str | None) -> SpanMaker:
    """Spans from first to last position, in a file parsed whole."""

    def span(first: Position, last: Position) -> Span:
        return Span(path, first.line, first.column, last.end_line, last.end_column)

    return span


def spans_in_chunk(path: str | None, chunk: Chunk) -> SpanMaker:
    """Spans in a file of which only ``chunk`` is parsed: a token's position is in the chunk's
    text and is moved to the file's; a span of a node built before is in the file already."""
    if chunk.column == 1:
        return _spans_lines_below(path, chunk.line - 1)
    absolute = chunk.absolute

    def span(first: Position, last: Position) -> Span:
        line, column = first.line, first.column
        if isinstance(first, Token):
            line, column = absolute(line, column)
        end_line, end_column = last.end_line, last.end_column
        if isinstance(last, Token):
            end_line, end_column = absolute(end_line, end_column)
        return Span(path, line, column, end_line, end_column)

    return span


def _spans_lines_below(path: str | None, lines: int) -> SpanMaker:
    """Spans in a chunk that starts a line (a file's piece, as a rule): a token moves down
    ``lines`` lines and keeps its columns."""

    def span(first: Position, last: Position) -> Span:
        line = first.line + lines if type(first) is Token else first.line
        end_line = last.end_line + lines if type(last) is Token else last.end_line
        return Span(path, line, first.column, end_line, last.end_column)

    return span


class SyntaxBuilder(Transformer):
    """The nodes of one parse at a time; ``span`` is set for each parse (spans_in, spans_in_chunk)."""

    def __init__(self) -> None:
        super().__init__()
        self.span: SpanMaker = spans_in(None)

    def start(self, kids: list) -> list:
        """The file's statements so far, in one list (the rule is left-recursive: a statement
        is added to the list before it, where a `*` would splice a tree of each into the parent)."""
        if kids and type(kids[0]) is list:
            found = kids[0]
            if len(kids) > 1:
                found.append(kids[1])
            return found
        return kids

    def let_stmt(self, kids: list) -> Let:
        keyword, name, _, value = kids
        return Let(name.value, value, self.span(keyword, value.span))

    def include_stmt(self, kids: list) -> Include:
        keyword, path = kids
        return Include(unquote(path.value), self.span(keyword, path))

    def compress_stmt(self, kids: list) -> Compress:
        kind, selector = kids[0], kids[1]
        settings, excepts = _tail(kids[2:])
        last = _last_span(selector, settings, excepts)
        return Compress(_MODES[kind.value], selector, settings, excepts, self.span(kind, last))

    def align_stmt(self, kids: list) -> Align:
        keyword, selector, partner = kids[0], kids[1], kids[3]
        settings, excepts = _tail(kids[4:])
        last = _last_span(partner, settings, excepts)
        return Align(selector, partner, settings, excepts, self.span(keyword, last))

    def exclude_stmt(self, kids: list) -> Exclude:
        keyword, selector = kids[0], kids[1]
        if len(kids) == 2:
            return Exclude(selector, None, self.span(keyword, selector.span))
        kind = kids[2]
        return Exclude(selector, _MODES[kind.value], self.span(keyword, kind))

    def register_stmt(self, kids: list) -> Register:
        mode, name = _MODES[kids[1].value], kids[2].value
        return Register(mode, name, tuple(kids[4:-1]), self.span(kids[0], kids[-1]))

    def register_target(self, kids: list) -> RegisterTarget:
        name, settings = kids[0], tuple(kids[1]) if len(kids) > 1 else ()
        last = settings[-1].span if settings else name
        return RegisterTarget(name.value, settings, self.span(name, last))

    def target_word(self, kids: list) -> Token:
        return kids[0]

    def from_clause(self, kids: list) -> Token:
        return kids[1]

    def except_clause(self, kids: list) -> tuple[Selector, ...]:
        return tuple(kids[1::2])

    def selector(self, kids: list) -> Selector:
        path = kids[0]
        if len(kids) == 1:
            return Selector(path, None, path.span)
        scope = kids[1]
        return Selector(path, scope, self.span(path.span, scope.span))

    def scope(self, kids: list) -> Path:
        return kids[1]

    def regex_path(self, kids: list) -> Path:
        regex = kids[0]
        pattern = unquote(regex.value[2:], keep_backslashes=True)
        if len(kids) == 1:
            return Path((), pattern, self.span(regex, regex))
        segment = kids[2]
        return Path((segment,), pattern, self.span(regex, segment.span))

    def glob_path(self, kids: list) -> Path:
        if len(kids) == 1 and type(kids[0]) is Token:  # one run of segments: its span is the path's
            whole = self.span(kids[0], kids[0])
            return Path(_run_segments(kids[0].value, whole), None, whole)
        segments: list[Segment] = []
        for part in kids[::2]:  # PATTERN runs and set segments, between the DOTs
            if type(part) is Token:
                segments.extend(_run_segments(part.value, self.span(part, part)))
            else:
                segments.append(part)
        return Path(tuple(segments), None, self.span(segments[0].span, segments[-1].span))

    def pattern_segment(self, kids: list) -> Segment:
        token = kids[0]
        return Segment((intern(token.value),), False, self.span(token, token))

    def set_segment(self, kids: list) -> Segment:
        options = tuple(dict.fromkeys(token.value for token in kids[1:-1:2]))
        return Segment(options, True, self.span(kids[0], kids[-1]))

    def settings(self, kids: list) -> list[Setting]:
        """A statement's settings so far, in one list (left-recursive, as ``start``)."""
        if type(kids[0]) is list:
            found = kids[0]
            found.append(self._setting(kids[1:]))
            return found
        return [self._setting(kids)]

    def _setting(self, kids: list) -> Setting:
        if len(kids) == 1:  # written without blanks: one SETTING token
            return self._setting_token(kids[0])
        key, _, value = kids
        return Setting(intern(key.value), value, self.span(key, value.span))

    def SETTING(self, token: Token) -> Token:
        """Lark calls a method named after a terminal as the parser takes such a token: a number
        too long in a setting stops the parse there, as its NUMBER would spelt apart."""
        if len(token.value) > MAX_NUMBER_LENGTH:
            check_number(token)
        return token

    def _setting_token(self, token: Token) -> Setting:
        """A SETTING token (``key=value``, one line) as the node three tokens would give."""
        whole = self.span(token, token)
        key, _, text = token.value.partition("=")
        column = whole.column + len(key) + 1
        at = Span(whole.file, whole.line, column, whole.line, whole.end_column)
        return Setting(intern(key), _literal(text, at), whole)

    def literal(self, kids: list) -> Literal:
        token = kids[0]
        return _literal(token.value, self.span(token, token))

    def list(self, kids: list) -> ListValue:
        return ListValue(tuple(kids[1:-1:2]), self.span(kids[0], kids[-1]))


def _literal(text: str, span: Span) -> Literal:
    """The value a NUMBER, STRING or NAME token's text stands for, at ``span``."""
    first = text[0]
    if first == '"':
        return Literal(unquote(text), False, span)
    if first.isalpha() or first == "_":
        return Literal(intern(text), True, span)
    return Literal(int(text) if _INTEGER.match(text) else float(text), False, span)


def _run_segments(run: str, whole: Span) -> tuple[Segment, ...]:
    """The segments of one PATTERN token (``layer1.*.conv1``, ``layer1.{q,k}.weight``) at
    ``whole``, each with its own span: a run never spans lines, so a segment's columns are the
    run's, offset. A part that is one {a,b} set and nothing else is a set segment."""
    if "." not in run:
        return (Segment((intern(run),), False, whole),)
    file, line, column, found = whole.file, whole.line, whole.column, []
    for word in run.split("."):
        span = Span(file, line, column, line, column + len(word))
        if word[0] == "{" and word[-1] == "}" and word.count("{") == 1:
            options = tuple(dict.fromkeys(word[1:-1].split(",")))
            found.append(Segment(options, True, span))
        else:
            found.append(Segment((intern(word),), False, span))
        column += len(word) + 1
    return tuple(found)


def _tail(kids: list) -> tuple[tuple, tuple]:
    """The settings (a list, if any), then the except clause's selectors (a tuple, if any)."""
    settings, excepts = (), ()
    for kid in kids:
        if type(kid) is list:
            settings = tuple(kid)
        else:
            excepts = kid
    return settings, excepts


def _last_span(before: Selector, settings: tuple, excepts: tuple) -> Span:
    """Where a statement's last part is: its except clause, else its last setting, else ``before``."""
    if excepts:
        return excepts[-1].span
    return settings[-1].span if settings else before.span


def unquote(text: str, keep_backslashes: bool = False) -> str:
    """The content of a "..." literal; a regex keeps its backslashes except before a quote."""
    inner = text[1:-1]
    if keep_backslashes:
        return inner.replace('\\"', '"')
    return re.sub(r"\\(.)", r"\1", inner)
